"""The applier on real NATS and the sandbox: PlanApproved -> applies, prunes, outcome."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from events.envelope import Envelope, derived_event_id, new_event, now
from events.payloads import (
    ApplyFailed,
    ApplyStarted,
    ApplySucceeded,
    EventRejected,
    PlanApproved,
    PlanCreated,
    PlanRejected,
    ResourceApplied,
    ResourceRef,
)
from services.applier.service import (
    CONSUMER,
    FOLLOWED_INPUTS,
    FOLLOWED_TYPES,
    Applier,
    ApplyInFlight,
    AppState,
    _fold_history,
    serve,
)
from services.catalog.following import Follower
from services.planner.service import Planner
from services.sandbox import Sandbox
from services.wiring.consumers import ConsumerSettings
from services.wiring.eventlog import EventLog
from services.wiring.kube import Clusters, Kube
from tests.planner.scenario import (
    Scenario,
    configmap,
    deployment,
    namespace,
    ref,
    types_of,
)
from tests.waiting import eventually

APPLY_EVENTS = (
    ApplyStarted.event_type,
    ResourceApplied.event_type,
    ApplySucceeded.event_type,
    ApplyFailed.event_type,
)


async def planned(
    scenario: Scenario, kube: Kube, resources: list[dict[str, Any]], label: str = "v1"
) -> Envelope:
    """Render and plan `resources`; the plan's approval (by policy, or by a person)."""
    rendered = await scenario.render(resources, label=label)
    await Planner(scenario.context("planner"), Clusters.serving(kube)).handle(
        await scenario.stored(rendered)
    )
    plans = await scenario.events(PlanCreated.event_type)
    plan = plans[-1]
    approvals = [
        e for e in await scenario.events(PlanApproved.event_type) if e.causation_id == plan.event_id
    ]
    if approvals:
        return approvals[0]
    approval = await scenario.append(
        PlanApproved(plan_id=plan.payload.plan_id, via="cli"), actor="ada", cause=plan
    )
    # The planner judges who approved (any operator: the app names no approvers).
    await Planner(scenario.context("planner"), Clusters.serving(kube)).handle(
        await scenario.stored(approval)
    )
    return approval


async def apply(scenario: Scenario, kube: Kube, approval: Envelope, **settings: Any) -> None:
    applier = Applier(scenario.context("applier", **settings), Clusters.serving(kube))
    await applier.handle(await scenario.stored(approval))
    await applier.health.wait_idle()


def created_at(sandbox: Sandbox, resource: dict[str, Any]) -> int:
    r = ref(resource)
    obj = sandbox.get(r.api_version, r.kind, r.name, namespace=r.namespace)
    assert obj is not None, f"{r} is not in the sandbox"
    return int(obj["metadata"]["resourceVersion"])


