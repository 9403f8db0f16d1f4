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
    ApplyStarted,
    AppSpec,
    EventRejected,
    PlanApproved,
    PlanCreated,
    RollbackRequested,
    SyncRequested,
)
from events.signing import SigningKey, encode_key
from services.demo.sample import APP_PATH, SampleRepo, first_commit, second_commit
from services.wiring.signing import (
    SIGNING_DIR,
    file_name,
    load_key_file,
    seal_as,
    write_key_file,
)
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
    actor: str | None = None,
) -> bytes:
    """`event` signed by `key` as its identity or `actor` (None: not signed), then `tamper`ed."""
    if key is None:
        return encode(event)
    ((_, data),) = seal_as(key, [event], actor=actor or key.identity)
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


@pytest.fixture(scope="module")
async def eve(wake: WakeUnderTest, tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    """Eve's key: registered with `wake key add`, then revoked."""
    eve_file = tmp_path_factory.mktemp("eve") / "eve.json"
    await wake.wake("key", "add", "user:eve", "--out", str(eve_file))
    await wake.wake("key", "revoke", "user:eve", "--reason", "left the team")
    return load_key_file(eve_file)


def forgeries(
    wake: WakeUnderTest, eve: SigningKey, event: Envelope, entitled: SigningKey
) -> dict[str, tuple[bytes, str]]:
    """`event` forged five ways, each with the reason a reader gives for refusing it.

    `entitled`: a key whose role may append the event's type (signs the one
    tampered with afterwards).
    """
    renderer = key_of(wake, "service:renderer")
    other_id = "00000000-0000-7000-8000-00000000abcd"
    return {
        "an unregistered key": (
            forged(event, SigningKey.generate(entitled.identity, entitled.role)),
            "is not registered",
        ),
        "a key not entitled to the type": (
            forged(event, renderer),
            f"service:renderer (role renderer) may not append {event.type}",
        ),
        "no key": (forged(event, None), "it is not signed"),
        "tampering after signing": (
            forged(
                event,
                entitled,
                tamper=lambda data: data.replace(event.event_id.encode(), other_id.encode()),
            ),
            "its signature does not verify",
        ),
        "a revoked key": (forged(event, eve), "its key was revoked at stream sequence"),
    }


async def publish_all(
    wake: WakeUnderTest, event: Envelope, forged_five: dict[str, tuple[bytes, str]]
) -> dict[str, tuple[int, str]]:
    """Publish each forgery with the admin's NATS credentials: (sequence, reason) of each."""
    return {
        what: (await publish(wake, event, data), why) for what, (data, why) in forged_five.items()
    }


async def test_forged_approvals_are_refused_by_the_applier_and_the_signed_one_applies(
    wake: WakeUnderTest, eve: SigningKey
) -> None:
    # Given a manual app whose plan awaits approval
    _, plan_id, requested = await manual_app(wake, "guarded")
    person = key_of(wake, PERSON)
    approval = new_event(PlanApproved(plan_id=plan_id, via="cli"), app="guarded", actor="x")
    # When its approval is forged five ways and published with the admin's NATS
    # credentials (past the bus's permissions)
    seqs = await publish_all(wake, approval, forgeries(wake, eve, approval, person))
    # Then the applier refuses each, naming the sequence and why
    for what, (seq, reason) in seqs.items():
        refusal = await rejected(wake, "guarded", "applier", seq)
        assert f"stream sequence {seq}" in refusal.error, what
        assert reason in refusal.error, (what, refusal.error)
    # and nothing was applied
    after = [s.event.type for s in await wake.events("guarded", after=requested)]
    assert "ApplyStarted" not in after
    assert await wake.cluster_object("v1", "Namespace", "guarded") is None
    # and an apply "in flight" forged on the applier's own subject (which the
    # applier's conditional append of ApplyStarted is checked against)
    in_flight = new_event(
        ApplyStarted(
            apply_id="00000000-0000-7000-8000-0000000000a9",
            plan_id=plan_id,
            commit="0" * 40,
            bundle_digest="0" * 64,
        ),
        app="guarded",
        actor="x",
    )
    for data, _ in forgeries(wake, eve, in_flight, key_of(wake, "service:applier")).values():
        await publish(wake, in_flight, data)
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
    for what, (seq, _) in seqs.items():
        assert await rejections(wake, "guarded", "applier", seq) == 1, what


async def test_forged_registration_rollback_and_plan_are_refused_and_the_next_commit_applies(
    wake: WakeUnderTest, eve: SigningKey
) -> None:
    repo, plan_id, _ = await manual_app(wake, "vault")
    approved_at = await wake.position()
    await wake.wake("approve", plan_id)
    applied = await wake.next_event("vault", "ApplySucceeded", after=approved_at)
    person = key_of(wake, PERSON)
    # Given a registration of a repository Wake could deploy, forged five ways
    intruder = wake.repository("intruder")
    first_commit(intruder, namespace="intruder")
    spec = AppSpec(repo_url=intruder.url, path=APP_PATH, namespace="intruder")
    registration = new_event(ApplicationRegistered(spec=spec), app="intruder", actor="x")
    registered = await publish_all(wake, registration, forgeries(wake, eve, registration, person))
    # and a rollback of `vault` to its applied revision, forged five ways
    rollback = new_event(
        RollbackRequested(
            target=applied.event.payload.apply_id,
            reason="forged",
            apply_id=applied.event.payload.apply_id,
            commit=applied.event.payload.commit,
            bundle_digest=applied.event.payload.bundle_digest,
        ),
        app="vault",
        actor="x",
    )
    rolled = await publish_all(wake, rollback, forgeries(wake, eve, rollback, person))
    # and a plan awaiting approval, forged five ways
    forged_plan = PlanCreated(
        plan_id="00000000-0000-7000-8000-0000000000f0",
        commit="0" * 40,
        bundle_digest="0" * 64,
        changes=[],
        needs_approval=True,
    )
    plan_event = new_event(forged_plan, app="vault", actor="x")
    planner = key_of(wake, "service:planner")
    planned = await publish_all(wake, plan_event, forgeries(wake, eve, plan_event, planner))
    # Then the planner refuses each rollback, naming the sequence and why
    for what, (seq, reason) in rolled.items():
        refusal = await rejected(wake, "vault", "planner", seq)
        assert f"stream sequence {seq}" in refusal.error and reason in refusal.error, what
    # and the projector, which reads every event, records each forgery with its reason
    for app, seqs in (("intruder", registered), ("vault", rolled), ("vault", planned)):
        for what, (seq, reason) in seqs.items():
            assert reason in (await rejected(wake, app, "wake-projector", seq)).error, (app, what)
    # and the forged plan cannot be approved: no reader knows it
    refused = await wake.wake("approve", forged_plan.plan_id, check=False)
    assert refused.returncode != 0 and f"no plan {forged_plan.plan_id}" in refused.stderr
    # When the next normal commit lands and is synced and approved
    commit = second_commit(repo)
    synced_at = await wake.position()
    await wake.wake("sync", "vault")
    requested = await wake.next_event("vault", "ApprovalRequested", after=synced_at)
    await wake.wake("approve", requested.event.payload.plan_id)
    # Then it is applied, and it was planned from the revision, not rolled back
    latest = await wake.next_event(
        "vault",
        "ApplySucceeded",
        after=synced_at,
        where=lambda s: s.event.payload.plan_id == requested.event.payload.plan_id,
    )
    assert latest.event.payload.commit == commit and latest.event.payload.rollback_of is None
    plans = [
        s for s in await wake.events("vault", after=approved_at) if s.event.type == "PlanCreated"
    ]
    assert [s.event.payload.reason for s in plans] == ["revision"]
    # and the forged registration was never acted on: nothing detected or applied for it
    assert [s for s in await wake.events("intruder") if s.event.type == "RevisionDetected"] == []
    assert await wake.cluster_object("v1", "Namespace", "intruder") is None
    # and the planner recorded each rollback once
    for what, (seq, _) in rolled.items():
        assert await rejections(wake, "vault", "planner", seq) == 1, what


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
    await rejected(wake, "guarded", "wake-projector", tampered)
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


async def test_a_person_registers_only_their_public_key_and_signs_with_their_own_file(
    wake: WakeUnderTest, tmp_path: Path
) -> None:
    # Given Bob's key pair, made on his machine: only the public key is handed over
    bob = SigningKey.generate("user:bob", "operator")
    public = tmp_path / "bob.pub"
    public.write_text(encode_key(bob.public) + "\n")
    added = await wake.wake("key", "add", "user:bob", "--public-key", str(public))
    assert f"registered key {bob.key_id} for user:bob (operator)" in added.stdout
    # When Bob signs a command with his private key file
    private = tmp_path / "bob.json"
    write_key_file(private, bob)
    before = await wake.position()
    await wake.wake("sync", "guarded", env={"WAKE_SIGNING_KEY": str(private)})
    # Then it is accepted as his
    synced = await wake.next_event("guarded", "SyncRequested", after=before)
    assert (synced.event.actor, synced.event.signer) == ("user:bob", bob.key_id)
    # and a key file others can read is refused before anything is signed with it
    private.chmod(0o644)
    refused = await wake.wake(
        "sync", "guarded", env={"WAKE_SIGNING_KEY": str(private)}, check=False
    )
    assert refused.returncode != 0 and "chmod 600" in refused.stderr


async def test_a_gateway_key_signs_a_command_for_a_chat_user_and_nobody_else(
    wake: WakeUnderTest, tmp_path: Path
) -> None:
    # Given a chat gateway's key, registered to vouch for Matrix users
    gateway_file = tmp_path / "chat.json"
    await wake.wake(
        "key", "add", "service:chat", "--vouch-for", "matrix", "--out", str(gateway_file)
    )
    gateway = load_key_file(gateway_file)
    assert gateway.vouches_for == ("matrix",)
    listed = (await wake.wake("key", "list")).stdout
    assert f"{gateway.key_id}  service:chat (operator, vouches for matrix)" in listed
    # When it signs a sync asked for by a Matrix user
    sync = new_event(SyncRequested(), app="guarded", actor="matrix:@ana:example.org")
    before = await wake.position()
    seq = await publish(wake, sync, forged(sync, gateway, actor=sync.actor))
    # Then readers take it as Ana's: the git-watcher acts on it
    await wake.consumer_has_handled("git-watcher-sync", seq)
    (stored,) = [s for s in await wake.events("guarded", after=before) if s.seq == seq]
    assert stored.event.actor == "matrix:@ana:example.org"
    # and the same key speaking for a person with a key of their own is refused
    impostor = new_event(SyncRequested(), app="guarded", actor=PERSON)
    refused = await publish(wake, impostor, forged(impostor, gateway, actor=impostor.actor))
    refusal = await rejected(wake, "guarded", "git-watcher-sync", refused)
    assert "nor one it vouches for: ['matrix']" in refusal.error
