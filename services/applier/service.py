"""The applier's shell: PlanApproved -> ApplyStarted, ResourceApplied, ApplySucceeded/ApplyFailed.

Beside the consumer run the health watches of finished applies
(`health_watch.py`: HealthChanged) and the drift checks (`drift_watch.py`:
DriftDetected). Each app is applied on its destination: the kubeconfig
context its spec names (`Clusters`, one client per context).

For each approval: fold the app's plan and apply events into an
`admission.AppHistory`, let `admission.decide`, and on Start append
ApplyStarted conditionally -- so that two replicas, or two approvals, never
apply one app at the same time. Then server-side apply the plan's bundle in
`ordering` order, prune the plan's prune set in reverse order, and append the
outcome.

Every event is derived from the PlanApproved (deterministic ids), so a
redelivered approval re-derives the same ids and JetStream stores nothing
twice; the apply id is the ApplyStarted's event id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging

import msgspec

from events import names
from events.bundle import InvalidBundle, resource_digest
from events.envelope import Envelope, derived_event_id, encode, new_event, now
from events.payloads import (
    ApplyFailed,
    ApplyStarted,
    ApplySucceeded,
    PlanApproved,
    PlanCreated,
    ResourceApplied,
    ResourceRef,
)
from services.applier import admission
from services.applier.drift_watch import DriftWatch
from services.applier.health_watch import HealthWatch
from services.applier.ordering import InvalidWave, order_key, prune_order, wave_of
from services.catalog.lookup import app_spec
from services.planner import namespaces
from services.planner.desired import prepare
from services.planner.labels import is_labelled_for
from services.planner.loading import DesiredResource, load_bundle, prepare_all
from services.planner.planning import identity, live_wave
from services.wiring.consumers import ConsumerSettings, consume, ensure_consumer, reject
from services.wiring.eventlog import BundleCorrupt, BundleNotFound, ConcurrencyConflict, StoredEvent
from services.wiring.kube import (
    Clusters,
    Kube,
    KubeConfigError,
    KubeError,
    KubeUnreachable,
    Resource,
    wait_established,
)
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

CONSUMER = ConsumerSettings(name="applier", subjects=[names.type_subjects(PlanApproved.event_type)])

# Server-side applies of one group (same wave and kind rank) sent at once.
APPLY_CONCURRENCY = 16

# Conditional appends lost in a row before the approval goes back for redelivery.
MAX_CONFLICTS = 5
# How long a custom resource waits for the CRD applied before it to be served.
CRD_ESTABLISH_SECONDS = 30.0


class ApplyInFlight(Exception):
    """Another apply of the app is running: the approval is redelivered later (nak)."""


class _Failed(Exception):
    """An apply stops here: becomes ApplyFailed."""

    def __init__(
        self, error: str, resource: ResourceRef | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(error)
        self.error = error
        self.resource = resource
        self.status_code = status_code

    @classmethod
    def of(cls, exc: KubeError, doing: str) -> _Failed:
        """The API's refusal, naming the resource: `apply of Kind ns/name: 422 Invalid: ...`."""
        code = f"{exc.status_code} " if exc.status_code else ""
        what = f"{doing} {exc.ref}" if exc.ref is not None else doing
        return cls(f"{what}: {code}{exc.reason}: {exc.message}", exc.ref, exc.status_code or None)


def _with_planned_namespace(
    desired: list[DesiredResource], plan: PlanCreated, *, app: str, name: str
) -> list[DesiredResource]:
    """`desired` and the destination Namespace the planner added (`--create-namespace`)."""
    rendered = namespaces.planned_namespace(plan, (d.ref for d in desired), name)
    if rendered is None:
        return desired
    ready = prepare(rendered, app=app, namespaced=False, default_namespace=name)
    created = DesiredResource(
        ref=namespaces.namespace_ref(name), resource=ready, digest=resource_digest(rendered)
    )
    return [created, *desired]


def _group_of(d: DesiredResource, waves: dict[ResourceRef, int]) -> tuple[int, int]:
    """(wave, kind rank): what must be applied before the next group starts."""
    wave, rank, *_ = order_key(d.ref, waves[d.ref])
    return wave, rank


async def main(ctx: ServiceContext) -> None:
    await serve(ctx)


