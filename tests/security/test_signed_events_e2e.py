"""Signed events through the real services (`wake up --sandbox`): forged approvals,
registrations, rollbacks and plans are refused and recorded, and the next normal
commit is still applied.

Forgeries are published with the admin's NATS credentials, so they get past the
bus's subject permissions (issue 10 item 1) and only the signature check stands
between them and the services.
"""

from __future__ import annotations

import getpass
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from events import names, new_event
from events.envelope import Envelope, encode
from events.payloads import (
    ApplicationRegistered,
    AppSpec,
    EventRejected,
    PlanApproved,
    PlanCreated,
    RollbackRequested,
    SyncRequested,
)
from events.signing import SigningKey
from services.demo.sample import APP_PATH, SampleRepo, first_commit, second_commit
from services.wiring.signing import SIGNING_DIR, file_name, load_key_file, seal_as
from tests.e2e.harness import WakeUnderTest, running_wake

PERSON = f"user:{getpass.getuser()}"


@pytest.fixture(scope="module")
async def wake(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WakeUnderTest]:
    async with running_wake(tmp_path_factory.mktemp("signed")) as wake:
        yield wake


def key_of(wake: WakeUnderTest, identity: str) -> SigningKey:
    """A key of the data dir (`service:renderer`, the person's, ...)."""
    return load_key_file(wake.running.data_dir / SIGNING_DIR / file_name(identity))


def forged(
    event: Envelope,
    key: SigningKey | None,
    *,
    tamper: Callable[[bytes], bytes] = lambda data: data,
) -> bytes:
    """`event` signed by `key` as its identity (None: not signed), then `tamper`ed."""
    if key is None:
        return encode(event)
    ((_, data),) = seal_as(key, [event], actor=key.identity)
    return tamper(data)


async def publish(wake: WakeUnderTest, event: Envelope, data: bytes) -> int:
    """Publish forged bytes on the event's subject as the admin identity; its sequence."""
    ack = await wake.log.js.publish(names.subject(event.app, event.type), data)
    return ack.seq


async def rejected(wake: WakeUnderTest, app: str, consumer: str, seq: int) -> EventRejected:
    """The EventRejected of `consumer` for the message at `seq`."""
    stored = await wake.next_event(
        app,
        "EventRejected",
        after=seq,
        where=lambda s: (s.event.payload.stream_seq, s.event.payload.consumer) == (seq, consumer),
    )
    assert isinstance(stored.event.payload, EventRejected)
    return stored.event.payload


async def rejections(wake: WakeUnderTest, app: str, consumer: str, seq: int) -> int:
    return sum(
        1
        for s in await wake.events(app, after=seq)
        if s.event.type == "EventRejected"
        and (s.event.payload.stream_seq, s.event.payload.consumer) == (seq, consumer)
    )


async def manual_app(wake: WakeUnderTest, name: str) -> tuple[SampleRepo, str, int]:
    """App `name` registered with the CLI (manual sync): its repo, first plan id and the
    sequence of its ApprovalRequested."""
    repo = wake.repository(name)
    first_commit(repo, namespace=name)
    start = await wake.position()
    await wake.wake(
        "app", "add", name, "--repo", repo.url, "--path", APP_PATH, "--namespace", name, "--manual"
    )
    requested = await wake.next_event(name, "ApprovalRequested", after=start)
    return repo, requested.event.payload.plan_id, requested.seq


