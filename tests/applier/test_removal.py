"""`wake app remove --cascade` on real NATS and the sandbox: what the app applied is deleted."""

from __future__ import annotations

import asyncio
from pathlib import Path

from events.payloads import ApplicationRemoved, ApplySucceeded, ResourceDeleted
from services.applier.service import CONSUMER, Applier, serve
from services.sandbox import Sandbox
from services.wiring.consumers import ConsumerSettings
from services.wiring.kube import Clusters, Kube
from tests.applier.test_service import apply, planned
from tests.git_watcher.test_watcher import wake_cli
from tests.planner.scenario import Scenario, configmap, deployment, namespace
from tests.waiting import eventually

FAST = ConsumerSettings(name=CONSUMER.name, subjects=CONSUMER.subjects, backoff=(1.0,) * 3)


def resources() -> list[dict]:
    shared = configmap("settings", ns="default", mode="on")
    return [namespace(), namespace("default"), configmap("a", v="1"), deployment(), shared]


async def test_remove_with_cascade_deletes_what_the_app_applied_and_registering_brings_it_back(
    scenario: Scenario, kube: Kube, sandbox: Sandbox, nats_server, tmp_path: Path
) -> None:
    # Given an applied app (which took over the `default` Namespace: --adopt), one of
    # whose objects someone else has taken over since
    await scenario.register(adopt=True, wide=True)  # `default` too: a wider project
    await apply(scenario, kube, await planned(scenario, kube, resources()))
    await kube.api.call_api(
        "/api/v1/namespaces/shop/configmaps/a",
        "PATCH",
        header_params={"Content-Type": "application/merge-patch+json"},
        body={"metadata": {"labels": {"wake.dev/app": "billing"}}},
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
    )

    # When it is removed with --cascade, and the applier runs
    out = await asyncio.to_thread(
        wake_cli, nats_server.url, tmp_path / "cli", "app", "remove", "shop", "--cascade"
    )
    assert out.startswith("removed shop; the applier deletes what it applied")
    removal = await scenario.last(ApplicationRemoved.event_type)
    assert removal.payload.cascade is True
    ctx = scenario.context("applier")
    task = asyncio.create_task(serve(ctx, consumer=FAST))
    try:

        async def recorded() -> bool:
            return len(await scenario.events(ResourceDeleted.event_type)) == 5

        await eventually(recorded, what="a ResourceDeleted for each object of the inventory")
    finally:
        ctx.stop.set()
        await task

    # Then its objects are gone, in prune order, each deletion an event under the removal
    deleted = [e.payload for e in await scenario.events(ResourceDeleted.event_type)]
    assert all(d.removal_id == removal.event_id for d in deleted)
    assert [(d.ref.kind, d.ref.name, d.action) for d in deleted] == [
        ("Deployment", "web", "deleted"),
        ("ConfigMap", "a", "kept"),
        ("ConfigMap", "settings", "deleted"),
        ("Namespace", "shop", "deleted"),
        ("Namespace", "default", "kept"),
    ]
    kept = {d.ref.name: d.reason for d in deleted if d.action == "kept"}
    assert kept == {
        "a": "it no longer carries the app's inventory labels",
        "default": "namespace default is never deleted",
    }
    assert sandbox.get("apps/v1", "Deployment", "web", namespace="shop") is None
    assert sandbox.get("v1", "ConfigMap", "settings", namespace="default") is None
    assert sandbox.get("v1", "Namespace", "shop") is None
    assert sandbox.get("v1", "Namespace", "default") is not None

    # And registering it again applies it again
    await scenario.register(project="wide")
    await apply(scenario, kube, await planned(scenario, kube, resources(), label="v1"))
    assert len(await scenario.events(ApplySucceeded.event_type)) == 2
    assert sandbox.get("apps/v1", "Deployment", "web", namespace="shop") is not None
    assert sandbox.get("v1", "ConfigMap", "settings", namespace="default") is not None


async def test_remove_without_cascade_and_a_removal_made_moot_delete_nothing(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register()
    await apply(scenario, kube, await planned(scenario, kube, [namespace(), configmap("a")]))
    applier = Applier(scenario.context("applier"), Clusters.serving(kube))
    # Without --cascade: today's behaviour
    plain = await scenario.append(ApplicationRemoved(reason="handed over"))
    await applier.handle(await scenario.stored(plain))
    # With --cascade, but handled only after the app was registered again
    cascade = await scenario.append(ApplicationRemoved(cascade=True))
    await scenario.register()
    await applier.handle(await scenario.stored(cascade))

    assert await scenario.events(ResourceDeleted.event_type) == []
    assert sandbox.get("v1", "ConfigMap", "a", namespace="shop") is not None
