"""A plan with any resource in error applies nothing (issue 8, item 2), on real NATS and the
sandbox, through the planner, the applier and the `wake` CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from events.envelope import Envelope
from events.payloads import (
    ApplyStarted,
    ApplySucceeded,
    ApprovalRequested,
    EventRejected,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    ResourceRef,
)
from services.applier.service import Applier
from services.planner.service import Planner
from services.sandbox import Sandbox
from services.wiring.embedded_nats import EmbeddedNats
from services.wiring.kube import Clusters, Kube
from tests.planner.scenario import Scenario, configmap, deployment, types_of
from tests.signing import cli_env

ROOT = Path(__file__).resolve().parents[2]

# The app deploys into `default`, which exists: every resource is dry-run.
NS = "default"
BAD = ResourceRef(api_version="v1", kind="ConfigMap", name="bad-label", namespace=NS)
LOST = ResourceRef(api_version="v1", kind="ConfigMap", name="lost", namespace="nowhere")


def fifteen_resources_two_refused() -> list[dict[str, Any]]:
    """13 resources the API server accepts, one it finds invalid, one in a missing namespace."""
    good = [configmap(f"config-{i}", ns=NS, n=str(i)) for i in range(10)]
    good += [deployment(f"web-{i}", ns=NS) for i in range(3)]
    bad = configmap(BAD.name, ns=NS, a="1")
    bad["metadata"]["labels"] = {"tier": "not valid!"}
    lost = configmap(LOST.name, ns=LOST.namespace, a="1")
    return [*good, bad, lost]


async def plan(scenario: Scenario, kube: Kube, rendered: Envelope) -> None:
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    await planner.handle(await scenario.stored(rendered))


async def apply(scenario: Scenario, kube: Kube, approval: Envelope) -> None:
    applier = Applier(scenario.context("applier"), Clusters.serving(kube))
    await applier.handle(await scenario.stored(approval))
    await applier.health.wait_idle()


async def wake(nats: EmbeddedNats, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `wake` CLI against this test's log, as a user runs it."""
    env = {
        **os.environ,
        "WAKE_NATS_URL": nats.url,
        "WAKE_DATA_DIR": str(tmp_path / "cli"),
        # Ada's key, registered by the test: the CLI's actor is its signer.
        **cli_env(tmp_path / "keys", "user:ada"),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_two_refused_resources_of_fifteen_block_the_plan_and_nothing_is_applied(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an auto-sync app whose revision has 15 resources, 2 of which the server refuses
    await scenario.register(namespace=NS)
    rendered = await scenario.render(fifteen_resources_two_refused())

    # When it is planned
    await plan(scenario, kube, rendered)

    # Then the plan is blocked, naming both resources with the server's message
    created, blocked = await scenario.events(PlanCreated.event_type, PlanBlocked.event_type)
    assert blocked.causation_id == created.event_id
    assert blocked.payload.plan_id == created.payload.plan_id
    errors = {e.ref: e.error for e in blocked.payload.errors}
    assert set(errors) == {BAD, LOST}
    assert errors[BAD].startswith("dry run refused: 422 Invalid: ")
    assert "metadata.labels" in errors[BAD]
    assert errors[LOST].startswith("dry run refused: 404 NotFound: ")
    assert "nowhere" in errors[LOST]
    assert blocked.payload.summary == "15 to create, 2 with errors"
    # and neither approved by policy nor put to a person
    assert not created.payload.needs_approval
    assert await scenario.events(PlanApproved.event_type, ApprovalRequested.event_type) == []

    # When someone approves it anyway (an approval appended past the CLI)
    forced = await scenario.append(
        PlanApproved(plan_id=created.payload.plan_id, via="api"), actor="user:ada", cause=created
    )
    await apply(scenario, kube, forced)

    # Then the applier refuses it, on the record, and the cluster has none of it
    rejected = (await scenario.last(EventRejected.event_type)).payload
    assert rejected.rejected_event_id == forced.event_id
    assert "is blocked" in rejected.error and str(BAD) in rejected.error
    assert await scenario.events(ApplyStarted.event_type) == []
    assert sandbox.get("v1", "ConfigMap", "config-0", namespace=NS) is None
    assert sandbox.objects("apps/v1", "Deployment", namespace=NS) == []


async def test_the_cli_refuses_to_approve_a_blocked_plan_and_says_why_the_app_is_stuck(
    scenario: Scenario, kube: Kube, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    # Given a manual app whose plan was blocked by two refused resources
    await scenario.register(namespace=NS, auto_sync=False)
    await plan(scenario, kube, await scenario.render(fifteen_resources_two_refused()))
    plan_id = (await scenario.last(PlanCreated.event_type)).payload.plan_id

    # When a person approves it
    approving = await wake(nats_server, tmp_path, "approve", plan_id)

    # Then it is refused, naming the resources at fault; nothing is appended
    assert approving.returncode != 0
    assert f"plan {plan_id} of shop is blocked and cannot be approved" in approving.stderr
    assert str(BAD) in approving.stderr and str(LOST) in approving.stderr
    assert await scenario.events(PlanApproved.event_type) == []

    # When the plans are listed as text
    listed = await wake(nats_server, tmp_path, "plans", "shop")

    # Then the plan is shown blocked, each refused resource with the server's message
    assert listed.returncode == 0, listed.stderr
    assert f"plan {plan_id}  blocked" in listed.stdout
    assert f"create    {BAD}\n      error: dry run refused: 422 Invalid: " in listed.stdout
    assert f"create    {LOST}\n      error: dry run refused: 404 NotFound: " in listed.stdout

    # When the app is shown
    shown = await wake(nats_server, tmp_path, "app", "show", "shop")

    # Then it says the app is blocked, by which plan and why
    assert shown.returncode == 0, shown.stderr
    assert "state:                   blocked" in shown.stdout
    assert f"blocked:                 plan {plan_id}" in shown.stdout
    assert f"{BAD}: dry run refused: 422 Invalid: " in shown.stdout
    assert f"{LOST}: dry run refused: 404 NotFound: " in shown.stdout
    assert f"PlanBlocked          plan {plan_id[:8]} blocked: {BAD}: " in shown.stdout
    as_json = json.loads(
        (await wake(nats_server, tmp_path, "app", "show", "shop", "--json")).stdout
    )
    assert as_json["state"] == "blocked" and as_json["blocked"]["plan_id"] == plan_id
    assert [e["ref"]["name"] for e in as_json["blocked"]["errors"]] == [BAD.name, LOST.name]


async def test_a_fixed_commit_after_a_blocked_plan_is_approved_and_applied(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an auto-sync app whose last plan was blocked
    await scenario.register(namespace=NS)
    await plan(scenario, kube, await scenario.render(fifteen_resources_two_refused()))
    assert types_of(await scenario.events(PlanBlocked.event_type)) == ["PlanBlocked"]

    # When a commit drops the refused resources
    fixed = [
        r
        for r in fifteen_resources_two_refused()
        if r["metadata"]["name"] not in ("bad-label", "lost")
    ]
    await plan(scenario, kube, await scenario.render(fixed, label="v2"))

    # Then its plan is approved by policy and applied whole
    approval = await scenario.last(PlanApproved.event_type)
    assert approval.actor == "service:planner"
    await apply(scenario, kube, approval)
    succeeded = (await scenario.last(ApplySucceeded.event_type)).payload
    assert len(succeeded.inventory) == 13
    assert sandbox.get("v1", "ConfigMap", "config-9", namespace=NS) is not None
    assert len(sandbox.objects("apps/v1", "Deployment", namespace=NS)) == 3
