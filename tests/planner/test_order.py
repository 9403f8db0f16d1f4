"""Per-app order on real NATS and the sandbox: an older revision is never applied after a newer one.

The chaos run of issue 9 in integration form: the planner crashed while it
handled revision A, B (detected after A) was planned and applied, then A's
render was redelivered. A is superseded (never planned, never applied), and
the app says synced at B. A stale plan appended late is refused by the
applier; the app says out of sync while the applied revision is not the
latest desired one.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events.bundle import Bundle, encode_bundle, ref_of, resource_digest
from events.envelope import Envelope, derived_event_id
from events.payloads import (
    ApplyStarted,
    ApplySucceeded,
    ManifestsRendered,
    PlanApproved,
    PlanCreated,
    PlanSuperseded,
    RenderedResource,
    RevisionDetected,
)
from services.applier.service import Applier
from services.planner.service import Planner
from services.sandbox import Sandbox
from services.wiring.kube import Clusters, Kube
from tests.catalog.test_app_cli import wake
from tests.planner.scenario import REPO, Scenario, commit_of, configmap, namespace


async def detected(scenario: Scenario, label: str) -> Envelope:
    return await scenario.append(
        RevisionDetected(
            repo_url=REPO,
            ref="main",
            commit=commit_of(label),
            committed_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    )


async def rendered(scenario: Scenario, revision: Envelope, version: str) -> Envelope:
    """The renderer's ManifestsRendered for `revision` (its cause), as services/renderer does."""
    resources: list[dict[str, Any]] = [namespace(), configmap("settings", version=version)]
    commit = revision.payload.commit
    data = encode_bundle(
        Bundle(
            app=scenario.app,
            repo_url=REPO,
            commit=commit,
            path=".",
            renderer="yaml",
            resources=resources,
        )
    )
    digest = await scenario.log.put_bundle(data)
    return await scenario.append(
        ManifestsRendered(
            commit=commit,
            bundle_digest=digest,
            bundle_size=len(data),
            renderer="yaml",
            resources=[
                RenderedResource(ref=ref_of(r), digest=resource_digest(r)) for r in resources
            ],
        ),
        cause=revision,
    )


async def approval_of(scenario: Scenario, plan_id: str) -> Envelope:
    return next(
        e for e in await scenario.events(PlanApproved.event_type) if e.payload.plan_id == plan_id
    )


async def show(nats_url: str, tmp_path: Path) -> dict[str, Any]:
    out = await asyncio.to_thread(wake, nats_url, tmp_path, "app", "show", "shop", "--json")
    return json.loads(out)


async def test_a_revision_redelivered_after_a_newer_one_was_applied_is_superseded_never_applied(
    scenario: Scenario, kube: Kube, sandbox: Sandbox, nats_server, tmp_path: Path
) -> None:
    # Given an auto-sync app with revision A detected, then B, both rendered
    await scenario.register()
    a = await rendered(scenario, await detected(scenario, "a"), "a")
    b = await rendered(scenario, await detected(scenario, "b"), "b")
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    applier = Applier(scenario.context("applier"), Clusters.serving(kube))
    # and the planner crashed while handling A: B is planned and applied first
    await planner.handle(await scenario.stored(b))
    b_plan = derived_event_id(b.event_id, PlanCreated.event_type)
    await applier.handle(await scenario.stored(await approval_of(scenario, b_plan)))
    await applier.health.wait_idle()

    # When A's render is redelivered, to this planner and to a fresh one (a restart)
    await planner.handle(await scenario.stored(a))
    restarted = Planner(scenario.context("planner"), Clusters.serving(kube))
    await restarted.handle(await scenario.stored(a))

    # Then A is superseded by B's plan, once, and never planned nor applied
    a_plan = derived_event_id(a.event_id, PlanCreated.event_type)
    assert [e.payload.plan_id for e in await scenario.events(PlanCreated.event_type)] == [b_plan]
    superseded = [e.payload for e in await scenario.events(PlanSuperseded.event_type)]
    assert superseded == [
        PlanSuperseded(plan_id=a_plan, superseded_by=b_plan, commit=commit_of("a"))
    ]
    applies = [e.payload for e in await scenario.events(ApplySucceeded.event_type)]
    assert [p.commit for p in applies] == [commit_of("b")]
    live = sandbox.get("v1", "ConfigMap", "settings", namespace="shop")
    assert live is not None and live["data"] == {"version": "b"}
    # and the app is synced at B
    shown = await show(nats_server.url, tmp_path)
    assert shown["state"] == "synced" and shown["sync"] == "synced"
    assert shown["revision"] == shown["applied_revision"] == commit_of("b")
    await planner.close()
    await restarted.close()
    await applier.close()


