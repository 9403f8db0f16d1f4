"""`wake up --sandbox` with the bus locked down: each service its own identity, the CLI
the operator's, a forged approval refused, and the commit still applied."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import nats.errors
import pytest

from events import names, new_event
from events.payloads import PlanApproved
from services.demo.sample import APP_PATH, first_commit, second_commit
from services.wiring.credentials import load_connect_kwargs
from services.wiring.eventlog import checked_bytes
from tests.e2e.harness import WakeUnderTest, running_wake
from tests.waiting import eventually


@pytest.fixture(scope="module")
async def wake(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WakeUnderTest]:
    async with running_wake(tmp_path_factory.mktemp("bus")) as wake:
        yield wake


async def test_services_run_as_themselves_and_a_forged_approval_changes_nothing(
    wake: WakeUnderTest,
) -> None:
    data_dir = wake.running.data_dir
    # Given every service started with its own identity
    for name, child in wake.running.services.items():
        assert child.env["WAKE_NATS_CREDENTIALS"] == str(
            data_dir / "credentials" / "nats" / f"{name}.json"
        )
    # and a manual application registered with the CLI, no flags (the operator)
    repo = wake.repository("guarded")
    first_commit(repo, namespace="guarded")
    start = await wake.position()
    await wake.wake(
        "app", "add", "guarded", "--repo", repo.url, "--path", APP_PATH,
        "--namespace", "guarded", "--manual",
    )  # fmt: skip
    requested = await wake.next_event("guarded", "ApprovalRequested", after=start)
    plan_id = requested.event.payload.plan_id
    # When the renderer's identity (stolen from its file) publishes an approval
    errors: list[str] = []

    async def record(error: Exception) -> None:
        errors.append(str(error))

    renderer = load_connect_kwargs(data_dir / "credentials" / "nats" / "renderer.json")
    nc = await nats.connect(
        wake.running.endpoints.nats_url, allow_reconnect=False, error_cb=record, **renderer
    )
    forged = new_event(PlanApproved(plan_id=plan_id, via="cli"), app="guarded", actor="user:me")
    subject = names.subject("guarded", "PlanApproved")
    try:
        with pytest.raises(nats.errors.TimeoutError):
            await nc.jetstream(timeout=1).publish(subject, checked_bytes(forged))
        await eventually(lambda: errors, timeout=5, what="the server's refusal")
    finally:
        await nc.close()
    # Then the server refused it, and nothing of it is in the log or the cluster
    assert f'permissions violation for publish to "{subject.lower()}"' in " ".join(errors)
    after = [s.event.type for s in await wake.events("guarded", after=requested.seq)]
    assert "PlanApproved" not in after and "ApplyStarted" not in after
    assert await wake.cluster_object("v1", "Namespace", "guarded") is None
    # When the operator approves with the CLI (no flags)
    await wake.wake("approve", plan_id)
    # Then the plan is applied
    await wake.next_event(
        "guarded",
        "ApplySucceeded",
        after=requested.seq,
        where=lambda s: s.event.payload.plan_id == plan_id,
    )
    assert await wake.cluster_object("v1", "Namespace", "guarded") is not None
    endpoints = json.loads((Path(data_dir) / "endpoints.json").read_text())
    assert Path(endpoints["nats_operator"]).name == "operator.json"


async def test_garbage_on_an_apps_subjects_freezes_nothing(wake: WakeUnderTest) -> None:
    # Given an application applied at its first commit
    repo = wake.repository("poisoned")
    first = first_commit(repo, namespace="poisoned")
    start = await wake.position()
    await wake.wake(
        "app", "add", "poisoned", "--repo", repo.url, "--path", APP_PATH,
        "--namespace", "poisoned",
    )  # fmt: skip
    await wake.next_event(
        "poisoned", "ApplySucceeded", after=start, where=lambda s: s.event.payload.commit == first
    )
    # When garbage lands on its PlanApproved, RevisionDetected and ApplicationRemoved
    # subjects (the admin's connection: past every subject permission), and an event
    # of another app on its ApplicationRemoved subject (unsigned: the signed case of an
    # event moved to another subject is tests/security/test_signatures.py's)
    other = new_event(PlanApproved(plan_id="p-1", via="cli"), app="elsewhere", actor="user:me")
    poison = {
        names.subject("poisoned", "PlanApproved"): b"\x00\xff not json",
        names.subject("poisoned", "RevisionDetected"): b'{"event_id": 42}',
        names.subject("poisoned", "ApplicationRemoved"): b"[" * 10_000,
    }
    seqs = []
    for subject, data in poison.items():
        seqs.append((await wake.log.js.publish(subject, data)).seq)
    mismatched = names.subject("poisoned", "ApplicationRemoved")
    seqs.append((await wake.log.js.publish(mismatched, checked_bytes(other))).seq)
    # and the next commit is pushed
    second = second_commit(repo)
    before = await wake.position()
    await wake.wake("sync", "poisoned")
    # Then it is applied, and the application is neither removed nor frozen
    await wake.next_event(
        "poisoned", "ApplySucceeded", after=before, where=lambda s: s.event.payload.commit == second
    )
    deployment = await wake.cluster_object("apps/v1", "Deployment", "web", "poisoned")
    assert deployment is not None and deployment["spec"]["replicas"] == 3
    # and `wake app list` still works and shows it synced at that commit
    listed = await wake.wake("app", "list")
    (line,) = [row for row in listed.stdout.splitlines() if row.startswith("poisoned ")]
    assert "synced" in line and second[:7] in line, listed.stdout
    # and `wake events tail` prints the app's events, telling on stderr what it skipped
    tail = await wake.wake("events", "tail", "--app", "poisoned")
    assert "ApplySucceeded" in tail.stdout
    for seq in seqs:
        assert f"{seq:>7}  skipped, not a valid event: stream sequence {seq}" in tail.stderr
    # and every garbage message is recorded as rejected, once per reader, naming its sequence
    rejected = [
        s.event.payload
        for s in await wake.events("poisoned", after=start)
        if s.event.type == "EventRejected"
    ]
    assert {r.stream_seq for r in rejected} >= set(seqs)
    pairs = [(r.consumer, r.stream_seq) for r in rejected]
    assert len(pairs) == len(set(pairs)), pairs