async def test_forged_approvals_are_refused_by_the_applier_and_the_signed_one_applies(
    wake: WakeUnderTest, tmp_path: Path
) -> None:
    # Given a manual app whose plan awaits approval
    _, plan_id, requested = await manual_app(wake, "guarded")
    # and Eve, whose key was registered and then revoked
    eve_file = tmp_path / "eve.json"
    await wake.wake("key", "add", "user:eve", "--out", str(eve_file))
    await wake.wake("key", "revoke", "user:eve", "--reason", "left the team")
    eve = load_key_file(eve_file)
    mallory = SigningKey.generate("user:mallory", "operator")
    person = key_of(wake, PERSON)
    other_plan = "00000000-0000-7000-8000-000000000000"

    def approval(plan: str = plan_id) -> Envelope:
        return new_event(PlanApproved(plan_id=plan, via="cli"), app="guarded", actor="x")

    forgeries = {
        "its key mallory": (forged(approval(), mallory), "is not registered"),
        "the renderer's key": (
            forged(approval(), key_of(wake, "service:renderer")),
            "service:renderer (role renderer) may not append PlanApproved",
        ),
        "no key": (forged(approval(), None), "it is not signed"),
        "tampered after signing": (
            forged(
                approval(other_plan),
                person,
                tamper=lambda data: data.replace(other_plan.encode(), plan_id.encode()),
            ),
            "its signature does not verify",
        ),
        "a revoked key": (forged(approval(), eve), "its key was revoked at stream sequence"),
    }
    # When each is published with the admin's NATS credentials (past the bus's permissions)
    seqs = {}
    for what, (data, reason) in forgeries.items():
        seqs[what] = await publish(wake, approval(), data)
        # Then the applier refuses it, naming the sequence and why
        refusal = await rejected(wake, "guarded", "applier", seqs[what])
        assert f"stream sequence {seqs[what]}" in refusal.error, what
        assert reason in refusal.error, (what, refusal.error)
    # and nothing was applied
    after = [s.event.type for s in await wake.events("guarded", after=requested)]
    assert "ApplyStarted" not in after
    assert await wake.cluster_object("v1", "Namespace", "guarded") is None
    # When the person approves with the CLI, claiming to be someone else with WAKE_ACTOR
    approved_at = await wake.position()
    await wake.wake("approve", plan_id, env={"WAKE_ACTOR": "user:ceo"})
    # Then the approver on the log is the signer, and the plan is applied
    approval_event = await wake.next_event("guarded", "PlanApproved", after=approved_at)
    assert approval_event.event.actor == PERSON
    assert approval_event.event.signer == person.key_id
    await wake.next_event(
        "guarded",
        "ApplySucceeded",
        after=approved_at,
        where=lambda s: s.event.payload.plan_id == plan_id,
    )
    assert await wake.cluster_object("v1", "Namespace", "guarded") is not None
    # and each forgery was recorded once by the applier
    for what, seq in seqs.items():
        assert await rejections(wake, "guarded", "applier", seq) == 1, what


async def test_forged_registration_rollback_and_plan_are_refused_and_the_next_commit_applies(
    wake: WakeUnderTest,
) -> None:
    repo, plan_id, _ = await manual_app(wake, "vault")
    approved_at = await wake.position()
    await wake.wake("approve", plan_id)
    await wake.next_event("vault", "ApplySucceeded", after=approved_at)
    mallory = SigningKey.generate("service:git-watcher", "git-watcher")
    renderer = key_of(wake, "service:renderer")
    # Given a registration by an unregistered key of a repository Wake could deploy
    intruder = wake.repository("intruder")
    first_commit(intruder, namespace="intruder")
    spec = AppSpec(repo_url=intruder.url, path=APP_PATH, namespace="intruder")
    registration = new_event(ApplicationRegistered(spec=spec), app="intruder", actor="x")
    registered = await publish(wake, registration, forged(registration, mallory))
    # and a rollback requested with the renderer's key
    rollback = new_event(
        RollbackRequested(target="00000000-0000-7000-8000-000000000001", reason="forged"),
        app="vault",
        actor="x",
    )
    rolled = await publish(wake, rollback, forged(rollback, renderer))
    # and a plan signed by the renderer (which makes no plans)
    forged_plan = PlanCreated(
        plan_id="00000000-0000-7000-8000-0000000000f0",
        commit="0" * 40,
        bundle_digest="0" * 64,
        changes=[],
        needs_approval=True,
    )
    plan_event = new_event(forged_plan, app="vault", actor="x")
    planned = await publish(wake, plan_event, forged(plan_event, renderer))
    # Then the planner refuses the rollback, and the notifier records each of them
    refusal = await rejected(wake, "vault", "planner", rolled)
    assert "may not append RollbackRequested" in refusal.error
    for app, seq in (("intruder", registered), ("vault", rolled), ("vault", planned)):
        await rejected(wake, app, "notifier", seq)
    # and the forged plan cannot be approved: no reader knows it
    refused = await wake.wake("approve", forged_plan.plan_id, check=False)
    assert refused.returncode != 0 and f"no plan {forged_plan.plan_id}" in refused.stderr
    # When the next normal commit lands and is synced and approved
    commit = second_commit(repo)
    synced_at = await wake.position()
    await wake.wake("sync", "vault")
    requested = await wake.next_event(
        "vault", "ApprovalRequested", after=synced_at, where=lambda s: s.seq > synced_at
    )
    await wake.wake("approve", requested.event.payload.plan_id)
    # Then it is applied
    applied = await wake.next_event(
        "vault",
        "ApplySucceeded",
        after=synced_at,
        where=lambda s: s.event.payload.plan_id == requested.event.payload.plan_id,
    )
    assert applied.event.payload.commit == commit
    # and the forged registration was never acted on: git-watcher, which follows
    # registrations in log order, handled the later registration of `vault`'s sync
    # but detected nothing for `intruder`
    assert [s for s in await wake.events("intruder") if s.event.type == "RevisionDetected"] == []
    assert await wake.cluster_object("v1", "Namespace", "intruder") is None
    # and the planner recorded the rollback once
    assert await rejections(wake, "vault", "planner", rolled) == 1


