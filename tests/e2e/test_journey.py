"""A commit's journey through five separate services, end to end (STYLE 10: Given / When / Then)."""

from __future__ import annotations

import getpass
import json
import os
import signal

from events.payloads import (
    ApplySucceeded,
    ApprovalRequested,
    PlanCreated,
    RenderFailed,
    RevisionDetected,
)
from services.demo.sample import APP_PATH, deployment_yaml, first_commit, second_commit
from tests.e2e.harness import WakeUnderTest
from tests.waiting import eventually

JOURNEY = [
    "RevisionDetected",
    "ManifestsRendered",
    "PlanCreated",
    "PlanApproved",
    "ApplyStarted",
    "ResourceApplied",
    "ApplySucceeded",
    "NotificationSent",
]


async def test_a_commit_travels_from_git_to_the_cluster_as_one_journey(wake: WakeUnderTest):
    # Given a repository with a Namespace, a Deployment, a Service and a ConfigMap
    repo = wake.repository("journey")
    commit = first_commit(repo, namespace="journey")
    start = await wake.position()
    # When it is registered as an auto-sync application
    await wake.wake(
        "app", "add", "journey", "--repo", repo.url, "--path", APP_PATH, "--namespace", "journey"
    )
    # Then its resources appear in the cluster
    applied = await wake.next_event(
        "journey", "ApplySucceeded", after=start, where=lambda s: s.event.payload.commit == commit
    )
    assert await wake.cluster_object("v1", "Namespace", "journey") is not None
    deployment = await wake.cluster_object("apps/v1", "Deployment", "web", "journey")
    assert deployment is not None and deployment["spec"]["replicas"] == 2
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "wake" and labels["wake.dev/app"] == "journey"
    assert await wake.cluster_object("v1", "ConfigMap", "web-config", "journey") is not None
    # and the log holds the journey, in order, linked by causation and one correlation id
    await wake.next_event(
        "journey",
        "NotificationSent",
        after=applied.seq,
        where=lambda s: s.event.payload.about_event_id == applied.event.event_id,
    )
    events = [s.event for s in await wake.events("journey", after=start)]
    detected = next(e for e in events if isinstance(e.payload, RevisionDetected))
    journey = [e for e in events if e.correlation_id == detected.event_id]
    types = [e.type for e in journey]
    assert types[:5] == JOURNEY[:5]
    assert types.count("ResourceApplied") == 4
    # The applier's health watch appends HealthChanged beside the notification.
    # One wave (all in wave 0, Sync phase): its WaveCompleted comes before the outcome.
    assert [t for t in types[9:] if t != "HealthChanged"] == [
        "WaveCompleted",
        "ApplySucceeded",
        "NotificationSent",
    ]
    by_id = {e.event_id: e for e in journey}
    for event in journey[1:]:
        assert event.causation_id in by_id, f"{event.type} is not caused by an event of the journey"
    cause_type = {e.type: by_id[e.causation_id].type for e in journey[1:]}
    assert cause_type["ManifestsRendered"] == "RevisionDetected"
    assert cause_type["PlanCreated"] == "ManifestsRendered"
    assert cause_type["PlanApproved"] == "PlanCreated"
    assert cause_type["ApplyStarted"] == "PlanApproved"
    assert cause_type["NotificationSent"] == "ApplySucceeded"
    assert {e.actor for e in journey} >= {
        "service:git-watcher",
        "service:renderer",
        "service:planner",
        "service:applier",
        "service:notifier",
    }
    # the approval by policy is the planner's, signed by it
    (approval,) = [e for e in journey if e.type == "PlanApproved"]
    assert (approval.actor, approval.payload.via) == ("service:planner", "policy")
    assert "ApplySucceeded" in wake.receiver.received
    # and it is one OpenTelemetry trace, across five processes (a health change later
    # starts a trace of its own, linked to the apply)
    trace_ids = {e.traceparent.split("-")[1] for e in journey if e.type != "HealthChanged"}
    assert len(trace_ids) == 1 and "0" * 32 not in trace_ids
    assert len({e.traceparent.split("-")[2] for e in journey}) > 1  # spans of several services
    # and the CLI tells the same story
    shown = json.loads((await wake.wake("app", "show", "journey", "--json")).stdout)
    assert shown["state"] == "synced" and shown["applied_revision"] == commit
    tail = await wake.wake("events", "tail", "--app", "journey", "--json")
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["type"] for line in lines][:3] == [
        "ApplicationRegistered",
        "RevisionDetected",
        "ManifestsRendered",
    ]
    assert all(line["app"] == "journey" for line in lines)
    assert [line["seq"] for line in lines] == sorted(line["seq"] for line in lines)
    first = lines[1]
    assert first["payload"]["commit"] == commit
    assert {"event_id", "occurred_at", "causation_id", "correlation_id", "actor"} <= set(first)
    plans = await wake.wake("events", "tail", "--app", "journey", "--type", "PlanCreated")
    assert len(plans.stdout.splitlines()) == 1 and "4 to create" in plans.stdout


