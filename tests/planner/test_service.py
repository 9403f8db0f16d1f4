"""The planner on real NATS and the sandbox: ManifestsRendered -> plan -> approval or request."""

from __future__ import annotations

import asyncio
import base64

import msgspec

from events.envelope import encode
from events.payloads import (
    ApprovalRequested,
    EventRejected,
    ManifestsRendered,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    ResourceRef,
)
from services.planner.service import CONSUMER, Planner, serve
from services.sandbox import Sandbox
from services.wiring.consumers import ConsumerSettings
from services.wiring.kube import Clusters, Kube
from tests.planner.scenario import (
    Scenario,
    configmap,
    deployment,
    namespace,
    secret,
    types_of,
)
from tests.waiting import eventually


async def plan_once(scenario: Scenario, kube: Kube, rendered) -> PlanCreated:
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    await planner.handle(await scenario.stored(rendered))
    return (await scenario.last(PlanCreated.event_type)).payload


async def test_a_rendered_revision_becomes_a_plan_approved_by_policy(
    scenario: Scenario, sandbox: Sandbox
) -> None:
    # Given an auto-sync app, and the planner running
    await scenario.register(auto_sync=True)
    ctx = scenario.context("planner")
    fast = ConsumerSettings(name=CONSUMER.name, subjects=CONSUMER.subjects, backoff=(1.0,))
    task = asyncio.create_task(serve(ctx, consumer=fast))
    try:
        # When a revision is rendered
        rendered = await scenario.render(
            [deployment(), configmap("web-config", a="1"), namespace()]
        )

        # Then a plan is created and approved by policy, together
        async def decided() -> bool:
            return PlanApproved.event_type in types_of(await scenario.events())

        await eventually(decided, what="a PlanApproved")
    finally:
        ctx.stop.set()
        await task
    events = await scenario.events(PlanCreated.event_type, PlanApproved.event_type)
    created, approved = events
    plan = created.payload
    assert created.causation_id == rendered.event_id
    assert plan.plan_id == created.event_id
    assert (plan.commit, plan.bundle_digest) == (
        rendered.payload.commit,
        rendered.payload.bundle_digest,
    )
    assert not plan.needs_approval
    assert [(c.ref.kind, c.action) for c in plan.changes] == [
        ("Namespace", "create"),
        ("ConfigMap", "create"),
        ("Deployment", "create"),
    ]
    assert all(c.error == "" for c in plan.changes)
    assert "+    wake.dev/app: shop" in plan.changes[2].diff
    assert "+    app.kubernetes.io/managed-by: wake" in plan.changes[2].diff
    # THE RULE: the approval's causation is the plan's event
    assert approved.causation_id == created.event_id
    assert approved.actor == "service:planner"
    assert approved.payload == PlanApproved(
        plan_id=plan.plan_id, via="policy", comment="3 to create"
    )
    # A plan is only a dry run
    assert sandbox.get("v1", "Namespace", "shop") is None
    assert sandbox.objects("apps/v1", "Deployment") == []


async def test_updates_unchanged_and_prunes_against_the_last_inventory(
    scenario: Scenario, kube: Kube
) -> None:
    # Given Wake applied a namespace, two config maps and a deployment before
    await scenario.register()
    await scenario.applied_before(
        kube,
        [namespace(), configmap("keep", a="1"), configmap("old", a="1"), deployment(replicas=2)],
    )
    # When the next revision changes the deployment and drops a config map
    rendered = await scenario.render(
        [namespace(), configmap("keep", a="1"), deployment(replicas=3)], label="v2"
    )
    plan = await plan_once(scenario, kube, rendered)

    # Then
    actions = {c.ref.name if c.ref.kind != "Namespace" else "ns": c.action for c in plan.changes}
    assert actions == {"ns": "unchanged", "keep": "unchanged", "web": "update"}
    update = next(c for c in plan.changes if c.action == "update")
    assert update.diff.startswith("--- live apps/v1/Deployment shop/web\n")
    assert "-  replicas: 2\n+  replicas: 3" in update.diff
    assert "managedFields" not in update.diff and "resourceVersion" not in update.diff
    assert plan.prune == [
        ResourceRef(api_version="v1", kind="ConfigMap", name="old", namespace="shop")
    ]
    request = (await scenario.last(PlanApproved.event_type)).payload
    assert request.comment == "1 to update, 1 to prune"


async def test_an_app_that_does_not_prune_gets_no_prunes(scenario: Scenario, kube: Kube) -> None:
    await scenario.register(prune=False)
    await scenario.applied_before(kube, [namespace(), configmap("old", a="1")])
    rendered = await scenario.render([namespace()], label="v2")
    plan = await plan_once(scenario, kube, rendered)
    assert plan.prune == []
    assert [c.action for c in plan.changes] == ["unchanged"]


async def test_secret_values_never_reach_the_log(scenario: Scenario, kube: Kube) -> None:
    old = base64.b64encode(b"old-password").decode()
    new = base64.b64encode(b"new-password").decode()
    await scenario.register()
    await scenario.applied_before(kube, [namespace(), secret("db", password=old)])
    rendered = await scenario.render([namespace(), secret("db", password=new)], label="v2")
    plan = await plan_once(scenario, kube, rendered)

    change = next(c for c in plan.changes if c.ref.kind == "Secret")
    assert change.action == "update"
    assert "<redacted hmac-sha256:" in change.diff
    created = await scenario.last(PlanCreated.event_type)
    on_the_wire = encode(created)
    for value in (old, new, "old-password", "new-password"):
        assert value.encode() not in on_the_wire