async def test_an_approved_plan_is_applied_in_order_with_its_inventory(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an approved plan (the namespace comes last in the bundle)
    await scenario.register()
    resources = [deployment(), configmap("web-config", a="1"), namespace()]
    approval = await planned(scenario, kube, resources)

    # When the applier runs
    ctx = scenario.context("applier")
    fast = ConsumerSettings(name=CONSUMER.name, subjects=CONSUMER.subjects, backoff=(1.0,))
    task = asyncio.create_task(serve(ctx, consumer=fast))
    try:

        async def finished() -> bool:
            return bool(await scenario.events(ApplySucceeded.event_type, ApplyFailed.event_type))

        await eventually(finished, what="an apply outcome")
    finally:
        ctx.stop.set()
        await task

    # Then the Namespace went first, the ConfigMap before the Deployment reading it
    events = await scenario.events(*APPLY_EVENTS)
    assert types_of(events) == [
        "ApplyStarted",
        "ResourceApplied",
        "ResourceApplied",
        "ResourceApplied",
        "ApplySucceeded",
    ]
    started, *applied, succeeded = events
    apply_id = started.event_id
    assert started.payload.apply_id == apply_id
    assert started.causation_id == approval.event_id
    assert [(e.payload.ref.kind, e.payload.action) for e in applied] == [
        ("Namespace", "created"),
        ("ConfigMap", "created"),
        ("Deployment", "created"),
    ]
    assert all(e.payload.apply_id == apply_id for e in applied)
    assert created_at(sandbox, namespace()) < created_at(sandbox, configmap("web-config"))
    assert created_at(sandbox, configmap("web-config")) < created_at(sandbox, deployment())
    assert succeeded.payload.inventory == [
        ref(namespace()),
        ref(configmap("web-config")),
        ref(deployment()),
    ]
    assert succeeded.payload.plan_id == approval.payload.plan_id
    # Every object carries the inventory labels and is owned by field manager wake
    live = sandbox.get("apps/v1", "Deployment", "web", namespace="shop")
    assert live is not None
    assert live["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "wake",
        "wake.dev/app": "shop",
    }
    assert {e["manager"] for e in live["metadata"]["managedFields"]} == {"wake"}


async def test_a_later_plan_configures_prunes_and_keeps_the_rest(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register()
    first = await planned(
        scenario,
        kube,
        [namespace(), configmap("keep", a="1"), configmap("old", a="1"), deployment()],
    )
    await apply(scenario, kube, first)

    second = await planned(
        scenario, kube, [namespace(), configmap("keep", a="1"), deployment(replicas=5)], label="v2"
    )
    await apply(scenario, kube, second)

    outcome = await scenario.last(ApplySucceeded.event_type)
    apply_id = outcome.payload.apply_id
    actions = [
        (e.payload.ref.name, e.payload.action)
        for e in await scenario.events(ResourceApplied.event_type)
        if e.payload.apply_id == apply_id
    ]
    assert actions == [
        ("shop", "unchanged"),
        ("keep", "unchanged"),
        ("web", "configured"),
        ("old", "pruned"),
    ]
    assert sandbox.get("v1", "ConfigMap", "old", namespace="shop") is None
    live = sandbox.get("apps/v1", "Deployment", "web", namespace="shop")
    assert live is not None and live["spec"]["replicas"] == 5
    assert outcome.payload.inventory == [
        ref(namespace()),
        ref(configmap("keep")),
        ref(deployment()),
    ]


async def test_a_plan_without_changes_is_applied_as_a_confirmation(
    scenario: Scenario, kube: Kube
) -> None:
    await scenario.register()
    resources = [namespace(), configmap("c", a="1")]
    await apply(scenario, kube, await planned(scenario, kube, resources))
    again = await planned(scenario, kube, resources, label="v2")
    plan = (await scenario.last(PlanCreated.event_type)).payload
    assert [c.action for c in plan.changes] == ["unchanged", "unchanged"]
    assert again.payload.comment == "no changes"

    await apply(scenario, kube, again)
    first, second = await scenario.events(ApplySucceeded.event_type)
    assert second.payload.inventory == first.payload.inventory
    actions = [
        e.payload.action
        for e in await scenario.events(ResourceApplied.event_type)
        if e.payload.apply_id == second.payload.apply_id
    ]
    assert actions == ["unchanged", "unchanged"]


async def test_an_object_someone_else_took_over_is_not_pruned(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register()
    await apply(scenario, kube, await planned(scenario, kube, [namespace(), configmap("mine")]))
    # Someone relabels the object: it is not Wake's any more
    await kube.api.call_api(
        "/api/v1/namespaces/shop/configmaps/mine",
        "PATCH",
        header_params={"Content-Type": "application/merge-patch+json"},
        body={"metadata": {"labels": {"app.kubernetes.io/managed-by": "someone-else"}}},
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
    )
    await apply(scenario, kube, await planned(scenario, kube, [namespace()], label="v2"))

    assert sandbox.get("v1", "ConfigMap", "mine", namespace="shop") is not None
    outcome = await scenario.last(ApplySucceeded.event_type)
    assert outcome.payload.inventory == [ref(namespace())]


async def test_an_api_error_fails_the_apply_naming_the_resource(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register()
    bad = configmap("bad", a="1")
    bad["metadata"]["labels"] = {"tier": "not valid!"}
    approval = await planned(scenario, kube, [namespace(), bad, deployment()])
    await apply(scenario, kube, approval)

    failed = (await scenario.last(ApplyFailed.event_type)).payload
    assert failed.resource == ResourceRef(
        api_version="v1", kind="ConfigMap", name="bad", namespace="shop"
    )
    assert failed.status_code == 422
    assert failed.error.startswith("apply of ConfigMap shop/bad: 422 Invalid: ")
    assert "metadata.labels.tier" in failed.error
    # What came before was applied; nothing after it was
    assert sandbox.get("v1", "Namespace", "shop") is not None
    assert sandbox.get("apps/v1", "Deployment", "web", namespace="shop") is None
    assert await scenario.events(ApplySucceeded.event_type) == []


async def test_what_the_plan_found_unchanged_does_not_wait_for_the_tier_before_it(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an app applied once
    await scenario.register()
    await apply(
        scenario,
        kube,
        await planned(scenario, kube, [namespace(), configmap("a", v="1"), deployment()]),
    )
    # When a commit changes only its ConfigMap, and the API server refuses that write
    approval = await planned(
        scenario, kube, [namespace(), configmap("a", v="2"), deployment()], label="v2"
    )
    sandbox.faults.refuse_writes("ConfigMap", "a", namespace="shop")
    await apply(scenario, kube, approval)
    # Then the apply fails naming the ConfigMap
    failed = (await scenario.last(ApplyFailed.event_type)).payload
    assert failed.resource == ref(configmap("a"))
    # and the Namespace and the Deployment, which the plan found live and
    # unchanged, went in the ConfigMap's round (nothing waited for them, they
    # wait for nothing): the Deployment was applied though the tier before it failed
    applied = [
        e.payload
        for e in await scenario.events(ResourceApplied.event_type)
        if e.payload.apply_id == failed.apply_id
    ]
    assert [(a.ref.kind, a.action) for a in applied] == [
        ("Namespace", "unchanged"),
        ("Deployment", "unchanged"),
    ]


async def test_a_redelivered_approval_produces_nothing_twice(
    scenario: Scenario, kube: Kube
) -> None:
    await scenario.register()
    approval = await planned(scenario, kube, [namespace(), configmap("c", a="1")])
    await apply(scenario, kube, approval)
    before = await scenario.events()
    await apply(scenario, kube, approval)
    assert [e.event_id for e in await scenario.events()] == [e.event_id for e in before]


async def test_a_crash_after_apply_started_is_resumed_by_the_redelivery(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register()
    approval = await planned(scenario, kube, [namespace(), configmap("c", a="1")])
    plan = (await scenario.last(PlanCreated.event_type)).payload
    # An applier appended ApplyStarted, then died
    ctx = scenario.context("applier")
    started = ctx.derive(
        ApplyStarted(
            apply_id=derived_event_id(approval.event_id, ApplyStarted.event_type),
            plan_id=plan.plan_id,
            commit=plan.commit,
            bundle_digest=plan.bundle_digest,
        ),
        cause=approval,
    )
    await scenario.log.append(started)

    await apply(scenario, kube, approval)

    events = await scenario.events(*APPLY_EVENTS)
    assert types_of(events) == [
        "ApplyStarted",
        "ResourceApplied",
        "ResourceApplied",
        "ApplySucceeded",
    ]
    assert events[0].event_id == started.event_id
    assert all(e.payload.apply_id == started.event_id for e in events)
    assert sandbox.get("v1", "ConfigMap", "c", namespace="shop") is not None


async def test_two_approvals_for_one_app_never_apply_at_once(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given two approved plans of one app, and an API server slow enough to overlap
    await scenario.register()
    first = await planned(scenario, kube, [namespace(), configmap("a", v="1")])
    second = await planned(scenario, kube, [namespace(), configmap("a", v="2")], label="v2")
    sandbox.latency_ms = 20

    # When two applier replicas take one each at the same moment
    replicas = [Applier(scenario.context("applier"), Clusters.serving(kube)) for _ in range(2)]
    outcomes = await asyncio.gather(
        replicas[0].handle(await scenario.stored(first)),
        replicas[1].handle(await scenario.stored(second)),
        return_exceptions=True,
    )

    # Then at most one started at once: the other lost its conditional append and was
    # told to wait (its message goes back, nakked) -- unless the first had finished by
    # the time it read the log again. When it comes back, it applies, or is skipped
    # if its plan is the older one.
    assert all(o is None or isinstance(o, ApplyInFlight) for o in outcomes), outcomes
    for approval, outcome in zip((first, second), outcomes, strict=True):
        if isinstance(outcome, ApplyInFlight):
            await replicas[0].handle(await scenario.stored(approval))
    events = await scenario.events(*APPLY_EVENTS)
    in_flight: set[str] = set()
    for event in events:
        if isinstance(event.payload, ApplyStarted):
            assert not in_flight, f"{event.payload.apply_id} started during {in_flight}"
            in_flight.add(event.payload.apply_id)
        elif isinstance(event.payload, ApplySucceeded | ApplyFailed):
            in_flight.discard(event.payload.apply_id)
    assert not in_flight
    # The newest plan is what the cluster holds, whichever order they ran in
    live = sandbox.get("v1", "ConfigMap", "a", namespace="shop")
    assert live is not None and live["data"] == {"v": "2"}


class GatedReads:
    """The real log, whose reads hold every event from `gate` on until `opened` is set."""

    def __init__(self, log: EventLog, gate: int) -> None:
        self.log = log
        self.gate = gate
        self.opened = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.log, name)

    async def read_raw(self, **kwargs: Any) -> AsyncIterator[tuple[int, str, bytes]]:
        async for seq, subject, data in self.log.read_raw(**kwargs):
            if seq >= self.gate:
                await self.opened.wait()
            yield seq, subject, data


async def test_the_next_approval_of_an_app_waits_for_the_outcome_this_applier_appended(
    scenario: Scenario, kube: Kube
) -> None:
    # Given two approvals of one app in the log, the older first
    await scenario.register()
    first = await planned(scenario, kube, [namespace(), configmap("a", v="1")])
    second = await planned(scenario, kube, [namespace(), configmap("a", v="2")], label="v2")
    second_stored = await scenario.stored(second)
    # and an applier that applied the first
    ctx = scenario.context("applier")
    applier = Applier(ctx, Clusters.serving(kube))
    try:
        await applier.handle(await scenario.stored(first))
        outcome = (await scenario.events(ApplySucceeded.event_type))[-1]
        outcome_seq = (await scenario.stored(outcome)).seq
        assert outcome_seq > second_stored.seq
        # whose followed history is held just before that outcome (a follower
        # lagging behind the append, as under load)
        await applier.history.close()
        gated = GatedReads(ctx.log, gate=outcome_seq)
        applier.history = Follower(
            gated,
            FOLLOWED_TYPES,
            new_state=AppState,
            fold=_fold_history,
            name="gated history",
            passing=FOLLOWED_INPUTS,
        )
        applier.history.start()
        # When the second approval is handled
        handling = asyncio.create_task(applier.handle(second_stored))
        # Then, though the history has reached the approval itself, it is not
        # decided on yet (that history still shows the first apply in flight)
        await eventually(
            lambda: applier.history.reached >= second_stored.seq, what="history at the approval"
        )
        assert not handling.done()
        # and once the outcome is folded, it is applied -- not sent back as in flight
        gated.opened.set()
        await asyncio.wait_for(handling, timeout=30)
        starts = await scenario.events(ApplyStarted.event_type)
        assert [s.causation_id for s in starts] == [first.event_id, second.event_id]
        assert len(await scenario.events(ApplySucceeded.event_type)) == 2
    finally:
        await applier.health.close()
        await applier.close()


async def test_an_approval_waits_while_another_apply_is_in_flight(
    scenario: Scenario, kube: Kube
) -> None:
    await scenario.register()
    first = await planned(scenario, kube, [namespace(), configmap("a", v="1")])
    second = await planned(scenario, kube, [namespace(), configmap("a", v="2")], label="v2")
    plan = (await scenario.events(PlanCreated.event_type))[0].payload
    # Another replica is applying the first plan
    busy = scenario.context("applier").derive(
        ApplyStarted(
            apply_id=derived_event_id(first.event_id, ApplyStarted.event_type),
            plan_id=plan.plan_id,
            commit=plan.commit,
            bundle_digest=plan.bundle_digest,
        ),
        cause=first,
    )
    await scenario.log.append(busy)
    with pytest.raises(ApplyInFlight) as caught:
        await apply(scenario, kube, second)
    assert busy.event_id in str(caught.value)
    assert len(await scenario.events(ApplyStarted.event_type)) == 1


async def test_an_apply_whose_applier_died_long_ago_is_expired_then_the_next_starts(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register()
    first = await planned(scenario, kube, [namespace(), configmap("a", v="1")])
    second = await planned(scenario, kube, [namespace(), configmap("a", v="2")], label="v2")
    plan = (await scenario.events(PlanCreated.event_type))[0].payload
    # An apply of the first plan began an hour ago and never finished
    dead = new_event(
        ApplyStarted(
            apply_id=derived_event_id(first.event_id, ApplyStarted.event_type),
            plan_id=plan.plan_id,
            commit=plan.commit,
            bundle_digest=plan.bundle_digest,
        ),
        app="shop",
        actor="service:applier",
        cause=first,
        occurred_at=now() - timedelta(hours=1),
    )
    await scenario.log.append(dead)

    await apply(scenario, kube, second)

    expired, succeeded = await scenario.events(ApplyFailed.event_type, ApplySucceeded.event_type)
    assert expired.payload.apply_id == dead.event_id
    assert "did not finish within apply_timeout" in expired.payload.error
    # The id its own applier would have used: had it come back, only one would be stored
    assert expired.event_id == derived_event_id(first.event_id, ApplyFailed.event_type)
    assert expired.causation_id == first.event_id
    assert succeeded.payload.plan_id == second.payload.plan_id
    live = sandbox.get("v1", "ConfigMap", "a", namespace="shop")
    assert live is not None and live["data"] == {"v": "2"}


async def test_replicas_on_one_consumer_apply_each_app_one_at_a_time(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register()
    await planned(scenario, kube, [namespace(), configmap("a", v="1")])
    await planned(scenario, kube, [namespace(), configmap("a", v="2")], label="v2")
    sandbox.latency_ms = 20
    fast = ConsumerSettings(
        name=CONSUMER.name, subjects=CONSUMER.subjects, backoff=(0.5, 0.5, 0.5, 0.5), batch=1
    )
    contexts = [scenario.context("applier") for _ in range(2)]
    tasks = [asyncio.create_task(serve(ctx, consumer=fast)) for ctx in contexts]
    try:

        async def settled() -> bool:
            events = await scenario.events(*APPLY_EVENTS)
            started = sum(isinstance(e.payload, ApplyStarted) for e in events)
            done = sum(isinstance(e.payload, ApplySucceeded | ApplyFailed) for e in events)
            live = sandbox.get("v1", "ConfigMap", "a", namespace="shop")
            return started == done >= 1 and live is not None and live["data"] == {"v": "2"}

        await eventually(settled, what="both approvals handled")
    finally:
        for ctx in contexts:
            ctx.stop.set()
        await asyncio.gather(*tasks)
    assert await scenario.events(ApplyFailed.event_type, EventRejected.event_type) == []


async def test_an_apply_is_bounded_by_apply_timeout(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register()
    approval = await planned(scenario, kube, [namespace(), configmap("a"), configmap("b")])
    sandbox.latency_ms = 100
    await apply(scenario, kube, approval, apply_timeout=0.25)
    failed = (await scenario.last(ApplyFailed.event_type)).payload
    assert "did not finish within apply_timeout" in failed.error
    assert failed.resource is not None


async def test_a_rejected_plan_is_not_applied(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register(auto_sync=False)
    rendered = await scenario.render([namespace()])
    await Planner(scenario.context("planner"), Clusters.serving(kube)).handle(
        await scenario.stored(rendered)
    )
    plan = await scenario.last(PlanCreated.event_type)
    await scenario.append(
        PlanRejected(plan_id=plan.payload.plan_id, reason="freeze"), actor="ada", cause=plan
    )
    approval = await scenario.append(
        PlanApproved(plan_id=plan.payload.plan_id, via="api"), actor="bob", cause=plan
    )
    await apply(scenario, kube, approval)
    assert await scenario.events(*APPLY_EVENTS) == []
    assert sandbox.get("v1", "Namespace", "shop") is None


async def test_an_approval_of_an_unknown_plan_is_rejected(scenario: Scenario, kube: Kube) -> None:
    stray = new_event(PlanApproved(plan_id="nope"), app="shop", actor="ada")
    await scenario.log.append(stray)
    await apply(scenario, kube, stray)
    rejected = (await scenario.last(EventRejected.event_type)).payload
    assert rejected.rejected_event_id == stray.event_id
    assert "nope" in rejected.error


async def test_waves_order_the_apply(scenario: Scenario, kube: Kube) -> None:
    await scenario.register(wide=True)  # the `default` namespace: outside the default project
    early = configmap("early", ns="default")
    early["metadata"]["annotations"] = {"wake.dev/wave": "-1"}
    await apply(scenario, kube, await planned(scenario, kube, [namespace(), early]))
    applied = [e.payload.ref.name for e in await scenario.events(ResourceApplied.event_type)]
    assert applied == ["early", "shop"]