async def test_a_second_commit_updates_and_prunes_and_an_unchanged_path_detects_nothing(
    wake: WakeUnderTest,
):
    # Given an application applied at its first commit
    repo = wake.repository("second")
    first = first_commit(repo, namespace="second")
    start = await wake.position()
    await wake.wake(
        "app", "add", "second", "--repo", repo.url, "--path", APP_PATH, "--namespace", "second"
    )
    await wake.next_event(
        "second", "ApplySucceeded", after=start, where=lambda s: s.event.payload.commit == first
    )
    # When a commit changes only a file outside the app's path, and a sync is asked for
    outside = repo.commit("docs only", {"README.md": "nothing for the cluster\n"})
    before_sync = await wake.position()
    await wake.wake("sync", "second")
    # Then git-watcher handles the sync and detects nothing
    await wake.consumer_has_handled("git-watcher-sync", before_sync + 1)
    detected = [
        s
        for s in await wake.events("second", after=before_sync)
        if s.event.type == "RevisionDetected"
    ]
    assert detected == [], f"{outside[:7]} changed nothing under {APP_PATH}"
    # When the next commit changes the Deployment and removes the ConfigMap
    second = second_commit(repo)
    before = await wake.position()
    await wake.wake("sync", "second")
    # Then the Deployment is updated and the ConfigMap pruned
    applied = await wake.next_event(
        "second", "ApplySucceeded", after=before, where=lambda s: s.event.payload.commit == second
    )
    deployment = await wake.cluster_object("apps/v1", "Deployment", "web", "second")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert await wake.cluster_object("v1", "ConfigMap", "web-config", "second") is None
    inventory = {(r.kind, r.name) for r in applied.event.payload.inventory}
    assert ("ConfigMap", "web-config") not in inventory and ("Deployment", "web") in inventory
    plan = await wake.next_event("second", "PlanCreated", after=before)
    actions = {(c.ref.kind, c.action) for c in plan.event.payload.changes}
    assert ("Deployment", "update") in actions and ("Service", "unchanged") in actions
    assert [r.name for r in plan.event.payload.prune] == ["web-config"]
    pruned = [
        s.event.payload
        for s in await wake.events("second", after=before)
        if s.event.type == "ResourceApplied" and s.event.payload.action == "pruned"
    ]
    assert [p.ref.name for p in pruned] == ["web-config"]


async def test_a_manual_app_applies_nothing_until_approved_and_nothing_after_a_reject(
    wake: WakeUnderTest,
):
    # Given a manual application
    repo = wake.repository("manual")
    first_commit(repo, namespace="manual")
    start = await wake.position()
    await wake.wake(
        "app",
        "add",
        "manual",
        "--repo",
        repo.url,
        "--path",
        APP_PATH,
        "--namespace",
        "manual",
        "--manual",
    )
    # Then its plan waits for approval and nothing is applied
    requested = await wake.next_event("manual", "ApprovalRequested", after=start)
    plan_id = requested.event.payload.plan_id
    assert isinstance(requested.event.payload, ApprovalRequested)
    await wake.consumer_has_handled("applier", requested.seq)
    assert await wake.cluster_object("v1", "Namespace", "manual") is None
    listed = [
        json.loads(line)
        for line in (await wake.wake("plans", "manual", "--json")).stdout.splitlines()
    ]
    assert listed[0]["plan_id"] == plan_id and listed[0]["status"] == "awaiting-approval"
    assert {c["action"] for c in listed[0]["changes"]} == {"create"}
    # When it is approved
    await wake.wake("approve", plan_id)
    # Then it is applied
    await wake.next_event(
        "manual",
        "ApplySucceeded",
        after=requested.seq,
        where=lambda s: s.event.payload.plan_id == plan_id,
    )
    assert await wake.cluster_object("v1", "Namespace", "manual") is not None
    # and approving it again is refused, naming its state
    again = await wake.wake("approve", plan_id, check=False)
    assert again.returncode != 0 and "not awaiting approval" in again.stderr
    # When the next commit's plan is rejected
    second = second_commit(repo)
    before = await wake.position()
    await wake.wake("sync", "manual")
    requested = await wake.next_event("manual", "ApprovalRequested", after=before)
    plan = await wake.next_event("manual", "PlanCreated", after=before)
    assert plan.event.payload.commit == second
    await wake.wake("reject", requested.event.payload.plan_id, "--reason", "not today")
    # Then nothing of it is applied
    rejected = await wake.next_event("manual", "PlanRejected", after=before)
    await wake.consumer_has_handled("applier", rejected.seq)
    after = [s.event.type for s in await wake.events("manual", after=before)]
    assert "ApplyStarted" not in after
    deployment = await wake.cluster_object("apps/v1", "Deployment", "web", "manual")
    assert deployment["spec"]["replicas"] == 2
    assert await wake.cluster_object("v1", "ConfigMap", "web-config", "manual") is not None
    shown = (await wake.wake("plans", "manual")).stdout
    assert f"rejected by user:{getpass.getuser()} via cli: not today" in shown