async def test_a_manual_app_gets_an_approval_request_and_nothing_applied(
    scenario: Scenario, sandbox: Sandbox, kube: Kube
) -> None:
    await scenario.register(auto_sync=False)
    rendered = await scenario.render([namespace(), configmap("c", a="1"), deployment()])
    plan = await plan_once(scenario, kube, rendered)
    assert plan.needs_approval
    created = await scenario.last(PlanCreated.event_type)
    request = await scenario.last(ApprovalRequested.event_type)
    assert request.causation_id == created.event_id
    assert request.payload == ApprovalRequested(plan_id=plan.plan_id, summary="3 to create")
    assert await scenario.events(PlanApproved.event_type) == []
    assert sandbox.get("v1", "Namespace", "shop") is None
    assert sandbox.objects("v1", "ConfigMap", namespace="shop") == []


async def test_a_refused_dry_run_is_part_of_the_plan(scenario: Scenario, kube: Kube) -> None:
    await scenario.register()
    # In a namespace that exists, so that it is dry-run (one this plan creates could not be).
    bad = configmap("bad", ns="default", a="1")
    bad["metadata"]["labels"] = {"tier": "not valid!"}
    lost = configmap("lost", ns="nowhere", a="1")
    rendered = await scenario.render([namespace(), configmap("good", a="1"), bad, lost])
    plan = await plan_once(scenario, kube, rendered)

    by_name = {c.ref.name: c for c in plan.changes}
    assert by_name["good"].error == ""
    assert by_name["bad"].action == "create"
    assert by_name["bad"].error.startswith("dry run refused: 422 Invalid: ")
    assert "metadata.labels.tier" in by_name["bad"].error
    assert "404 NotFound" in by_name["lost"].error and "nowhere" in by_name["lost"].error
    # Refused resources block the whole plan: neither approved nor put to a person.
    blocked = (await scenario.last(PlanBlocked.event_type)).payload
    assert blocked.summary == "4 to create, 2 with errors"
    assert [e.ref.name for e in blocked.errors] == ["bad", "lost"]
    assert not plan.needs_approval
    assert await scenario.events(PlanApproved.event_type, ApprovalRequested.event_type) == []


async def test_a_custom_resource_whose_crd_is_in_the_bundle_is_planned(
    scenario: Scenario, kube: Kube
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "storage": True}],
        },
    }
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    unknown = {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}}
    await scenario.register()
    rendered = await scenario.render([namespace(), crd, widget, unknown])
    plan = await plan_once(scenario, kube, rendered)

    assert [(c.ref.kind, c.ref.namespace, c.action) for c in plan.changes] == [
        ("Namespace", "", "create"),
        ("CustomResourceDefinition", "", "create"),
        ("Gadget", "", "create"),
        ("Widget", "shop", "create"),  # placed in the app's namespace, by the CRD's scope
    ]
    errors = {c.ref.kind: c.error for c in plan.changes}
    assert errors["Widget"] == ""
    assert "does not serve kind Gadget in example.com/v1" in errors["Gadget"]


async def test_a_redelivered_render_plans_once(scenario: Scenario, kube: Kube) -> None:
    await scenario.register()
    rendered = await scenario.render([namespace(), configmap("c", a="1")])
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    stored = await scenario.stored(rendered)
    await planner.handle(stored)
    await planner.handle(stored)
    assert types_of(await scenario.events(PlanCreated.event_type, PlanApproved.event_type)) == [
        "PlanCreated",
        "PlanApproved",
    ]


async def test_a_missing_bundle_is_rejected_naming_the_event(
    scenario: Scenario, kube: Kube
) -> None:
    await scenario.register()
    rendered = await scenario.append(
        ManifestsRendered(
            commit="a" * 40, bundle_digest="f" * 64, bundle_size=1, renderer="yaml", resources=[]
        )
    )
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    await planner.handle(await scenario.stored(rendered))
    rejected = (await scenario.last(EventRejected.event_type)).payload
    assert rejected.rejected_event_id == rendered.event_id
    assert rendered.event_id in rejected.error and "f" * 64 in rejected.error
    assert await scenario.events(PlanCreated.event_type) == []


async def test_an_unregistered_app_is_not_planned(scenario: Scenario, kube: Kube) -> None:
    rendered = await scenario.render([namespace()])
    await Planner(scenario.context("planner"), Clusters.serving(kube)).handle(
        await scenario.stored(rendered)
    )
    assert await scenario.events(PlanCreated.event_type) == []


async def test_a_render_unchanged_from_the_applied_bundle_is_not_planned(
    scenario: Scenario, kube: Kube
) -> None:
    # The renderer found the app synced at identical resources (renderer/unchanged.py).
    await scenario.register()
    resources = [namespace(), configmap("c", a="1")]
    first = await scenario.render(resources)
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    await planner.handle(await scenario.stored(first))
    before = await scenario.events(PlanCreated.event_type)
    unchanged = await scenario.append(
        msgspec.structs.replace(first.payload, commit="b" * 40, unchanged_from=first.payload.commit)
    )
    await planner.handle(await scenario.stored(unchanged))
    assert await scenario.events(PlanCreated.event_type) == before
