"""Custom resources on real NATS and the sandbox: their scope comes from discovery, their
health from a rule (kstatus conditions) or else Unknown."""

from __future__ import annotations

from typing import Any

from events.payloads import ApplySucceeded, HealthChanged, PlanCreated
from services.sandbox import Sandbox
from services.wiring.kube import Kube, wait_established
from tests.applier.test_health_drift_destinations import health_statuses, running_applier, stop
from tests.applier.test_service import apply, planned
from tests.planner.scenario import Scenario, namespace
from tests.waiting import eventually


def crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.example.com"},
        "spec": {
            "group": "example.com",
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


REGIONS = crd("Region", "regions", "Cluster")
WIDGETS = crd("Widget", "widgets", "Namespaced")


def region(name: str, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Region",
        "metadata": {"name": name, **metadata},
        "spec": {"zones": 3},
    }


def widget(name: str = "gear", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, "namespace": "shop", **metadata},
        "spec": {"size": 2},
    }


async def installed(kube: Kube, definition: dict[str, Any]) -> None:
    """The CRD is on the cluster already, as an operator's chart would have put it."""
    await kube.apply(definition)
    names = definition["spec"]["names"]
    await wait_established(kube, "example.com/v1", names["kind"], timeout=10)


async def test_a_cluster_scoped_custom_kind_is_applied_without_a_namespace(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given a cluster-scoped kind whose CRD is installed on the cluster, not in the app,
    # and two instances: one without a namespace, one given a namespace anyway (as
    # an older renderer did); and a namespaced kind's instance without a namespace
    await installed(kube, REGIONS)
    await installed(kube, WIDGETS)
    await scenario.register(wide=True)  # cluster-scoped kinds: outside the default project
    resources = [
        namespace(),
        region("eu-west"),
        region("us-east", namespace="shop"),
        widget(namespace=""),
    ]
    # When the app is planned and applied
    approval = await planned(scenario, kube, resources)
    await apply(scenario, kube, approval)
    # Then both are cluster-scoped objects, everywhere Wake names them
    plan = (await scenario.last(PlanCreated.event_type)).payload
    applied = (await scenario.last(ApplySucceeded.event_type)).payload
    for refs in ([c.ref for c in plan.changes], applied.inventory):
        regions = sorted((r.name, r.namespace) for r in refs if r.kind == "Region")
        assert regions == [("eu-west", ""), ("us-east", "")]
    for name in ("eu-west", "us-east"):
        live = sandbox.get("example.com/v1", "Region", name)
        assert live is not None and "namespace" not in live["metadata"]
    # And the namespaced kind goes to the app's namespace, as discovery says it is namespaced
    assert [(r.name, r.namespace) for r in applied.inventory if r.kind == "Widget"] == [
        ("gear", "shop")
    ]
    assert sandbox.get("example.com/v1", "Widget", "gear", namespace="shop") is not None


async def test_a_cluster_scoped_kind_whose_crd_comes_with_the_app(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an app that brings the CRD of a cluster-scoped kind and an instance of it
    await scenario.register(wide=True)
    approval = await planned(scenario, kube, [REGIONS, region("eu-west")])
    # When it is applied
    await apply(scenario, kube, approval)
    # Then the instance is cluster-scoped
    applied = (await scenario.last(ApplySucceeded.event_type)).payload
    assert [(r.name, r.namespace) for r in applied.inventory if r.kind == "Region"] == [
        ("eu-west", "")
    ]
    assert sandbox.get("example.com/v1", "Region", "eu-west") is not None


async def test_a_custom_resource_follows_its_kstatus_conditions(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an applied Widget whose controller has not written a status yet
    await installed(kube, WIDGETS)
    await scenario.register(health_timeout_seconds=60)
    await planned(scenario, kube, [namespace(), widget()])
    ctx, task = await running_applier(scenario, health_interval=0.05)
    try:
        await eventually(lambda: _has(scenario, "Unknown"), what="HealthChanged Unknown")
        # When its controller reports it is reconciling
        reconciling = {"type": "Reconciling", "status": "True", "message": "building gears"}
        sandbox.set_status(
            "example.com/v1",
            "Widget",
            "gear",
            {"observedGeneration": 1, "conditions": [reconciling]},
            namespace="shop",
        )
        # Then the app is Progressing, saying why
        await eventually(lambda: _has(scenario, "Progressing"), what="HealthChanged Progressing")
        progressing = (await scenario.last(HealthChanged.event_type)).payload
        [gear] = [r for r in progressing.resources if r.ref.kind == "Widget"]
        assert gear.message == "building gears"
        # When it reports Ready
        ready = {"type": "Ready", "status": "True", "reason": "Built"}
        sandbox.set_status(
            "example.com/v1",
            "Widget",
            "gear",
            {"observedGeneration": 1, "conditions": [ready]},
            namespace="shop",
        )
        # Then the app is Healthy
        await eventually(lambda: _has(scenario, "Healthy"), what="HealthChanged Healthy")
    finally:
        await stop(ctx, task)
    assert await health_statuses(scenario) == ["Unknown", "Progressing", "Healthy"]


async def test_a_custom_resource_without_conditions_is_unknown_not_healthy(
    scenario: Scenario, kube: Kube
) -> None:
    # Given an app with a Widget no controller ever writes a status for
    await installed(kube, WIDGETS)
    await scenario.register(health_timeout_seconds=0.5)
    approval = await planned(scenario, kube, [namespace(), widget()])
    # When it is applied and its health watched until the watch ends (at the timeout)
    await apply(scenario, kube, approval, health_interval=0.05)
    # Then the app is Unknown (not Healthy, and not Degraded either), and says why
    assert await health_statuses(scenario) == ["Unknown"]
    unknown = (await scenario.last(HealthChanged.event_type)).payload
    statuses = {r.ref.kind: (r.status, r.message) for r in unknown.resources}
    assert statuses == {
        "Namespace": ("Healthy", ""),
        "Widget": (
            "Unknown",
            "no health rule for Widget (example.com): it reports no Ready, Reconciling or "
            "Stalled condition and no status.observedGeneration",
        ),
    }


async def _has(scenario: Scenario, status: str) -> bool:
    return status in await health_statuses(scenario)