async def test_the_applier_killed_mid_apply_finishes_after_its_restart_exactly_once(
    wake: WakeUnderTest,
):
    # Given a manual application whose plan is approved
    repo = wake.repository("crash")
    first_commit(repo, namespace="crash")
    start = await wake.position()
    await wake.wake(
        "app",
        "add",
        "crash",
        "--repo",
        repo.url,
        "--path",
        APP_PATH,
        "--namespace",
        "crash",
        "--manual",
    )
    requested = await wake.next_event("crash", "ApprovalRequested", after=start)
    plan_id = requested.event.payload.plan_id
    applier = wake.running.services["applier"]
    killed_pid = applier.pid
    await wake.wake("approve", plan_id)
    # When the applier is SIGKILLed as soon as it has started applying
    await wake.next_event("crash", "ApplyStarted", after=requested.seq, timeout=30)
    os.kill(killed_pid, signal.SIGKILL)
    # Then the supervisor restarts it, the plan is applied, and ApplySucceeded appears once
    await eventually(lambda: applier.pid != killed_pid, timeout=30, what="applier restarted")
    succeeded = await wake.next_event(
        "crash",
        "ApplySucceeded",
        after=requested.seq,
        where=lambda s: s.event.payload.plan_id == plan_id,
    )
    await wake.consumer_has_handled("applier", succeeded.seq)
    events = [s.event for s in await wake.events("crash", after=requested.seq)]
    assert sum(1 for e in events if isinstance(e.payload, ApplySucceeded)) == 1
    assert sum(1 for e in events if e.type == "ApplyStarted") == 1
    assert await wake.cluster_object("apps/v1", "Deployment", "web", "crash") is not None


async def test_broken_yaml_fails_the_render_naming_file_and_line_and_the_next_good_commit_applies(
    wake: WakeUnderTest,
):
    # Given an application applied at its first commit
    repo = wake.repository("broken")
    first_commit(repo, namespace="broken")
    start = await wake.position()
    await wake.wake(
        "app", "add", "broken", "--repo", repo.url, "--path", APP_PATH, "--namespace", "broken"
    )
    await wake.next_event("broken", "ApplySucceeded", after=start)
    # When a commit breaks the Deployment's YAML: a flow sequence opened on line 5
    # is never closed, which the parser finds on line 6
    broken = deployment_yaml(replicas=5, image="nginx:1.28").replace(
        "  labels:\n", "  labels: [unclosed\n", 1
    )
    bad = repo.commit("break it", {f"{APP_PATH}/deployment.yaml": broken})
    before = await wake.position()
    await wake.wake("sync", "broken")
    # Then the render fails naming the file and the line
    failed = await wake.next_event("broken", "RenderFailed", after=before)
    payload = failed.event.payload
    assert isinstance(payload, RenderFailed) and payload.commit == bad
    assert payload.file == f"{APP_PATH}/deployment.yaml"
    assert payload.line == 6
    assert "line 5" in payload.error
    await wake.next_event(
        "broken",
        "NotificationSent",
        after=failed.seq,
        where=lambda s: s.event.payload.about_event_id == failed.event.event_id,
    )
    # When the next commit fixes it
    good = repo.commit(
        "fix it", {f"{APP_PATH}/deployment.yaml": deployment_yaml(replicas=5, image="nginx:1.28")}
    )
    await wake.wake("sync", "broken")
    # Then it is applied
    await wake.next_event(
        "broken", "ApplySucceeded", after=failed.seq, where=lambda s: s.event.payload.commit == good
    )
    deployment = await wake.cluster_object("apps/v1", "Deployment", "web", "broken")
    assert deployment["spec"]["replicas"] == 5
    plans = [
        s.event.payload
        for s in await wake.events("broken", after=start)
        if isinstance(s.event.payload, PlanCreated)
    ]
    assert bad not in {p.commit for p in plans}
