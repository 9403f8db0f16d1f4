"""The applier on real NATS and the sandbox: health after applying, drift, several clusters."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from events.payloads import ApplySucceeded, AppSpec, DriftDetected, HealthChanged, IgnoreRule
from services.applier.drift_watch import DriftWatch
from services.applier.service import CONSUMER, serve
from services.catalog.lookup import app_spec
from services.planner.service import Planner
from services.sandbox import Sandbox
from services.wiring.consumers import ConsumerSettings
from services.wiring.eventlog import EventLog
from services.wiring.kube import Clusters, Kube
from services.wiring.settings import Settings
from tests.applier.test_service import planned
from tests.planner.scenario import Scenario, configmap, deployment, namespace
from tests.waiting import eventually

KUBECTL = Path(sys.executable).parent / "kubectl"
FAST = ConsumerSettings(name=CONSUMER.name, subjects=CONSUMER.subjects, backoff=(1.0,))


async def running_applier(scenario: Scenario, **settings: Any) -> tuple[Any, asyncio.Task[None]]:
    ctx = scenario.context("applier", **settings)
    return ctx, asyncio.create_task(serve(ctx, consumer=FAST))


async def stop(ctx: Any, task: asyncio.Task[None]) -> None:
    ctx.stop.set()
    await task


async def health_statuses(scenario: Scenario) -> list[str]:
    return [e.payload.status for e in await scenario.events(HealthChanged.event_type)]


def rolled_out(replicas: int) -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }


async def test_health_is_progressing_until_the_rollout_is_done(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an applied Deployment whose controller has not rolled it out yet
    await scenario.register(health_timeout_seconds=60)
    approval = await planned(scenario, kube, [namespace(), deployment(replicas=2)])
    ctx, task = await running_applier(scenario, health_interval=0.05)
    try:
        await eventually(lambda: _has(scenario, "Progressing"), what="HealthChanged Progressing")
        progressing = (await scenario.last(HealthChanged.event_type)).payload
        web = next(r for r in progressing.resources if r.ref.kind == "Deployment")
        assert web.message == "waiting for the rollout to be observed"
        # When the rollout completes
        sandbox.set_status("apps/v1", "Deployment", "web", rolled_out(2), namespace="shop")
        # Then the app is Healthy, once, and the watch ends there
        await eventually(lambda: _has(scenario, "Healthy"), what="HealthChanged Healthy")
        await asyncio.sleep(0.3)
    finally:
        await stop(ctx, task)
    assert await health_statuses(scenario) == ["Progressing", "Healthy"]
    changes = await scenario.events(HealthChanged.event_type)
    succeeded = await scenario.last(ApplySucceeded.event_type)
    assert {e.payload.apply_id for e in changes} == {succeeded.payload.apply_id}
    assert {e.causation_id for e in changes} == {succeeded.event_id}
    assert approval.payload.plan_id == succeeded.payload.plan_id


async def _has(scenario: Scenario, status: str) -> bool:
    return status in await health_statuses(scenario)


async def test_a_rollout_not_done_within_the_health_timeout_is_degraded(
    scenario: Scenario, kube: Kube
) -> None:
    await scenario.register(health_timeout_seconds=0.5)
    await planned(scenario, kube, [namespace(), deployment(replicas=2)])
    ctx, task = await running_applier(scenario, health_interval=0.05)
    try:
        await eventually(lambda: _has(scenario, "Degraded"), what="HealthChanged Degraded")
    finally:
        await stop(ctx, task)
    assert await health_statuses(scenario) == ["Progressing", "Degraded"]
    degraded = (await scenario.last(HealthChanged.event_type)).payload
    web = next(r for r in degraded.resources if r.ref.kind == "Deployment")
    assert web.status == "Degraded" and web.message.startswith("not healthy within 0.5s")


async def test_health_watching_resumes_after_a_restart(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an apply whose health was Progressing when its applier stopped
    await scenario.register(health_timeout_seconds=60)
    await planned(scenario, kube, [namespace(), deployment(replicas=1)])
    ctx, task = await running_applier(scenario, health_interval=0.05)
    try:
        await eventually(lambda: _has(scenario, "Progressing"), what="Progressing")
    finally:
        await stop(ctx, task)
    sandbox.set_status("apps/v1", "Deployment", "web", rolled_out(1), namespace="shop")
    # When an applier starts again, it watches that apply's health to the end
    ctx, task = await running_applier(scenario, health_interval=0.05)
    try:
        await eventually(lambda: _has(scenario, "Healthy"), what="Healthy after restart")
    finally:
        await stop(ctx, task)
    assert await health_statuses(scenario) == ["Progressing", "Healthy"]


def kubectl(kubeconfig: str, *args: str) -> str:
    result = subprocess.run(
        [str(KUBECTL), "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_drift_made_with_kubectl_is_reported_once_and_a_deletion_too(
    scenario: Scenario, kube: Kube, settings: Settings
) -> None:
    # Given an applied self-healing app with a rule ignoring one key
    await scenario.register(
        self_heal=True,
        ignore_differences=[IgnoreRule(json_pointers=["/data/ignored"], kind="ConfigMap")],
    )
    resources = [namespace(), configmap("c", a="1", ignored="x"), configmap("d", b="1")]
    approval = await planned(scenario, kube, resources)
    ctx, task = await running_applier(scenario)
    try:
        await eventually(lambda: _succeeded(scenario), what="ApplySucceeded")
    finally:
        await stop(ctx, task)
    watch = DriftWatch(scenario.context("applier"), Clusters.serving(kube))
    assert await watch.check(scenario.app, await _spec(scenario)) is None
    # When someone patches a field Wake owns, and one that is ignored, with kubectl
    patch = '{"data": {"a": "changed", "ignored": "y"}}'
    await asyncio.to_thread(
        kubectl, settings.kubeconfig, "patch", "configmap", "c", "-n", "shop", "-p", patch
    )
    # Then the drift check reports the owned field only, with self_heal
    detected = await watch.check(scenario.app, await _spec(scenario))
    assert detected is not None and detected.self_heal
    assert [(str(d.ref), d.fields, d.deleted) for d in detected.resources] == [
        ("ConfigMap shop/c", ["/data/a"], False)
    ]
    succeeded = await scenario.last(ApplySucceeded.event_type)
    assert detected.bundle_digest == succeeded.payload.bundle_digest
    # and not again while it stays the same
    assert await watch.check(scenario.app, await _spec(scenario)) is None
    # When a resource is deleted by hand, that is news
    await asyncio.to_thread(kubectl, settings.kubeconfig, "delete", "configmap", "d", "-n", "shop")
    again = await watch.check(scenario.app, await _spec(scenario))
    assert again is not None
    assert [(str(d.ref), d.deleted) for d in again.resources] == [
        ("ConfigMap shop/c", False),
        ("ConfigMap shop/d", True),
    ]
    # A fresh watch (a restarted applier) starts from the last report: no repeat
    fresh = DriftWatch(scenario.context("applier"), Clusters.serving(kube))
    assert await fresh.check(scenario.app, await _spec(scenario)) is None
    assert len(await scenario.events(DriftDetected.event_type)) == 2
    assert approval.payload.plan_id == succeeded.payload.plan_id


async def _succeeded(scenario: Scenario) -> bool:
    return bool(await scenario.events(ApplySucceeded.event_type))


async def _spec(scenario: Scenario) -> AppSpec:
    spec = await app_spec(scenario.log, scenario.app)
    assert spec is not None
    return spec


# --- destinations -------------------------------------------------------------------


def two_context_kubeconfig(path: Path, east: Sandbox, west: Sandbox) -> Path:
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
        "current-context": "east",
    }
    for name, sandbox in (("east", east), ("west", west)):
        one = sandbox.kubeconfig()
        config["clusters"].append({"name": name, "cluster": one["clusters"][0]["cluster"]})
        config["users"].append({"name": name, "user": one["users"][0]["user"]})
        config["contexts"].append({"name": name, "context": {"cluster": name, "user": name}})
    path.write_text(yaml.safe_dump(config))
    return path


async def test_one_wake_applies_apps_to_the_cluster_of_their_context(
    event_log: EventLog, tmp_path: Path
) -> None:
    async with Sandbox() as east, Sandbox() as west:
        # Given a kubeconfig with two contexts, and an app on each
        kubeconfig = str(two_context_kubeconfig(tmp_path / "kubeconfig", east, west))
        settings = Settings(kubeconfig=kubeconfig)
        apps = {
            "shop": Scenario(event_log, settings, app="shop"),
            "blog": Scenario(event_log, settings, app="blog"),
        }
        # the current context: east
        await apps["shop"].register(destination_context="", namespace="shop")
        await apps["blog"].register(destination_context="west", namespace="blog")
        # When both are planned and applied by one planner and one applier
        async with Clusters.from_settings(settings) as clusters:
            for name, scenario in apps.items():
                rendered = await scenario.render(
                    [namespace(name), configmap("c", ns=name, app=name)]
                )
                await Planner(scenario.context("planner"), clusters).handle(
                    await scenario.stored(rendered)
                )
        ctx, task = await running_applier(apps["shop"])
        try:
            for scenario in apps.values():
                await eventually(lambda s=scenario: _succeeded(s), what=f"{scenario.app} applied")
        finally:
            await stop(ctx, task)
        # Then each app's objects are in its own cluster only
        assert east.get("v1", "ConfigMap", "c", namespace="shop") is not None
        assert west.get("v1", "ConfigMap", "c", namespace="shop") is None
        assert west.get("v1", "ConfigMap", "c", namespace="blog") is not None
        assert east.get("v1", "ConfigMap", "c", namespace="blog") is None