async def test_wake_replay_verify_lists_every_forged_event_by_sequence(
    wake: WakeUnderTest,
) -> None:
    # Given a forged sync request and one tampered with
    sync = new_event(SyncRequested(reason="forged"), app="guarded", actor="x")
    unsigned = await publish(wake, sync, forged(sync, None))
    tampered = await publish(
        wake,
        sync,
        forged(
            sync,
            key_of(wake, PERSON),
            tamper=lambda data: data.replace(b'"forged"', b'"f0rged"'),
        ),
    )
    await rejected(wake, "guarded", "notifier", tampered)
    # When the read models are rebuilt and verified
    result = await wake.wake("replay", "--verify", "--into", "signed_replay", check=False)
    # Then every forged event of the log is listed by its sequence, with why
    out = result.stdout
    assert f"REFUSED seq {unsigned} (wake.evt.guarded.SyncRequested)" in out
    assert "it is not signed" in out
    assert f"REFUSED seq {tampered} " in out and "its signature does not verify" in out
    assert "verified the signature of" in out and "events/s" in out


async def test_a_rotated_key_keeps_the_events_it_signed_before_valid(
    wake: WakeUnderTest, tmp_path: Path
) -> None:
    # Given Ana's key, with which she asks for a sync
    first, second = tmp_path / "ana-1.json", tmp_path / "ana-2.json"
    await wake.wake("key", "add", "user:ana", "--out", str(first))
    before = await wake.position()
    await wake.wake("sync", "guarded", env={"WAKE_SIGNING_KEY": str(first)})
    old = await wake.next_event("guarded", "SyncRequested", after=before)
    assert old.event.actor == "user:ana"
    # When she rotates it: a new key registered, the old one revoked
    await wake.wake("key", "add", "user:ana", "--out", str(second))
    old_id = load_key_file(first).key_id
    await wake.wake("key", "revoke", old_id, "--reason", "rotated")
    listed = (await wake.wake("key", "list", "--all")).stdout
    assert f"{old_id}  user:ana (operator)" in listed and "revoked at seq" in listed
    # Then what the old key signed still verifies
    again = [s for s in await wake.events("guarded", after=before) if s.seq == old.seq]
    assert again and again[0].event.actor == "user:ana"
    # and a sync signed with the old key now is refused, one with the new key is not
    refused_at = await wake.position()
    await wake.wake("sync", "guarded", env={"WAKE_SIGNING_KEY": str(first)})
    refusal = await wake.next_event(
        "guarded",
        "EventRejected",
        after=refused_at,
        where=lambda s: s.event.payload.consumer == "git-watcher-sync",
    )
    assert "revoked at stream sequence" in refusal.event.payload.error
    accepted_at = await wake.position()
    await wake.wake("sync", "guarded", env={"WAKE_SIGNING_KEY": str(second)})
    new = await wake.next_event("guarded", "SyncRequested", after=accepted_at)
    assert new.event.actor == "user:ana"
    assert new.event.signer == load_key_file(second).key_id
