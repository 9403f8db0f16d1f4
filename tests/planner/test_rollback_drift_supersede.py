"""The planner on real NATS and the sandbox: supersede, rollback and its pin, self-heal, ignores."""

from __future__ import annotations

import asyncio

from events.envelope import Envelope, derived_event_id
from events.payloads import (
    ApplySucceeded,
    ApprovalRequested,
    DriftDetected,
    DriftedResource,
    EventRejected,
    IgnoreRule,
    ManifestsRendered,
    PlanApproved,
    PlanCreated,
    PlanSuperseded,
    RollbackRequested,
    SyncRequested,
)
from services.planner.service import Planner
from services.wiring.kube import Clusters, Kube
from tests.planner.scenario import Scenario, commit_of, configmap, deployment, namespace, ref

GONE_REPO = "/nonexistent/repositories/shop.git"


async def handle(scenario: Scenario, kube: Kube, event: Envelope) -> None:
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    await planner.handle(await scenario.stored(event))


async def applied(scenario: Scenario, rendered: Envelope, label: str, **extra: object) -> Envelope:
    """The log says `rendered`'s bundle was applied, as apply `apply-<label>`."""
    payload = rendered.payload
    assert isinstance(payload, ManifestsRendered)
    return await scenario.append(
        ApplySucceeded(
            apply_id=f"apply-{label}",
            plan_id=f"plan-{label}",
            commit=payload.commit,
            bundle_digest=payload.bundle_digest,
            inventory=[r.ref for r in payload.resources],
            **extra,
        )
    )


async def follow_up_of(scenario: Scenario, plan: Envelope) -> Envelope:
    found = [
        e
        for e in await scenario.events(ApprovalRequested.event_type, PlanApproved.event_type)
        if e.causation_id == plan.event_id
    ]
    assert len(found) == 1, found
    return found[0]


async def test_a_newer_revision_supersedes_a_plan_awaiting_approval(
    scenario: Scenario, kube: Kube
) -> None:
    # Given a manual app with a plan awaiting approval
    await scenario.register(auto_sync=False)
    await handle(scenario, kube, await scenario.render([namespace()], label="v1"))
    first = await scenario.last(PlanCreated.event_type)
    # When the next revision is planned
    second_rendered = await scenario.render([namespace(), configmap("c", a="1")], label="v2")
    await handle(scenario, kube, second_rendered)
    # Then the first plan is superseded by the second, which awaits approval in its place
    second = await scenario.last(PlanCreated.event_type)
    superseded = await scenario.events(PlanSuperseded.event_type)
    assert [(e.payload.plan_id, e.payload.superseded_by) for e in superseded] == [
        (first.payload.plan_id, second.payload.plan_id)
    ]
    assert superseded[0].causation_id == second.event_id
    # and a redelivery appends nothing more
    before = len(await scenario.events())
    await handle(scenario, kube, second_rendered)
    assert len(await scenario.events()) == before


async def test_two_plans_made_at_once_leave_one_awaiting_approval(
    scenario: Scenario, kube: Kube
) -> None:
    # Given a manual app and two revisions rendered
    await scenario.register(auto_sync=False)
    renders = [await scenario.render([namespace()], label=label) for label in ("a", "b", "c")]
    # When three planners (replicas) plan them at the same time
    await asyncio.gather(*(handle(scenario, kube, rendered) for rendered in renders))
    # Then only the newest revision's plan awaits approval: the conditional
    # append (on the app's PlanCreated subject, with backoff) let one plan at a
    # time see the others, and each older revision was superseded -- as a plan
    # awaiting approval, or before it was planned if the newer plan came first
    plans = [e.payload.plan_id for e in await scenario.events(PlanCreated.event_type)]
    superseded = [e.payload for e in await scenario.events(PlanSuperseded.event_type)]
    would_be = [derived_event_id(r.event_id, PlanCreated.event_type) for r in renders]
    assert set(plans) - {s.plan_id for s in superseded} == {would_be[-1]}
    assert {s.plan_id for s in superseded} == set(would_be[:-1])
    # each by the plan of a revision rendered after it
    assert all(would_be.index(s.superseded_by) > would_be.index(s.plan_id) for s in superseded)
    # an unplanned revision's record names its commit
    assert all(s.commit for s in superseded if s.plan_id not in plans)


async def test_a_rollback_is_planned_from_the_stored_bundle_without_git(
    scenario: Scenario, kube: Kube
) -> None:
    # Given an app whose repository does not exist on disk, applied at v1 then v2
    await scenario.register(repo_url=GONE_REPO, auto_sync=True)
    v1 = await scenario.render([namespace(), configmap("c", version="1")], label="v1")
    await applied(scenario, v1, "v1")
    v2 = await scenario.render([namespace(), configmap("c", version="2")], label="v2")
    await applied(scenario, v2, "v2")
    # When a rollback to v1's apply is requested
    request = await scenario.append(
        RollbackRequested(
            target="apply-v1",
            apply_id="apply-v1",
            commit=commit_of("v1"),
            bundle_digest=v1.payload.bundle_digest,
        )
    )
    await handle(scenario, kube, request)
    # Then a rollback plan from v1's bundle is approved by the app's policy
    plan = await scenario.last(PlanCreated.event_type)
    assert plan.causation_id == request.event_id
    assert plan.payload.reason == "rollback"
    assert plan.payload.rollback_of == "apply-v1"
    assert plan.payload.commit == commit_of("v1")
    assert plan.payload.bundle_digest == v1.payload.bundle_digest
    config = next(c for c in plan.payload.changes if c.ref.kind == "ConfigMap")
    assert config.action == "create" and "version: '1'" in config.diff
    assert isinstance((await follow_up_of(scenario, plan)).payload, PlanApproved)