async def serve(ctx: ServiceContext, *, consumer: ConsumerSettings = CONSUMER) -> None:
    """Apply every approved plan, watch health and drift, until ctx.stop.

    `consumer` lets tests shorten backoff.
    """
    async with Clusters.from_settings(ctx.settings) as clusters:
        applier = Applier(ctx, clusters, consumer=consumer.name)
        drift = DriftWatch(ctx, clusters)
        await ensure_consumer(ctx.log, consumer)
        await applier.health.resume()
        drifting = asyncio.create_task(drift.run(), name="drift")
        try:
            ctx.ready()
            await consume(
                ctx.log,
                consumer,
                applier.handle,
                stop=ctx.stop,
                concurrency=ctx.settings.concurrency,
            )
        finally:
            drifting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drifting
            await applier.health.close()


class Applier:
    """Handles one PlanApproved at a time; safe to run as several replicas."""

    def __init__(
        self, ctx: ServiceContext, clusters: Clusters, *, consumer: str = CONSUMER.name
    ) -> None:
        self.ctx = ctx
        self.clusters = clusters
        self.consumer = consumer
        self.health = HealthWatch(ctx, clusters)
        # Requests one apply has in flight at once against the API server.
        self._in_flight = asyncio.Semaphore(APPLY_CONCURRENCY)

    async def handle(self, stored: StoredEvent) -> None:
        approval = stored.event
        if not isinstance(approval.payload, PlanApproved):
            return
        app = approval.app
        apply_id = derived_event_id(approval.event_id, ApplyStarted.event_type)
        for _ in range(MAX_CONFLICTS):
            history = await self._history(app)
            decision = admission.decide(
                history,
                approval,
                apply_id=apply_id,
                now=now(),
                apply_timeout=self.ctx.settings.apply_timeout,
            )
            if isinstance(decision, admission.Skip):
                log.info("%s: skipping approval %s: %s", app, approval.event_id, decision.reason)
                return
            if isinstance(decision, admission.Missing | admission.Refused):
                await reject(
                    self.ctx.log,
                    consumer=self.consumer,
                    seq=stored.seq,
                    subject=stored.subject,
                    data=encode(approval),
                    error=decision.reason,
                    event_id=approval.event_id,
                )
                return
            if isinstance(decision, admission.Wait):
                raise ApplyInFlight(f"{app}: {decision.reason}")
            if isinstance(decision, admission.Expire):
                await self._expire(decision.started.event)
                if decision.mine:
                    return
                continue
            if isinstance(decision, admission.Resume):
                log.info("%s: resuming apply %s", app, apply_id)
                await self._run(approval, decision.plan.event, decision.started.event)
                return
            started = self._started(approval, decision.plan.event, apply_id)
            try:
                # The race this closes: two replicas (or two approvals) both read "no
                # apply in flight" and both start. Each append expects the last
                # ApplyStarted of the app to be the one it saw; JetStream lets one
                # through and refuses the other, which reads again and waits. Only
                # ApplyStarted matters: a finish in between makes "in flight" only
                # less true, and it cannot be undone.
                await self.ctx.log.append(
                    started,
                    expected_last_seq=decision.expected_seq,
                    on_subjects=names.subject(app, ApplyStarted.event_type),
                )
            except ConcurrencyConflict:
                log.info("%s: another apply started meanwhile; deciding again", app)
                continue
            await self._run(approval, decision.plan.event, started)
            return
        raise ApplyInFlight(f"{app}: lost {MAX_CONFLICTS} conditional appends in a row")

    async def _history(self, app: str) -> admission.AppHistory:
        subjects = [names.subject(app, t) for t in admission.HISTORY_TYPES]
        history = admission.AppHistory()
        async for stored in self.ctx.log.read(subjects=subjects):
            history.add(stored.seq, stored.event)
        return history

    def _started(self, approval: Envelope, plan_event: Envelope, apply_id: str) -> Envelope:
        plan = plan_event.payload
        assert isinstance(plan, PlanCreated)
        started = self.ctx.derive(
            ApplyStarted(
                apply_id=apply_id,
                plan_id=plan.plan_id,
                commit=plan.commit,
                bundle_digest=plan.bundle_digest,
                rollback_of=plan.rollback_of,
            ),
            cause=approval,
        )
        assert started.event_id == apply_id
        return started

    async def _expire(self, started: Envelope) -> None:
        """Record that the apply begun by `started` never finished within apply_timeout."""
        payload = started.payload
        assert isinstance(payload, ApplyStarted)
        failed = new_event(
            ApplyFailed(
                apply_id=payload.apply_id,
                plan_id=payload.plan_id,
                error=f"apply did not finish within apply_timeout "
                f"({self.ctx.settings.apply_timeout:.0f}s): its applier stopped",
            ),
            app=started.app,
            actor=self.ctx.actor,
            # The id its own applier would have given its ApplyFailed: of the two, one is stored.
            event_id=derived_event_id(started.causation_id or "", ApplyFailed.event_type),
            correlation_id=started.correlation_id,
            traceparent=started.traceparent,
        )
        failed = msgspec.structs.replace(failed, causation_id=started.causation_id)
        await self.ctx.log.append(failed)
        log.warning("%s: apply %s expired", started.app, payload.apply_id)

    async def _run(self, approval: Envelope, plan_event: Envelope, started: Envelope) -> None:
        """Apply and prune, bounded by apply_timeout from `started`; append the outcome."""
        plan = plan_event.payload
        assert isinstance(plan, PlanCreated)
        apply_id = started.event_id
        progress: list[ResourceRef] = []
        remaining = (
            admission.deadline(started, self.ctx.settings.apply_timeout) - now()
        ).total_seconds()
        scope = asyncio.timeout(max(remaining, 0.0))
        try:
            async with scope:
                inventory = await self._apply(approval, plan, apply_id, progress)
        except _Failed as failure:
            outcome = ApplyFailed(
                apply_id=apply_id,
                plan_id=plan.plan_id,
                error=failure.error,
                resource=failure.resource,
                status_code=failure.status_code,
            )
        except TimeoutError:
            if not scope.expired():
                raise  # a timeout of the log, not of the apply: redelivery resumes it
            at = f" at {progress[-1]}" if progress else ""
            outcome = ApplyFailed(
                apply_id=apply_id,
                plan_id=plan.plan_id,
                error=f"apply did not finish within apply_timeout "
                f"({self.ctx.settings.apply_timeout:.0f}s){at}",
                resource=progress[-1] if progress else None,
            )
        else:
            outcome = ApplySucceeded(
                apply_id=apply_id,
                plan_id=plan.plan_id,
                commit=plan.commit,
                bundle_digest=plan.bundle_digest,
                inventory=inventory,
                rollback_of=plan.rollback_of,
            )
        finished = self.ctx.derive(outcome, cause=approval)
        await self.ctx.log.append(finished)
        if isinstance(outcome, ApplySucceeded):
            self.health.watch(finished)
        if isinstance(outcome, ApplyFailed):
            log.warning("%s: apply %s failed: %s", approval.app, apply_id, outcome.error)
        else:
            log.info("%s: apply %s succeeded: %d resources", approval.app, apply_id, len(inventory))

    async def _apply(
        self,
        approval: Envelope,
        plan: PlanCreated,
        apply_id: str,
        progress: list[ResourceRef],
    ) -> list[ResourceRef]:
        """Apply every resource, then prune; the inventory Wake manages afterwards."""
        app = approval.app
        spec = await app_spec(self.ctx.log, app)
        default_namespace = spec.namespace if spec is not None else "default"
        try:
            kube = await self.clusters.get(spec.destination_context if spec is not None else "")
        except KubeConfigError as exc:
            raise _Failed(f"destination of {app}: {exc}") from None
        try:
            bundle = await load_bundle(self.ctx.log, plan.bundle_digest, app=app)
        except (BundleNotFound, BundleCorrupt, InvalidBundle) as exc:
            raise _Failed(f"plan {plan.plan_id}: {exc}") from None
        try:
            desired = await prepare_all(kube, bundle, app=app, default_namespace=default_namespace)
        except KubeUnreachable as exc:
            raise _Failed.of(exc, "discovery for") from None
        desired = _with_planned_namespace(desired, plan, app=app, name=default_namespace)
        waves: dict[ResourceRef, int] = {}
        for d in desired:
            try:
                waves[d.ref] = wave_of(d.resource, d.ref)
            except InvalidWave as exc:
                raise _Failed(str(exc), d.ref) from None
        ordered = sorted(desired, key=lambda d: order_key(d.ref, waves[d.ref]))
        # Resources of one wave and one kind rank need nothing of each other:
        # apply them together (a bounded number at a time), and the next group
        # only once all of them are in. Their ResourceApplied events go to the
        # log as one batch: one fsync for the group.
        for _, grouped in itertools.groupby(ordered, key=lambda d: _group_of(d, waves)):
            group = list(grouped)
            progress.extend(d.ref for d in group)
            outcomes = await asyncio.gather(
                *(self._apply_bounded(kube, d) for d in group), return_exceptions=True
            )
            done = [
                (d, action)
                for d, action in zip(group, outcomes, strict=True)
                if isinstance(action, str)
            ]
            await self._record_many(
                approval, apply_id, [(d.ref, action, d.digest) for d, action in done], key="apply"
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        released = await self._prune(kube, approval, plan, apply_id, progress)
        applied = {identity(d.ref) for d in ordered}
        gone = {identity(ref) for ref in released}
        # What Wake still manages but did not apply now (not desired, not pruned:
        # the app does not prune, or the plan predates it) stays in the inventory,
        # so a later plan can still prune it.
        last = await self.ctx.log.last_event(app, ApplySucceeded.event_type)
        kept = [
            ref
            for ref in (last.event.payload.inventory if last is not None else [])
            if identity(ref) not in applied and identity(ref) not in gone
        ]
        return [d.ref for d in ordered] + kept

    async def _apply_bounded(self, kube: Kube, d: DesiredResource) -> str:
        async with self._in_flight:
            return await self._apply_one(kube, d)

    async def _apply_one(self, kube: Kube, d: DesiredResource) -> str:
        """Server-side apply one resource; created, configured or unchanged."""
        if d.error is not None:
            raise _Failed.of(d.error, "cannot apply")
        try:
            if not d.served:
                await wait_established(
                    kube, d.ref.api_version, d.ref.kind, timeout=CRD_ESTABLISH_SECONDS
                )
            live = await kube.get(d.ref)
            applied = await kube.apply(d.resource)
        except KubeError as exc:
            raise _Failed.of(exc, "apply of") from None
        if applied.created or live is None:
            return "created"
        before = (live.get("metadata") or {}).get("resourceVersion")
        after = (applied.object.get("metadata") or {}).get("resourceVersion")
        return "unchanged" if before == after else "configured"

    async def _prune(
        self,
        kube: Kube,
        approval: Envelope,
        plan: PlanCreated,
        apply_id: str,
        progress: list[ResourceRef],
    ) -> list[ResourceRef]:
        """Delete the plan's prune set in prune order; the refs Wake no longer manages.

        Those are the deleted (or already absent) ones, and those whose live
        object lost the app's inventory labels: someone else took them over,
        and Wake neither deletes nor tracks them any more.
        """
        live: dict[ResourceRef, Resource | None] = {}
        for ref in plan.prune:
            progress.append(ref)
            try:
                live[ref] = await kube.get(ref)
            except KubeUnreachable as exc:
                raise _Failed.of(exc, "prune of") from None
            except KubeError as exc:
                if exc.status_code != 404:
                    raise _Failed.of(exc, "prune of") from None
                live[ref] = None  # its kind is not served any more: nothing left to delete
        waves = {ref: live_wave(obj, ref) for ref, obj in live.items()}
        released = []
        for ref in prune_order(plan.prune, waves):
            progress.append(ref)
            obj = live[ref]
            if obj is not None and not is_labelled_for(obj, approval.app):
                log.warning(
                    "%s: not pruning %s: it no longer carries the app's inventory labels",
                    approval.app,
                    ref,
                )
                released.append(ref)
                continue
            if obj is not None:
                try:
                    await kube.delete(ref)
                except KubeError as exc:
                    raise _Failed.of(exc, "prune of") from None
            await self._record(approval, apply_id, ref, "pruned", "", key="prune")
            released.append(ref)
        return released

    async def _record(
        self,
        approval: Envelope,
        apply_id: str,
        ref: ResourceRef,
        action: str,
        digest: str,
        *,
        key: str,
    ) -> None:
        event = self.ctx.derive(
            ResourceApplied(apply_id=apply_id, ref=ref, action=action, digest=digest),
            cause=approval,
            key=f"{key}:{ref.api_version}/{ref.kind}/{ref.namespace}/{ref.name}",
        )
        await self.ctx.log.append(event)

    async def _record_many(
        self,
        approval: Envelope,
        apply_id: str,
        applied: list[tuple[ResourceRef, str, str]],
        *,
        key: str,
    ) -> None:
        events = [
            self.ctx.derive(
                ResourceApplied(apply_id=apply_id, ref=ref, action=action, digest=digest),
                cause=approval,
                key=f"{key}:{ref.api_version}/{ref.kind}/{ref.namespace}/{ref.name}",
            )
            for ref, action, digest in applied
        ]
        await self.ctx.log.append_many(events)
