"""`wake sync` of an app whose retries ran out: its current revision is planned and applied.

git-watcher, renderer, planner and applier run in this process on real NATS, a
real git repository and the sandbox; the sandbox refuses the ConfigMap's write
(test-only fault injection: its dry run passes) until the test lifts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from events.payloads import (
    ApplyFailed,
    ApplyRetryScheduled,
    ApplySucceeded,
    PlanApproved,
    PlanCreated,
    RevisionDetected,
)
from services.applier import service as applier
from services.git_watcher import service as git_watcher
from services.planner import service as planner
from services.renderer import service as renderer
from services.sandbox import Sandbox
from services.wiring.consumers import ConsumerSettings
from services.wiring.runtime import ServiceContext
from tests.git_watcher.repos import GitRepo
from tests.git_watcher.test_watcher import wake_cli
from tests.planner.scenario import Scenario
from tests.waiting import eventually

NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
"""
CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
  namespace: shop
data:
  v: "1"
"""


def fast(settings: ConsumerSettings) -> ConsumerSettings:
    return ConsumerSettings(name=settings.name, subjects=settings.subjects, backoff=(1.0,) * 6)


@contextlib.asynccontextmanager
async def pipeline(scenario: Scenario, data_dir: Path) -> AsyncIterator[None]:
    """git-watcher, renderer, planner and applier, until the block ends."""
    contexts: list[ServiceContext] = []
    tasks = []
    for name, run in (
        ("git-watcher", git_watcher.main),
        ("renderer", renderer.main),
        ("planner", lambda ctx: planner.serve(ctx, consumer=fast(planner.CONSUMER))),
        ("applier", lambda ctx: applier.serve(ctx, consumer=fast(applier.CONSUMER))),
    ):
        ctx = scenario.context(name, data_dir=str(data_dir), poll_interval=3600.0)
        contexts.append(ctx)
        tasks.append(asyncio.create_task(run(ctx), name=name))
    try:
        yield
    finally:
        for ctx in contexts:
            ctx.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)


async def test_wake_sync_reapplies_the_current_revision_after_the_retries_ran_out(
    scenario: Scenario, sandbox: Sandbox, nats_server, tmp_path: Path
) -> None:
    # Given an app whose apply keeps failing, allowed one retry
    repo = GitRepo(tmp_path / "repo")
    head = repo.commit("shop", {"deploy/ns.yaml": NAMESPACE, "deploy/cm.yaml": CONFIGMAP})
    sandbox.faults.refuse_writes("ConfigMap", "a", namespace="shop", message="quota exceeded")
    cli = tmp_path / "cli"
    async with pipeline(scenario, tmp_path / "wake"):
        await asyncio.to_thread(
            wake_cli,
            nats_server.url,
            cli,
            *("app", "add", "shop", "--repo", repo.url, "--path", "deploy", "--namespace", "shop"),
            *("--renderer", "yaml", "--health-timeout", "1"),
            *("--retry-limit", "1", "--retry-backoff", "0.2", "--retry-max-backoff", "60"),
        )

        async def retries_ran_out() -> bool:
            failures = await scenario.events(ApplyFailed.event_type)
            return any(f.payload.attempt == 2 for f in failures)

        await eventually(retries_ran_out, timeout=30, what="both tries failed")
        failures = [e.payload for e in await scenario.events(ApplyFailed.event_type)]
        assert [(f.attempt, f.retry_at is None) for f in failures] == [(1, False), (2, True)]
        assert len(await scenario.events(ApplyRetryScheduled.event_type)) == 1
        # and `wake app show` says the app waits
        shown = json.loads(
            await asyncio.to_thread(wake_cli, nats_server.url, cli, "app", "show", "shop", "--json")
        )
        assert shown["state"] == "apply-failed"
        assert (shown["spec"]["retry_limit"], shown["spec"]["retry_backoff_seconds"]) == (1, 0.2)
        assert shown["spec"]["retry_max_backoff_seconds"] == 60.0
        assert shown["retry"] == "none left after try 2: waits for a new commit or `wake sync shop`"

        # When the cluster takes the object again and the operator syncs (no new commit)
        sandbox.faults.clear()
        out = await asyncio.to_thread(wake_cli, nats_server.url, cli, "sync", "shop")
        assert out.startswith("sync of shop requested")

        async def applied() -> bool:
            return bool(await scenario.events(ApplySucceeded.event_type))

        await eventually(applied, timeout=30, what="the sync applied")

    # Then the same commit was detected again, planned anew, approved by policy and applied
    detected = [e.payload for e in await scenario.events(RevisionDetected.event_type)]
    assert [d.commit for d in detected] == [head, head]
    assert detected[1].trigger == "sync"
    first_plan, second_plan = await scenario.events(PlanCreated.event_type)
    assert second_plan.payload.commit == head
    approvals = [e.payload.plan_id for e in await scenario.events(PlanApproved.event_type)]
    assert approvals == [first_plan.payload.plan_id, second_plan.payload.plan_id]
    succeeded = (await scenario.last(ApplySucceeded.event_type)).payload
    assert (succeeded.plan_id, succeeded.commit) == (second_plan.payload.plan_id, head)
    assert sandbox.get("v1", "ConfigMap", "a", namespace="shop") is not None