async def test_a_rollback_by_commit_prefix_and_to_a_revision_never_applied(
    scenario: Scenario, kube: Kube
) -> None:
    await scenario.register(auto_sync=False)
    v1 = await scenario.render([namespace()], label="v1")
    await applied(scenario, v1, "v1")
    by_prefix = await scenario.append(RollbackRequested(target=commit_of("v1")[:10]))
    await handle(scenario, kube, by_prefix)
    plan = await scenario.last(PlanCreated.event_type)
    assert (plan.payload.rollback_of, plan.payload.commit) == ("apply-v1", commit_of("v1"))
    assert isinstance((await follow_up_of(scenario, plan)).payload, ApprovalRequested)
    # A target never applied is refused, naming it
    never = await scenario.append(RollbackRequested(target=commit_of("never")))
    await handle(scenario, kube, never)
    rejected = [e.payload for e in await scenario.events(EventRejected.event_type)]
    assert len(rejected) == 1 and commit_of("never") in rejected[0].error
    assert "no apply of shop succeeded" in rejected[0].error


async def test_auto_sync_does_not_undo_a_rollback_until_a_new_commit_or_a_resume(
    scenario: Scenario, kube: Kube
) -> None:
    # Given an auto-sync app applied at v1, then v2, then rolled back to v1
    await scenario.register(auto_sync=True)
    v1 = await scenario.render([namespace()], label="v1")
    await applied(scenario, v1, "v1")
    v2 = await scenario.render([namespace(), configmap("c", a="2")], label="v2")
    await applied(scenario, v2, "v2")
    await applied(scenario, v1, "rollback", rollback_of="apply-v1")
    # When v2 is rendered again (a re-detection)
    again = await scenario.render([namespace(), configmap("c", a="2")], label="v2")
    await handle(scenario, kube, again)
    # Then its plan waits for a person
    held = await scenario.last(PlanCreated.event_type)
    assert held.payload.needs_approval
    request = await follow_up_of(scenario, held)
    assert isinstance(request.payload, ApprovalRequested)
    assert "rolled back" in request.payload.summary
    # When a new commit v3 is rendered, it moves forward (and supersedes the held plan)
    v3 = await scenario.render([namespace(), configmap("c", a="3")], label="v3")
    await handle(scenario, kube, v3)
    forward = await scenario.last(PlanCreated.event_type)
    assert isinstance((await follow_up_of(scenario, forward)).payload, PlanApproved)
    assert [e.payload.plan_id for e in await scenario.events(PlanSuperseded.event_type)] == [
        held.payload.plan_id
    ]
    # And after `wake sync --resume`, v2 moves forward too
    await scenario.append(SyncRequested(resume=True))
    resumed = await scenario.render([namespace(), configmap("c", a="2")], label="v2")
    await handle(scenario, kube, resumed)
    last = await scenario.last(PlanCreated.event_type)
    assert isinstance((await follow_up_of(scenario, last)).payload, PlanApproved)


async def test_self_heal_plans_the_last_applied_bundle_and_approves_it_as_such(
    scenario: Scenario, kube: Kube
) -> None:
    # Given a manual self-healing app rolled back to v1
    await scenario.register(auto_sync=False, self_heal=True)
    v1 = await scenario.render([namespace(), configmap("c", a="1")], label="v1")
    await applied(scenario, v1, "v1", rollback_of="apply-v0")
    # When drift is detected
    drift = await scenario.append(
        DriftDetected(
            bundle_digest=v1.payload.bundle_digest,
            resources=[DriftedResource(ref=ref(configmap("c")), deleted=True)],
            self_heal=True,
        )
    )
    await handle(scenario, kube, drift)
    # Then v1's bundle is planned again, approved by policy as a self-heal, still a rollback
    plan = await scenario.last(PlanCreated.event_type)
    assert (plan.payload.reason, plan.payload.commit) == ("drift", commit_of("v1"))
    assert plan.payload.rollback_of == "apply-v0"
    assert not plan.payload.needs_approval, "a self-heal asks nobody, even on a manual app"
    approval = await follow_up_of(scenario, plan)
    assert approval.payload.via == "policy" and approval.payload.comment.startswith("self-heal")
    assert approval.actor == "service:planner"
    # A drift of a bundle that is no longer the last applied one is not healed
    v2 = await scenario.render([namespace()], label="v2")
    await applied(scenario, v2, "v2")
    stale = await scenario.append(
        DriftDetected(bundle_digest=v1.payload.bundle_digest, resources=[], self_heal=True)
    )
    await handle(scenario, kube, stale)
    assert (await scenario.last(PlanCreated.event_type)).event_id == plan.event_id


async def test_ignored_differences_are_no_change_on_a_real_dry_run(
    scenario: Scenario, kube: Kube
) -> None:
    # Given a Deployment scaled by hand (or an autoscaler) and a rule ignoring replicas
    await scenario.register(
        ignore_differences=[IgnoreRule(json_pointers=["/spec/replicas"], kind="Deployment")]
    )
    await scenario.applied_before(kube, [namespace(), deployment(replicas=5)])
    # When the same Deployment with 2 replicas is planned
    await handle(scenario, kube, await scenario.render([namespace(), deployment(replicas=2)]))
    # Then it is unchanged
    plan = (await scenario.last(PlanCreated.event_type)).payload
    assert {c.ref.kind: c.action for c in plan.changes} == {
        "Namespace": "unchanged",
        "Deployment": "unchanged",
    }
