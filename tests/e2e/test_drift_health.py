"""Health, drift and self-heal end to end: services as processes, drift made with kubectl.

These tests run their own Wake, started like the shared one but with short
drift and health intervals: the shared Wake keeps the default drift interval
(300 s), and turning drift checks on every second under every other
end-to-end test would make their logs depend on timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.payloads import (
    ApplySucceeded,
    DriftDetected,
    PlanApproved,
    PlanCreated,
)
from services.demo.sample import APP_PATH, first_commit
from tests.e2e.harness import WakeUnderTest, running_wake
from tests.waiting import eventually

KUBECTL = Path(sys.executable).parent / "kubectl"


@pytest.fixture(scope="module")
async def quick(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WakeUnderTest]:
    """A Wake whose applier checks drift every second and health every 0.2 s."""
    async with running_wake(
        tmp_path_factory.mktemp("e2e-drift"),
        env={"WAKE_DRIFT_INTERVAL": "1", "WAKE_HEALTH_INTERVAL": "0.2"},
    ) as wake:
        yield wake


async def kubectl(wake: WakeUnderTest, *args: str, editor: str = "") -> str:
    """The real kubectl against the sandbox; `editor` is what `kubectl edit` runs."""
    env = {**os.environ, "KUBE_EDITOR": editor} if editor else None
    result = await asyncio.to_thread(
        subprocess.run,
        [str(KUBECTL), "--kubeconfig", wake.running.kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


async def deployed(wake: WakeUnderTest, app: str, *flags: str) -> tuple[int, str]:
    """Register `app` from a fresh sample repository; its first ApplySucceeded (seq, apply id)."""
    repo = wake.repository(app)
    commit = first_commit(repo, namespace=app)
    start = await wake.position()
    await wake.wake(
        "app", "add", app, "--repo", repo.url, "--path", APP_PATH, "--namespace", app, *flags
    )
    applied = await wake.next_event(
        app, "ApplySucceeded", after=start, where=lambda s: s.event.payload.commit == commit
    )
    return applied.seq, applied.event.payload.apply_id


async def test_health_follows_the_rollout_and_a_stuck_one_is_degraded(quick: WakeUnderTest):
    # Given an app whose Deployment is applied but not rolled out (the emulator has no controllers)
    seq, apply_id = await deployed(quick, "rollout", "--health-timeout", "60")
    progressing = await quick.next_event("rollout", "HealthChanged", after=seq)
    assert progressing.event.payload.status == "Progressing"
    assert progressing.event.payload.apply_id == apply_id
    # When the rollout completes (a controller would write this status)
    status = {
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": 2,
            "availableReplicas": 2,
        }
    }
    await kubectl(
        quick, "patch", "deployment", "web", "-n", "rollout",
        "--subresource=status", "--type=merge", "-p", json.dumps(status),
    )  # fmt: skip
    # Then the app is Healthy
    healthy = await quick.next_event("rollout", "HealthChanged", after=progressing.seq)
    assert healthy.event.payload.status == "Healthy"
    assert {r.status for r in healthy.event.payload.resources} == {"Healthy"}

    # Given an app whose rollout never completes, with a short health timeout
    seq, _ = await deployed(quick, "stuck", "--health-timeout", "1")
    # Then it is Progressing, then Degraded, naming the Deployment
    first = await quick.next_event("stuck", "HealthChanged", after=seq)
    assert first.event.payload.status == "Progressing"
    degraded = await quick.next_event("stuck", "HealthChanged", after=first.seq)
    assert degraded.event.payload.status == "Degraded"
    web = next(r for r in degraded.event.payload.resources if r.ref.kind == "Deployment")
    assert web.message.startswith("not healthy within 1s")


async def test_drift_made_with_kubectl_is_detected_and_undone_by_self_heal(quick: WakeUnderTest):
    # Given a self-healing app, applied
    seq, _ = await deployed(quick, "healing", "--self-heal")
    # When someone edits its ConfigMap with `kubectl edit` (the editor a script that
    # changes the greeting) and deletes its Service with kubectl
    editor = "sed -i s/hello.from.commit.1/edited-by-hand/"
    await kubectl(quick, "edit", "configmap", "web-config", "-n", "healing", editor=editor)
    edited = await quick.cluster_object("v1", "ConfigMap", "web-config", "healing")
    assert edited is not None and edited["data"]["greeting"] == "edited-by-hand"
    await kubectl(quick, "delete", "service", "web", "-n", "healing")

    # Then self-heal undoes both
    async def undone() -> bool:
        config = await quick.cluster_object("v1", "ConfigMap", "web-config", "healing")
        service = await quick.cluster_object("v1", "Service", "web", "healing")
        return (
            config is not None
            and config["data"]["greeting"] == "hello from commit 1"
            and service is not None
        )

    await eventually(undone, timeout=60, what="the drift undone")
    # and the log says how: the drift with its fields and the deletion (in one check or
    # two, as the drift checks fell between the two kubectl commands) ...
    events = [s.event for s in await quick.events("healing", after=seq)]
    drifts = [e.payload for e in events if isinstance(e.payload, DriftDetected)]
    assert drifts and all(d.self_heal for d in drifts)
    found = {(str(r.ref), tuple(r.fields), r.deleted) for d in drifts for r in d.resources}
    assert found == {
        ("ConfigMap healing/web-config", ("/data/greeting",), False),
        ("Service healing/web", (), True),
    }
    # ... each followed by a plan of the applied bundle, approved as a self-heal, and applied
    plans = [e for e in events if isinstance(e.payload, PlanCreated)]
    assert plans and {p.payload.reason for p in plans} == {"drift"}
    approvals = [e.payload for e in events if isinstance(e.payload, PlanApproved)]
    assert all(a.comment.startswith("self-heal") for a in approvals)
    healed = await quick.next_event(
        "healing",
        "ApplySucceeded",
        after=seq,
        where=lambda s: s.event.payload.plan_id == plans[0].payload.plan_id,
    )
    assert isinstance(healed.event.payload, ApplySucceeded)


async def test_drift_without_self_heal_is_reported_once_and_left_alone(quick: WakeUnderTest):
    # Given an app without self-heal, applied, whose ConfigMap is edited with kubectl
    seq, _ = await deployed(quick, "drifting")
    patch = json.dumps({"data": {"greeting": "edited by hand"}})
    await kubectl(quick, "patch", "configmap", "web-config", "-n", "drifting", "-p", patch)
    # Then the drift is reported, without self-heal
    drift = await quick.next_event("drifting", "DriftDetected", after=seq)
    assert drift.event.payload.self_heal is False
    # and over several drift checks neither reported again nor undone
    await asyncio.sleep(3)
    events = await quick.events("drifting", after=seq)
    assert [s.event.type for s in events].count("DriftDetected") == 1
    assert "PlanCreated" not in [s.event.type for s in events]
    config = await quick.cluster_object("v1", "ConfigMap", "web-config", "drifting")
    assert config is not None and config["data"]["greeting"] == "edited by hand"
