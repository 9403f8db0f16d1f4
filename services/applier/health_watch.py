"""Watching an apply's health until it is final (shell around `health.py`).

After an ApplySucceeded the applier starts one task per app that GETs every
resource of the apply's inventory each `health_interval` seconds, assesses
them (`health.assess`) and appends HealthChanged whenever the app's
aggregate status changes -- not on every poll -- until the status is final
(Healthy, Degraded, Suspended) or the app's health_timeout_seconds, counted
from the ApplySucceeded, has passed (then Degraded, naming what was not ready,
or Unknown if what is left is only resources no rule can judge).

The tasks run beside the consumer, so watching one app's rollout never keeps
the applier from taking the next approval. A newer apply of the app replaces
its watch.

Surviving restarts, kept simple: on start, every registered app whose last
ApplySucceeded has no final HealthChanged yet and no apply started after it
is watched again, with the same deadline (it is counted from the
ApplySucceeded's time). HealthChanged ids derive from the ApplySucceeded and
the count of HealthChanged events of that apply before it, so a watch resumed
by a restart, or by two replicas, appends each change once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import timedelta

from events import names
from events.envelope import Envelope, now
from events.payloads import (
    ApplyStarted,
    ApplySucceeded,
    AppSpec,
    HealthChanged,
    ResourceHealth,
    ResourceRef,
)
from services.catalog.lookup import app_spec, load_registry
from services.resources import health
from services.wiring import telemetry
from services.wiring.kube import Clusters, Kube, KubeConfigError, KubeError, Resource
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

# GETs in flight at once across every watch: health checks must not crowd out applies.
CONCURRENT_GETS = 16
# How far the stored time of an apply's HealthChanged may be behind the
# ApplySucceeded's occurred_at (the applier's clock vs the server's).
CLOCK_MARGIN = timedelta(minutes=5)


class HealthWatch:
    """The health-watching tasks of one applier."""

    def __init__(self, ctx: ServiceContext, clusters: Clusters) -> None:
        self.ctx = ctx
        self.clusters = clusters
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._gets = asyncio.Semaphore(CONCURRENT_GETS)

    def watch(
        self,
        succeeded: Envelope,
        *,
        spec: AppSpec | None = None,
        fresh: bool = False,
        seen: Mapping[ResourceRef, Resource] | None = None,
    ) -> None:
        """Watch the health of the apply `succeeded` records, replacing the app's older watch.

        `spec`: the app's, if the caller follows it (else read from the log).
        `fresh`: `succeeded` was appended just now, by this process (not found
        a duplicate): no HealthChanged of its apply can exist yet, so none is
        read -- a consumer made and deleted per apply, the costliest request
        a NATS server serves.
        `seen`: objects as the apply just left them (the server's answers): the
        first assessment takes them instead of reading each one again, so an
        apply whose resources are healthy at once costs no further request.
        """
        app = succeeded.app
        older = self._tasks.pop(app, None)
        if older is not None:
            older.cancel()
        task = asyncio.create_task(
            self._watch(succeeded, spec=spec, fresh=fresh, seen=seen), name=f"health:{app}"
        )
        self._tasks[app] = task
        task.add_done_callback(lambda done: self._forget(app, done))

    def _forget(self, app: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(app) is task:
            del self._tasks[app]
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: health watch failed: %r", app, task.exception())

    async def resume(self) -> None:
        """Watch again every app whose last apply's health is not final (see the docstring)."""
        registry, _ = await load_registry(self.ctx.log)
        for app in registry.apps:
            succeeded = await self.ctx.log.last_event(app, ApplySucceeded.event_type)
            if succeeded is None:
                continue
            started = await self.ctx.log.last_event(app, ApplyStarted.event_type)
            if started is not None and started.seq > succeeded.seq:
                continue  # a newer apply is under way; its success starts its own watch
            changes = await self._changes_of(succeeded.event)
            if changes and health.is_final(changes[-1].status):
                continue
            self.watch(succeeded.event)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def wait_idle(self) -> None:
        """Until every watch running now is over (tests)."""
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _changes_of(self, succeeded: Envelope) -> list[HealthChanged]:
        payload = succeeded.payload
        assert isinstance(payload, ApplySucceeded)
        # Only what came after the apply can be about it: read from its time on
        # (less a margin for clocks), not the app's whole history of health.
        changes = []
        async for stored in self.ctx.log.read(
            subjects=[names.subject(succeeded.app, HealthChanged.event_type)],
            since=succeeded.occurred_at - CLOCK_MARGIN,
        ):
            e = stored.event
            if isinstance(e.payload, HealthChanged) and e.payload.apply_id == payload.apply_id:
                changes.append(e.payload)
        return changes

    async def _watch(
        self,
        succeeded: Envelope,
        *,
        spec: AppSpec | None = None,
        fresh: bool = False,
        seen: Mapping[ResourceRef, Resource] | None = None,
    ) -> None:
        app = succeeded.app
        applied = succeeded.payload
        assert isinstance(applied, ApplySucceeded)
        if spec is None:
            spec = await app_spec(self.ctx.log, app)
        if spec is None:
            return
        try:
            kube = await self.clusters.get(spec.destination_context)
        except KubeConfigError as exc:
            log.error("%s: cannot watch health: %s", app, exc)
            return
        changes = [] if fresh else await self._changes_of(succeeded)
        count = len(changes)
        last = changes[-1].status if changes else None
        timeout = spec.health_timeout_seconds
        deadline = succeeded.occurred_at + timedelta(seconds=timeout)
        while True:
            with telemetry.untraced():
                resources = await self._assess(kube, applied.inventory, seen or {})
            seen = None  # only the first look: after it, what is live now
            status = health.aggregate(resources)
            expired = not health.is_final(status) and now() >= deadline
            if expired:
                resources = health.timed_out(resources, timeout)
                status = health.aggregate(resources)
            if status != last:
                with telemetry.new_trace(
                    "health changed",
                    link=succeeded.traceparent,
                    **{"wake.app": app, "wake.health": str(status)},
                ):
                    event = self.ctx.derive(
                        HealthChanged(
                            status=status, resources=resources, apply_id=applied.apply_id
                        ),
                        cause=succeeded,
                        key=f"health:{count}",
                    )
                    await self.ctx.log.append(event)
                log.info("%s: health of apply %s: %s", app, applied.apply_id, status)
                count += 1
                last = status
            if health.is_final(status) or expired:
                # Past the deadline only Unknown can be left, and it stays as it is.
                return
            if await self.ctx.wait_stop(self.ctx.settings.health_interval):
                return

    async def _assess(
        self, kube: Kube, inventory: list[ResourceRef], seen: Mapping[ResourceRef, Resource]
    ) -> list[ResourceHealth]:
        async def one(ref: ResourceRef) -> ResourceHealth:
            if ref in seen:
                return health.assess(ref, seen[ref])
            async with self._gets:
                try:
                    obj = await kube.get(ref)
                except KubeError as exc:
                    return ResourceHealth(ref=ref, status="Unknown", message=str(exc))
            return health.assess(ref, obj)

        return list(await asyncio.gather(*(one(ref) for ref in inventory)))
