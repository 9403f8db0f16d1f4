"""The table of who may append what (events/ownership.py) and the permissions made from it."""

from __future__ import annotations

from events import names, ownership
from events.payloads import PAYLOAD_TYPES
from services.wiring.eventlog import identity_of
from services.wiring.permissions import authorization_block, permissions

MANAGING = (
    "STREAM.CREATE",
    "STREAM.UPDATE",
    "STREAM.DELETE",
    "STREAM.PURGE",
    "CONSUMER.DURABLE",
    "CONSUMER.PAUSE",
    "CONSUMER.LIST",
    "CONSUMER.NAMES",
)


def test_every_event_type_has_an_owner_and_every_owned_type_exists() -> None:
    known = {cls.event_type for cls in PAYLOAD_TYPES}
    # The key registrations are the admin's alone (events/signing.py).
    admin_only = {"KeyRegistered", "KeyRevoked"}
    assert [t for t in sorted(known - admin_only) if not ownership.owners(t)] == []
    assert [t for t in sorted(admin_only) if ownership.owners(t)] == []
    owned = set().union(*ownership.PUBLISHES.values())
    assert owned <= known


def test_a_service_publishes_exactly_its_own_event_types() -> None:
    for identity in (*ownership.SERVICES, ownership.OPERATOR):
        allowed = permissions(identity).publish_allow
        events = {s for s in allowed if s.startswith(names.SUBJECT_PREFIX)}
        assert events == {names.type_subjects(t) for t in ownership.PUBLISHES[identity]}
        # and never anything that manages streams or consumers
        for verb in MANAGING:
            assert not [s for s in allowed if verb in s or s == ">"], (identity, verb)
        assert f"$JS.API.CONSUMER.CREATE.{names.STREAM}" not in allowed


def test_only_the_approval_owners_may_approve() -> None:
    # the console's api appends a token holder's approval (its key vouches for `token:`),
    # the notifier a chat user's (its key vouches for them, issue 12)
    assert ownership.owners("PlanApproved") == {"planner", "api", "notifier", ownership.OPERATOR}
    assert ownership.entitled(ownership.ADMIN, "PlanApproved")
    assert not ownership.entitled("renderer", "PlanApproved")


def test_partitioned_consumers_are_each_pulled_only_by_their_service() -> None:
    applier = permissions("applier", partitions=2).publish_allow
    for name in ("applier-p0-of-2", "applier-p1-of-2"):
        assert f"$JS.API.CONSUMER.MSG.NEXT.{names.STREAM}.{name}" in applier
    denied = permissions("renderer", partitions=2).publish_deny
    assert f"$JS.API.CONSUMER.CREATE.{names.STREAM}.applier-p1-of-2" in denied


def test_the_server_section_quotes_every_subject() -> None:
    block = authorization_block({i: "pw" for i in ownership.IDENTITIES})
    assert block.startswith("authorization {")
    assert '"$JS.API.STREAM.INFO.WAKE_EVENTS"' in block


def test_a_replica_holds_only_its_own_services_leases() -> None:
    renderer = permissions("renderer").publish_allow
    assert "$KV.WAKE_LEASES.slot.renderer.>" in renderer
    assert not [s for s in renderer if s.startswith("$KV.") and "renderer" not in s]
    watcher = permissions("git-watcher").publish_allow
    assert "$KV.WAKE_LEASES.git-watcher-poll.>" in watcher
    assert not [s for s in permissions("operator").publish_allow if s.startswith("$KV.")]


def test_the_identity_of_connect_kwargs() -> None:
    assert identity_of(None) is None
    assert identity_of({"user": "renderer", "password": "x"}) == "renderer"
    assert identity_of({"nkeys_seed": "/etc/wake/nats/applier.nk"}) == "applier"
    assert identity_of({"user_credentials": "admin.creds"}) == "admin"
    # credentials that name nobody Wake knows never manage streams or consumers
    assert identity_of({"token": "t"}) == ""
