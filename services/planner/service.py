"""The planner's shell: ManifestsRendered -> PlanCreated + PlanApproved | ApprovalRequested.

For each rendered revision: load its bundle, prepare each resource (inventory
labels, namespace), GET what is live and dry-run the apply, read the last
applied inventory from the log, let `planning.plan` decide, let `policy`
approve or ask, and append the plan and its follow-up together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from events import names
from events.bundle import InvalidBundle
from events.envelope import derived_event_id, encode
from events.payloads import (
    ApplySucceeded,
    ManifestsRendered,
    PlanApproved,
    PlanCreated,
    ResourceRef,
)
from services.catalog.lookup import app_spec
from services.planner import policy
from services.planner.loading import DesiredResource, load_bundle, prepare_all
from services.planner.planning import DryRun, Refusal, plan, prune_candidates, summary
from services.wiring.consumers import ConsumerSettings, consume, ensure_consumer, reject
from services.wiring.eventlog import BundleCorrupt, BundleNotFound, StoredEvent
from services.wiring.kube import Kube, KubeError, KubeUnreachable, Resource
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

CONSUMER = ConsumerSettings(
    name="planner", subjects=[names.type_subjects(ManifestsRendered.event_type)]
)

# Requests in flight to the API server per plan: enough to hide latency,
# few enough not to look like a flood to an API server's priority and fairness.
CONCURRENT_REQUESTS = 8

T = TypeVar("T")
R = TypeVar("R")


async def main(ctx: ServiceContext) -> None:
    await serve(ctx)


async def serve(ctx: ServiceContext, *, consumer: ConsumerSettings = CONSUMER) -> None:
    """Plan every rendered revision until ctx.stop; `consumer` lets tests shorten backoff."""
    kube = await Kube.from_settings(ctx.settings)
    try:
        planner = Planner(ctx, kube, consumer=consumer.name)
        await ensure_consumer(ctx.log, consumer)
        ctx.ready()
        await consume(ctx.log, consumer, planner.handle, stop=ctx.stop)
    finally:
        await kube.close()


class Planner:
    """Handles one ManifestsRendered at a time; idempotent (every event it appends is derived)."""

    def __init__(self, ctx: ServiceContext, kube: Kube, *, consumer: str = CONSUMER.name) -> None:
        self.ctx = ctx
        self.kube = kube
        self.consumer = consumer
        self._limit = asyncio.Semaphore(CONCURRENT_REQUESTS)

    async def handle(self, stored: StoredEvent) -> None:
        event = stored.event
        rendered = event.payload
        if not isinstance(rendered, ManifestsRendered):
            return
        spec = await app_spec(self.ctx.log, event.app)
        if spec is None:
            log.info("skipping %s of %s: the app is not registered", event.event_id, event.app)
            return
        try:
            bundle = await load_bundle(self.ctx.log, rendered.bundle_digest, app=event.app)
        except (BundleNotFound, BundleCorrupt, InvalidBundle) as exc:
            # The renderer stores the bundle before it announces it: this will not heal.
            await reject(
                self.ctx.log,
                consumer=self.consumer,
                seq=stored.seq,
                subject=stored.subject,
                data=encode(event),
                error=f"ManifestsRendered {event.event_id}: {exc}",
                event_id=event.event_id,
            )
            return
        desired = await prepare_all(
            self.kube, bundle, app=event.app, default_namespace=spec.namespace
        )
        live, dry_run = await self._observe(desired)
        last = await self.ctx.log.last_event(event.app, ApplySucceeded.event_type)
        inventory = last.event.payload.inventory if last is not None else []
        if spec.prune:
            candidates = prune_candidates((d.ref for d in desired), inventory)
            for ref, obj in zip(candidates, await self._all(self._live, candidates), strict=True):
                # Unreadable (its kind is not served any more): shown without a diff.
                live[ref] = None if isinstance(obj, Refusal) else obj
        decided = plan([d.resource for d in desired], dry_run, live, inventory, prune=spec.prune)
        plan_id = derived_event_id(event.event_id, PlanCreated.event_type)
        created = self.ctx.derive(
            PlanCreated(
                plan_id=plan_id,
                commit=rendered.commit,
                bundle_digest=rendered.bundle_digest,
                changes=decided.changes,
                prune=decided.prune,
                reason="revision",
                needs_approval=policy.needs_approval(spec),
            ),
            cause=event,
        )
        follow_up = self.ctx.derive(policy.decide(created.payload), cause=created)
        if isinstance(follow_up.payload, PlanApproved):
            follow_up = msgspec.structs.replace(follow_up, actor=policy.POLICY_ACTOR)
        await self.ctx.log.append_many([created, follow_up])
        log.info(
            "%s: plan %s for %s: %s -> %s",
            event.app,
            plan_id,
            rendered.commit[:12],
            summary(decided.changes, decided.prune),
            follow_up.type,
        )

    async def _observe(
        self, desired: list[DesiredResource]
    ) -> tuple[dict[ResourceRef, Resource | None], dict[ResourceRef, DryRun]]:
        """Live objects and dry-run outcomes of every desired resource, by ref."""
        live: dict[ResourceRef, Resource | None] = {}
        dry_run: dict[ResourceRef, DryRun] = {}
        refusals: dict[ResourceRef, Refusal] = {}
        for d in desired:
            if d.error is not None:
                refusals[d.ref] = _refusal(d.error)
        readable = [d for d in desired if d.served and d.error is None]
        for d, obj in zip(
            readable, await self._all(self._live, [d.ref for d in readable]), strict=True
        ):
            if isinstance(obj, Refusal):
                refusals[d.ref] = obj
            else:
                live[d.ref] = obj
        # A namespace this plan creates cannot hold a dry run yet; neither can
        # a kind whose CRD this plan creates. Those resources are compared as sent.
        missing_namespaces = {
            d.ref.name for d in desired if d.ref.kind == "Namespace" and live.get(d.ref) is None
        }
        runnable = [
            d
            for d in readable
            if d.ref not in refusals and d.ref.namespace not in missing_namespaces
        ]
        for d, outcome in zip(runnable, await self._all(self._dry_run, runnable), strict=True):
            dry_run[d.ref] = outcome
        dry_run.update(refusals)
        return live, dry_run

    async def _live(self, ref: ResourceRef) -> Resource | Refusal | None:
        try:
            return await self.kube.get(ref)
        except KubeUnreachable:
            raise
        except KubeError as exc:
            return _refusal(exc, operation="read")

    async def _dry_run(self, d: DesiredResource) -> DryRun:
        try:
            return (await self.kube.apply(d.resource, dry_run=True)).object
        except KubeUnreachable:
            raise
        except KubeError as exc:
            return _refusal(exc)

    async def _all(self, call: Callable[[T], Awaitable[R]], items: list[T]) -> list[R]:
        """`call` on every item, at most CONCURRENT_REQUESTS at a time; results in item order."""

        async def limited(item: T) -> R:
            async with self._limit:
                return await call(item)

        return list(await asyncio.gather(*(limited(item) for item in items)))


def _refusal(exc: KubeError, operation: str = "dry run") -> Refusal:
    return Refusal(
        status_code=exc.status_code, reason=exc.reason, message=exc.message, operation=operation
    )
