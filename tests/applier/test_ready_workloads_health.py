"""An app with a Job and a PersistentVolumeClaim reaches Healthy on a sandbox with ready workloads.

Before, the sandbox never completed Jobs nor bound claims, so such an app stayed
Progressing until its health timeout made it Degraded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from events.payloads import HealthChanged
from services.sandbox import Sandbox
from services.wiring.kube import Kube
from tests.applier.test_health_drift_destinations import health_statuses, running_applier, stop
from tests.applier.test_service import planned
from tests.planner.scenario import Scenario, namespace
from tests.waiting import eventually


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(ready_workloads=True) as started:
        yield started


def job() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "shop"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "migrate", "image": "shop-migrations:1.0"}],
                }
            }
        },
    }


def claim() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "shop"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


async def test_an_app_with_a_job_and_a_claim_is_healthy(scenario: Scenario, kube: Kube) -> None:
    # Given an app whose health may take a minute, with a Job and a claim
    await scenario.register(health_timeout_seconds=60)
    await planned(scenario, kube, [namespace(), job(), claim()])
    # When the applier applies it to a sandbox with ready workloads
    ctx, task = await running_applier(scenario, health_interval=0.05)
    try:
        await eventually(
            lambda: _final(scenario), what="a final HealthChanged for the Job and the claim"
        )
    finally:
        await stop(ctx, task)
    # Then the app is Healthy, with the Job complete and the claim bound
    assert (await health_statuses(scenario))[-1] == "Healthy"
    healthy = (await scenario.last(HealthChanged.event_type)).payload
    assert {r.ref.kind: r.status for r in healthy.resources} == {
        "Namespace": "Healthy",
        "Job": "Healthy",
        "PersistentVolumeClaim": "Healthy",
    }


async def _final(scenario: Scenario) -> bool:
    statuses = await health_statuses(scenario)
    return bool(statuses) and statuses[-1] in ("Healthy", "Degraded", "Suspended")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
            },
        },
    }


async def test_resources_healthy_as_applied_are_judged_without_reading_them_again(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an app whose resources the cluster reports healthy in its answer to the apply
    await scenario.register(health_timeout_seconds=60)
    await planned(scenario, kube, [namespace(), deployment()])
    requests = sandbox.record_requests()
    # When the applier applies it
    ctx, task = await running_applier(scenario, health_interval=0.05)
    try:
        await eventually(lambda: _final(scenario), what="a final HealthChanged")
    finally:
        await stop(ctx, task)
    # Then its first health is Healthy, judged from the apply's answers: no object is read
    assert await health_statuses(scenario) == ["Healthy"]
    applied = [path for method, path in requests if method == "PATCH"]
    assert any(path.endswith("/deployments/web") for path in applied)
    read = [path for method, path in requests if method == "GET" and path.endswith("/web")]
    assert read == []