async def test_a_stale_plan_appended_late_is_refused_by_the_applier(
    scenario: Scenario, kube: Kube, sandbox: Sandbox, nats_server, tmp_path: Path
) -> None:
    # Given revisions A then B detected; B planned and applied
    await scenario.register()
    a_detected = await detected(scenario, "a")
    a = await rendered(scenario, a_detected, "a")
    b = await rendered(scenario, await detected(scenario, "b"), "b")
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    applier = Applier(scenario.context("applier"), Clusters.serving(kube))
    await planner.handle(await scenario.stored(b))
    b_plan = derived_event_id(b.event_id, PlanCreated.event_type)
    await applier.handle(await scenario.stored(await approval_of(scenario, b_plan)))
    await applier.health.wait_idle()
    # When a plan for A, made before B's but appended only now (a planner that
    # stalled, from before this check), is approved
    a_bundle = a.payload.bundle_digest
    stale = await scenario.append(
        PlanCreated(
            plan_id="stale-a",
            commit=commit_of("a"),
            bundle_digest=a_bundle,
            changes=[],
            desired_seq=(await scenario.stored(a_detected)).seq,
        ),
        actor="service:planner",
        cause=a,
    )
    approval = await scenario.append(PlanApproved(plan_id="stale-a"), actor="policy", cause=stale)
    await applier.handle(await scenario.stored(approval))

    # Then the applier skips it: its revision was detected before B's, whatever
    # its place in the log
    started = [e.payload.plan_id for e in await scenario.events(ApplyStarted.event_type)]
    assert started == [b_plan]
    live = sandbox.get("v1", "ConfigMap", "settings", namespace="shop")
    assert live is not None and live["data"] == {"version": "b"}
    await planner.close()
    await applier.close()


async def test_app_show_says_out_of_sync_while_the_applied_revision_is_not_the_desired_one(
    scenario: Scenario, kube: Kube, sandbox: Sandbox, nats_server, tmp_path: Path
) -> None:
    # Given a manual app applied at A
    await scenario.register(auto_sync=False)
    a = await rendered(scenario, await detected(scenario, "a"), "a")
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    applier = Applier(scenario.context("applier"), Clusters.serving(kube))
    await planner.handle(await scenario.stored(a))
    a_plan = derived_event_id(a.event_id, PlanCreated.event_type)
    approval = await scenario.append(PlanApproved(plan_id=a_plan, via="cli"), actor="ada")
    await planner.handle(await scenario.stored(approval))  # its verdict: any operator may
    await applier.handle(await scenario.stored(approval))
    await applier.health.wait_idle()
    assert (await show(nats_server.url, tmp_path))["sync"] == "synced"

    # When B is detected, rendered and planned, and waits for a person
    b = await rendered(scenario, await detected(scenario, "b"), "b")
    await planner.handle(await scenario.stored(b))

    # Then the app is out of sync, and says why
    shown = await show(nats_server.url, tmp_path)
    assert shown["state"] == "awaiting-approval"
    assert shown["sync"] == (
        f"out of sync: applied {commit_of('a')[:7]}, desired {commit_of('b')[:7]} "
        "(plan awaiting approval)"
    )
    assert shown["applied_revision"] == commit_of("a")
    # And an older apply appearing last in the log (a late ApplySucceeded of A)
    # does not make the app synced: the last event type says nothing
    await scenario.append(
        ApplySucceeded(
            apply_id="late-a",
            plan_id=a_plan,
            commit=commit_of("a"),
            bundle_digest=a.payload.bundle_digest,
            inventory=[],
        )
    )
    shown = await show(nats_server.url, tmp_path)
    assert shown["state"] == "out-of-sync"
    assert shown["sync"].startswith(
        f"out of sync: applied {commit_of('a')[:7]}, desired {commit_of('b')[:7]}"
    )
    await planner.close()
    await applier.close()


async def test_two_planner_replicas_racing_over_a_burst_never_leave_an_older_revision_applied(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an auto-sync app with a burst of three revisions detected and rendered
    await scenario.register()
    renders = [await rendered(scenario, await detected(scenario, label), label) for label in "abc"]
    # When two planner replicas handle them at once, newest first
    replicas = [Planner(scenario.context("planner"), Clusters.serving(kube)) for _ in range(2)]
    inputs = [await scenario.stored(r) for r in reversed(renders)]
    await asyncio.gather(*(replicas[i % 2].handle(s) for i, s in enumerate(inputs)))
    # and the applier gets every approval, newest first
    applier = Applier(scenario.context("applier"), Clusters.serving(kube))
    for approval in reversed(await scenario.events(PlanApproved.event_type)):
        await applier.handle(await scenario.stored(approval))
        await applier.health.wait_idle()

    # Then C is applied, and nothing older is applied after it
    applied = [e.payload.commit for e in await scenario.events(ApplySucceeded.event_type)]
    assert applied[-1] == commit_of("c")
    assert applied.count(commit_of("c")) == 1
    live = sandbox.get("v1", "ConfigMap", "settings", namespace="shop")
    assert live is not None and live["data"] == {"version": "c"}
    for planner in replicas:
        await planner.close()
    await applier.close()
