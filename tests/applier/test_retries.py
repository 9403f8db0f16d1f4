"""Retries of a failed apply, on real NATS and the sandbox: backoff, restart, cancel, exhaust.

The apply fails because the sandbox refuses the write of one object while its
dry run passes (`sandbox.faults`, test-only fault injection), as an admission
webhook acting on real requests only would. Each app asks for tiny backoffs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from events import names
from events.envelope import derived_event_id
from events.payloads import (
    ApplyFailed,
    ApplyRetryScheduled,
    ApplyStarted,
    ApplySucceeded,
    EventRejected,
    PlanCreated,
)
from services.applier.service import CONSUMER, Applier, serve
from services.sandbox import Sandbox
from services.wiring.consumers import ConsumerSettings
from services.wiring.kube import Clusters, Kube
from tests.applier.test_service import planned
from tests.planner.scenario import Scenario, configmap, namespace
from tests.waiting import eventually

# Deliveries enough for a deferral and a wait behind another apply.
FAST = ConsumerSettings(name=CONSUMER.name, subjects=CONSUMER.subjects, backoff=(1.0,) * 6)
TINY = {"retry_backoff_seconds": 0.2, "retry_backoff_factor": 2.0, "retry_max_backoff_seconds": 1.0}


@asynccontextmanager
async def applier_running(scenario: Scenario) -> AsyncIterator[None]:
    ctx = scenario.context("applier")
    task = asyncio.create_task(serve(ctx, consumer=FAST))
    try:
        yield
    finally:
        ctx.stop.set()
        await task


def count(scenario: Scenario, event_type: str, n: int) -> Callable[[], Awaitable[bool]]:
    async def reached() -> bool:
        return len(await scenario.events(event_type)) >= n

    return reached


async def test_a_failed_apply_is_retried_with_growing_delays_until_it_succeeds(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an app whose ConfigMap the cluster refuses to store (its dry run passes)
    await scenario.register(retry_limit=5, **TINY)
    sandbox.faults.refuse_writes("ConfigMap", "a", namespace="shop", message="quota exceeded")
    approval = await planned(scenario, kube, [namespace(), configmap("a", v="1")])

    async with applier_running(scenario):
        # When the apply fails twice more
        await eventually(count(scenario, ApplyRetryScheduled.event_type, 3), what="3 retries")
        # and the cluster takes the object again
        sandbox.faults.clear()
        await eventually(count(scenario, ApplySucceeded.event_type, 1), what="a success")

    # Then each try is an event, its delay doubles, and the last try succeeded
    retries = [e.payload for e in await scenario.events(ApplyRetryScheduled.event_type)]
    assert [r.attempt for r in retries[:3]] == [2, 3, 4]
    assert [r.delay_seconds for r in retries[:3]] == [0.2, 0.4, 0.8]
    assert all(r.approval_id == approval.event_id for r in retries)
    failures = await scenario.events(ApplyFailed.event_type)
    assert [f.payload.attempt for f in failures] == list(range(1, len(failures) + 1))
    assert "quota exceeded" in failures[0].payload.error
    assert all(f.payload.retry_at is not None for f in failures)
    starts = await scenario.events(ApplyStarted.event_type)
    assert [s.payload.attempt for s in starts] == list(range(1, len(starts) + 1))
    # A retry's events derive from its ApplyRetryScheduled: a redelivery retries nothing twice
    retry_events = await scenario.events(ApplyRetryScheduled.event_type)
    assert starts[1].event_id == derived_event_id(retry_events[0].event_id, ApplyStarted.event_type)
    assert starts[1].occurred_at >= retries[0].due_at
    succeeded = (await scenario.last(ApplySucceeded.event_type)).payload
    assert succeeded.attempt == len(starts)
    assert sandbox.get("v1", "ConfigMap", "a", namespace="shop") is not None
    assert await scenario.events(EventRejected.event_type) == []

    # And a redelivered retry (or approval) appends nothing more
    before = [e.event_id for e in await scenario.events()]
    applier = Applier(scenario.context("applier"), Clusters.serving(kube))
    for event in (*retry_events, approval):
        await applier.handle(await scenario.stored(event))
    assert [e.event_id for e in await scenario.events()] == before


async def test_after_the_last_try_the_app_waits(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an app allowed 2 retries, whose apply always fails
    await scenario.register(retry_limit=2, **TINY)
    sandbox.faults.refuse_writes("ConfigMap", "a", namespace="shop")
    await planned(scenario, kube, [namespace(), configmap("a", v="1")])

    async with applier_running(scenario):

        async def last_try_failed() -> bool:
            return any(
                e.payload.attempt == 3 for e in await scenario.events(ApplyFailed.event_type)
            )

        await eventually(last_try_failed, what="the third try failed")

    # Then the third failure says no try follows, and none was scheduled
    failures = [e.payload for e in await scenario.events(ApplyFailed.event_type)]
    assert [(f.attempt, f.retry_at is None) for f in failures] == [
        (1, False),
        (2, False),
        (3, True),
    ]
    assert len(await scenario.events(ApplyRetryScheduled.event_type)) == 2
    assert len(await scenario.events(ApplyStarted.event_type)) == 3


async def test_a_retry_scheduled_before_a_restart_runs_after_it(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given a retry scheduled a while ahead, and the applier stopped before it is due
    await scenario.register(retry_limit=1, retry_backoff_seconds=1.5, retry_max_backoff_seconds=1.5)
    sandbox.faults.refuse_writes("ConfigMap", "a", namespace="shop")
    await planned(scenario, kube, [namespace(), configmap("a", v="1")])
    async with applier_running(scenario):
        await eventually(count(scenario, ApplyRetryScheduled.event_type, 1), what="a retry")
    assert len(await scenario.events(ApplyStarted.event_type)) == 1
    sandbox.faults.clear()

    # When an applier starts again
    async with applier_running(scenario):
        await eventually(count(scenario, ApplySucceeded.event_type, 1), what="the retry")

    # Then the retry ran, once, at or after its due time
    retry = (await scenario.last(ApplyRetryScheduled.event_type)).payload
    starts = await scenario.events(ApplyStarted.event_type)
    assert [s.payload.attempt for s in starts] == [1, 2]
    assert starts[1].occurred_at >= retry.due_at


async def test_a_newer_approved_plan_cancels_the_pending_retry(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given a failed apply of v1 whose retry is due in a second
    await scenario.register(retry_limit=3, retry_backoff_seconds=1.0)
    sandbox.faults.refuse_writes("ConfigMap", "a", namespace="shop")
    await planned(scenario, kube, [namespace(), configmap("a", v="1")])
    async with applier_running(scenario):
        await eventually(count(scenario, ApplyRetryScheduled.event_type, 1), what="a retry")
        sandbox.faults.clear()
        # When v2 (without the refused object) is planned and approved meanwhile
        await planned(scenario, kube, [namespace(), configmap("b", v="2")], label="v2")
        await eventually(count(scenario, ApplySucceeded.event_type, 1), what="v2 applied")

        # Then the retry of v1, once due, is dropped: the consumer holds nothing more
        async def retry_handled() -> bool:
            info = await scenario.log.js.consumer_info(names.STREAM, CONSUMER.name)
            return info.num_ack_pending == 0 and info.num_pending == 0

        await eventually(retry_handled, what="the retry delivered and acked")

    v2 = (await scenario.events(PlanCreated.event_type))[-1].payload
    starts = [s.payload for s in await scenario.events(ApplyStarted.event_type)]
    assert [(s.attempt, s.plan_id == v2.plan_id) for s in starts] == [(1, False), (1, True)]
    assert sandbox.get("v1", "ConfigMap", "a", namespace="shop") is None
    assert (await scenario.last(ApplySucceeded.event_type)).payload.plan_id == v2.plan_id
