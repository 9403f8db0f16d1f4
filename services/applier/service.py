"""The applier's shell: PlanApproved -> ApplyStarted, ResourceApplied, ApplySucceeded/ApplyFailed.

Beside the consumer run the health watches of finished applies
(`health_watch.py`: HealthChanged) and the drift checks (`drift_watch.py`:
DriftDetected). Each app is applied on its destination: the kubeconfig
context its spec names (`Clusters`, one client per context).

For each approval: fold the app's plan and apply events into an
`admission.AppHistory`, let `admission.decide`, and on Start append
ApplyStarted conditionally -- so that two replicas, or two approvals, never
apply one app at the same time. Then run the plan's bundle phase by phase and
wave by wave (`phases`, `syncing`: each wave healthy and its hooks complete
before the next), server-side applying in `ordering` order; prune the plan's
prune set in reverse order at the end of the Sync phase; append the outcome.

Every event is derived from the PlanApproved (deterministic ids), so a
redelivered approval re-derives the same ids and JetStream stores nothing
twice; the apply id is the ApplyStarted's event id.

A failed apply is tried again (`retrying`): the ApplyFailed goes to the log
with an ApplyRetryScheduled, which this same consumer receives and holds
until it is due; the retry's events are derived from it. An
ApplicationRemoved with `cascade` deletes the app's last inventory
(`removing`), one ResourceDeleted each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import msgspec

from events import names
from events.bundle import InvalidBundle, resource_digest
from events.envelope import Envelope, derived_event_id, encode, new_event, now
from events.payloads import (
    ApplicationRegistered,
    ApplicationRemoved,
    ApplicationUpdated,
    ApplyFailed,
    ApplyRetryScheduled,
    ApplyStarted,
    ApplySucceeded,
    ApprovalRefused,
    AppSpec,
    PlanApproved,
    PlanCreated,
    ResourceApplied,
    ResourceDeleted,
    ResourceRef,
)
from services.applier import admission, removing, retrying
from services.applier.drift_watch import DriftWatch
from services.applier.health_watch import HealthWatch
from services.applier.syncing import StepFailed, StepRunner
from services.catalog.following import Follower
from services.catalog.lookup import app_events
from services.catalog.registry import LIFECYCLE_TYPES, current_spec, fold_spec
from services.projects.approving import by_policy
from services.projects.rules import never_deleted
from services.resources import namespaces, phases
from services.resources.desired import prepare
from services.resources.identity import identity, live_wave
from services.resources.labels import is_labelled_for
from services.resources.loading import DesiredResource, load_bundle, prepare_all
from services.resources.ordering import InvalidWave, order_key, prune_order
from services.wiring import metrics
from services.wiring.conflicts import after_conflict
from services.wiring.consumers import (
    ConsumerSettings,
    Deferred,
    reject,
    serve_consumer,
)
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

CONSUMER = ConsumerSettings(
    name="applier",
    subjects=[
        names.type_subjects(PlanApproved.event_type),
        names.type_subjects(ApplyRetryScheduled.event_type),
        names.type_subjects(ApplicationRemoved.event_type),
    ],
)

FOLLOWED_INPUTS = (
    PlanApproved.event_type,
    ApplyRetryScheduled.event_type,
    ApplicationRemoved.event_type,
)

# Server-side applies of one tier (same wave, see ordering.apply_tier) sent at once.
APPLY_CONCURRENCY = 32

# Conditional appends lost in a row before the approval goes back for redelivery;
# each loss waits a jittered, doubling delay (services/wiring/conflicts.py).
MAX_CONFLICTS = 5
# How long a custom resource waits for the CRD applied before it to be served.
CRD_ESTABLISH_SECONDS = 30.0


class ApplyInFlight(Exception):
    """Another apply of the app is running: the approval is redelivered later (nak)."""


class VerdictPending(Exception):
    """The planner has not judged a person's approval yet: redelivered later (nak)."""


# How long a person's approval waits here for the planner's verdict before it
# goes back for redelivery (the planner is down, or far behind).
VERDICT_SECONDS = 30.0


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


def _attempt(started: Envelope) -> int:
    payload = started.payload
    return payload.attempt if isinstance(payload, ApplyStarted) else 1


def _planned_namespace(
    desired: list[DesiredResource], plan: PlanCreated, *, app: str, name: str
) -> DesiredResource | None:
    """The destination Namespace the planner added to `plan` (`--create-namespace`), if any."""
    rendered = namespaces.planned_namespace(plan, (d.ref for d in desired), name)
    if rendered is None:
        return None
    ready = prepare(rendered, app=app, namespaced=False, default_namespace=name)
    return DesiredResource(
        ref=namespaces.namespace_ref(name), resource=ready, digest=resource_digest(rendered)
    )


@dataclass
class AppState(retrying.RetryHistory):
    """What the applier follows of one app: its plans and applies, and its spec."""

    # None: not registered (or removed).
    spec: AppSpec | None = None


FOLLOWED_TYPES = (*retrying.HISTORY_TYPES, *LIFECYCLE_TYPES)


def _fold_history(history: AppState, seq: int, event: Envelope) -> None:
    """Fold `event` into the app's state, keeping a plan without its diffs.

    Every plan of every app stays in memory for the life of the applier: its
    diffs are most of its size, and an apply never reads them.
    """
    if event.type in LIFECYCLE_TYPES:
        history.spec = fold_spec(history.spec, event)
        return
    payload = event.payload
    if isinstance(payload, PlanCreated) and any(c.diff for c in payload.changes):
        changes = [msgspec.structs.replace(c, diff="") for c in payload.changes]
        event = msgspec.structs.replace(
            event, payload=msgspec.structs.replace(payload, changes=changes)
        )
    history.add(seq, event)
    if isinstance(payload, ApplySucceeded):
        # A plan applied successfully is never applied again (admission skips
        # its approvals and retries): what it would change is dropped, its
        # order and id are what later decisions read.
        plan_event_id = history.plan_ids.get(payload.plan_id, "")
        stored = history.plans.get(plan_event_id)
        plan = stored.event.payload if stored is not None else None
        if stored is not None and isinstance(plan, PlanCreated) and (plan.changes or plan.prune):
            slim = msgspec.structs.replace(plan, changes=[], prune=[])
            history.plans[plan_event_id] = admission.Stored(
                stored.seq, msgspec.structs.replace(stored.event, payload=slim)
            )


async def main(ctx: ServiceContext) -> None:
    await serve(ctx)


async def serve(ctx: ServiceContext, *, consumer: ConsumerSettings = CONSUMER) -> None:
    """Apply every approved plan, watch health and drift, until ctx.stop.

    `consumer` lets tests shorten backoff.
    """
    async with Clusters.from_settings(ctx.settings) as clusters:
        applier = Applier(ctx, clusters, consumer=consumer.name)
        drift = DriftWatch(ctx, clusters)
        await applier.health.resume()
        drifting = asyncio.create_task(drift.run(), name="drift")
        try:
            await serve_consumer(ctx, consumer, applier.handle)
        finally:
            drifting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drifting
            await applier.health.close()
            await applier.close()


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
        # Per app, where the last outcome this process appended landed: the
        # app's next approval, handled right after in its lane, decides on a
        # history that has folded it -- not on one that still shows the apply
        # in flight (ApplyInFlight, then a backoff of seconds to minutes).
        self._finished_at: dict[str, int] = {}
        # Every app's plans and applies, folded once and followed: admission and
        # retries read them here, never from the log per approval. The handled
        # types are followed too, so `at_least(stored.seq)` can be asked.
        self.history: Follower[AppState] = Follower(
            ctx.log,
            FOLLOWED_TYPES,
            new_state=AppState,
            fold=_fold_history,
            name=f"{ctx.name} history",
            passing=FOLLOWED_INPUTS,
        )

    async def close(self) -> None:
        await self.history.close()

    async def handle(self, stored: StoredEvent) -> None:
        approval = stored.event
        if isinstance(approval.payload, ApplyRetryScheduled):
            await self._retry(stored)
            return
        if isinstance(approval.payload, ApplicationRemoved):
            await self._remove(stored)
            return
        if not isinstance(approval.payload, PlanApproved):
            return
        app = approval.app
        apply_id = derived_event_id(approval.event_id, ApplyStarted.event_type)
        seen = max(stored.seq, self._finished_at.get(app, 0))
        # A person's approval is applied only once the planner accepted who gave it.
        judged = by_policy(approval)
        for attempt in range(MAX_CONFLICTS):
            history = await self.history.at_least(seen, app)
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
            if not judged:
                if not await self._accepted(approval):
                    return
                judged = True
                continue  # decide again on a history that has moved meanwhile
            again = await self._admit(approval, decision, apply_id, conflicts=attempt)
            if again is None:
                return
            seen = again
        raise ApplyInFlight(f"{app}: lost {MAX_CONFLICTS} conditional appends in a row")

    async def _accepted(self, approval: Envelope) -> bool:
        """Whether the planner accepted a person's approval (`projects/approving.py`).

        Waits for its verdict; a refused approval is never applied (its
        ApprovalRefused is the record); none in time: VerdictPending.
        """
        history = await self.history.until(
            approval.app, lambda h: approval.event_id in h.verdicts, timeout=VERDICT_SECONDS
        )
        if history is None:
            raise VerdictPending(
                f"{approval.app}: no verdict of the planner on approval {approval.event_id} yet"
            )
        verdict = history.verdicts[approval.event_id]
        if isinstance(verdict, ApprovalRefused):
            log.warning(
                "%s: not applying approval %s: refused: %s",
                approval.app,
                approval.event_id,
                verdict.reason,
            )
            return False
        return True

    async def _retry(self, stored: StoredEvent) -> None:
        """Run a scheduled retry once it is due (see `retrying`); Deferred until then."""
        retry = stored.event
        payload = retry.payload
        assert isinstance(payload, ApplyRetryScheduled)
        app = retry.app
        early = retrying.not_due(payload, now())
        if early is not None:
            raise Deferred(early.seconds, f"retry {payload.attempt} of {app} not due")
        apply_id = derived_event_id(retry.event_id, ApplyStarted.event_type)
        seen = max(stored.seq, self._finished_at.get(app, 0))
        for attempt in range(MAX_CONFLICTS):
            history = await self.history.at_least(seen, app)
            if history.spec is None:
                log.info("%s: not retrying plan %s: the app was removed", app, payload.plan_id)
                return
            decision = retrying.decide(
                history,
                retry,
                apply_id=apply_id,
                now=now(),
                apply_timeout=self.ctx.settings.apply_timeout,
            )
            if isinstance(decision, retrying.Defer):
                raise Deferred(decision.seconds, f"retry {payload.attempt} of {app} not due")
            if isinstance(decision, admission.Skip):
                log.info("%s: not retrying: %s", app, decision.reason)
                return
            again = await self._admit(
                retry, decision, apply_id, conflicts=attempt, attempt=payload.attempt
            )
            if again is None:
                return
            seen = again
        raise ApplyInFlight(f"{app}: lost {MAX_CONFLICTS} conditional appends in a row")

    async def _admit(
        self,
        trigger: Envelope,
        decision: admission.Decision,
        apply_id: str,
        *,
        conflicts: int,
        attempt: int = 1,
    ) -> int | None:
        """Act on what admission decided for `trigger` (an approval or a due retry).

        Waits (ApplyInFlight), expires a dead apply, resumes one, or starts
        try `attempt`. Returns the log position to decide again from, or None
        once the trigger is handled. A start lost only to messages no reader
        takes for an event (garbage, a forgery) is no lost race: the log's
        conditional append steps over them (`EventLog._past_invalid`).
        """
        app = trigger.app
        if isinstance(decision, admission.Wait):
            raise ApplyInFlight(f"{app}: {decision.reason}")
        if isinstance(decision, admission.Expire):
            seen = await self._expire(decision.started.event)
            return None if decision.mine else seen
        if isinstance(decision, admission.Resume):
            log.info("%s: resuming apply %s", app, apply_id)
            await self._run(trigger, decision.plan.event, decision.started.event)
            return None
        started = self._started(trigger, decision.plan.event, apply_id, attempt=attempt)
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
            seen = await self._last_start(app)
            await after_conflict(conflicts)
            return seen
        if attempt > 1:
            log.info(
                "%s: try %d of plan %s started", app, attempt, decision.plan.event.payload.plan_id
            )
        await self._run(trigger, decision.plan.event, started)
        return None

    async def _remove(self, stored: StoredEvent) -> None:
        """`app remove --cascade`: delete the app's last inventory in prune order."""
        removal = stored.event
        payload = removal.payload
        assert isinstance(payload, ApplicationRemoved)
        app = removal.app
        if not payload.cascade:
            return
        registered, updated, started, applied, failed = await asyncio.gather(
            *(
                self.ctx.log.last_event(app, t)
                for t in (
                    ApplicationRegistered.event_type,
                    ApplicationUpdated.event_type,
                    ApplyStarted.event_type,
                    ApplySucceeded.event_type,
                    ApplyFailed.event_type,
                )
            )
        )
        if registered is None or removing.outdated(stored.seq, registered.seq):
            log.info("%s: removal %s is moot: the app is registered again", app, removal.event_id)
            return
        finished_seq = max(e.seq if e is not None else 0 for e in (applied, failed))
        if started is not None and started.seq > finished_seq:
            # Its inventory is not known until it ends (another replica runs it).
            raise ApplyInFlight(f"{app}: removal waits for apply {started.event.event_id}")
        spec = current_spec(
            (registered.seq, registered.event),
            (updated.seq, updated.event) if updated is not None else None,
            None,
        )
        assert spec is not None
        if applied is None:
            log.info("%s: removal %s: nothing was applied to delete", app, removal.event_id)
            return
        assert isinstance(applied.event.payload, ApplySucceeded)
        inventory = applied.event.payload.inventory
        try:
            kube = await self.clusters.get(spec.destination_context)
        except KubeConfigError as exc:
            await reject(
                self.ctx.log,
                consumer=self.consumer,
                seq=stored.seq,
                subject=stored.subject,
                data=encode(removal),
                error=f"cannot delete what {app} applied: its destination: {exc}",
                event_id=removal.event_id,
            )
            return
        live: dict[ResourceRef, Resource | None] = {}
        for ref in inventory:
            try:
                live[ref] = await kube.get(ref)
            except KubeError as exc:
                if exc.status_code != 404:
                    raise  # the API server is unreachable or refuses: redelivered later
                live[ref] = None  # its kind is not served any more
        waves = {ref: live_wave(obj, ref) for ref, obj in live.items()}
        # What the log shows the app created: a removal is rare, its history is read once.
        created = removing.created_by(
            await app_events(
                self.ctx.log, app, (ResourceApplied.event_type, ResourceDeleted.event_type)
            )
        )
        for ref in prune_order(inventory, waves):
            why = removing.kept_because(
                ref,
                live[ref],
                app=app,
                system_namespace=self.ctx.settings.system_namespace,
                created=identity(ref) in created,
            )
            if not why:
                try:
                    await kube.delete(ref)
                except KubeError as exc:
                    if exc.status_code != 404:
                        raise
            event = self.ctx.derive(
                ResourceDeleted(
                    removal_id=removal.event_id,
                    ref=ref,
                    action="kept" if why else "deleted",
                    reason=why,
                ),
                cause=removal,
                key=f"{ref.api_version}/{ref.kind}/{ref.namespace}/{ref.name}",
            )
            await self.ctx.log.append(event)
        log.info("%s: removed with cascade: %d objects of its inventory", app, len(inventory))

    async def _last_start(self, app: str) -> int:
        """Where the app's last ApplyStarted is: the history must reach it after a lost race."""
        return await self.ctx.log.position(names.subject(app, ApplyStarted.event_type))

    def _started(
        self, approval: Envelope, plan_event: Envelope, apply_id: str, *, attempt: int = 1
    ) -> Envelope:
        plan = plan_event.payload
        assert isinstance(plan, PlanCreated)
        started = self.ctx.derive(
            ApplyStarted(
                apply_id=apply_id,
                plan_id=plan.plan_id,
                commit=plan.commit,
                bundle_digest=plan.bundle_digest,
                rollback_of=plan.rollback_of,
                attempt=attempt,
            ),
            cause=approval,
        )
        assert started.event_id == apply_id
        return started

    async def _expire(self, started: Envelope) -> int:
        """Record that the apply begun by `started` never finished within apply_timeout."""
        payload = started.payload
        assert isinstance(payload, ApplyStarted)
        failed = new_event(
            ApplyFailed(
                apply_id=payload.apply_id,
                plan_id=payload.plan_id,
                error=f"apply did not finish within apply_timeout "
                f"({self.ctx.settings.apply_timeout:.0f}s): its applier stopped",
                attempt=payload.attempt,
            ),
            app=started.app,
            actor=self.ctx.actor,
            # The id its own applier would have given its ApplyFailed: of the two, one is stored.
            event_id=derived_event_id(started.causation_id or "", ApplyFailed.event_type),
            correlation_id=started.correlation_id,
            traceparent=started.traceparent,
        )
        failed = msgspec.structs.replace(failed, causation_id=started.causation_id)
        appended = await self.ctx.log.append(failed)
        log.warning("%s: apply %s expired", started.app, payload.apply_id)
        return appended.seq

    async def _run(self, approval: Envelope, plan_event: Envelope, started: Envelope) -> None:
        """Apply and prune, bounded by apply_timeout from `started`; append the outcome."""
        plan = plan_event.payload
        assert isinstance(plan, PlanCreated)
        apply_id = started.event_id
        progress: list[ResourceRef] = []
        # Each resource as the server answered its apply (or the sync last read it):
        # the health watch's first look, without reading them all again.
        seen: dict[ResourceRef, Resource] = {}
        remaining = (
            admission.deadline(started, self.ctx.settings.apply_timeout) - now()
        ).total_seconds()
        scope = asyncio.timeout(max(remaining, 0.0))
        applying = metrics.timed(metrics.APPLY_SECONDS, outcome="succeeded")
        try:
            with applying as labels:
                try:
                    async with scope:
                        inventory = await self._apply(approval, plan, apply_id, progress, seen)
                except (_Failed, TimeoutError):
                    labels["outcome"] = "failed"
                    raise
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
        outcome = msgspec.structs.replace(outcome, attempt=_attempt(started))
        retry = None
        if isinstance(outcome, ApplyFailed):
            retry = await self._retry_of(approval, outcome)
        if retry is not None:
            outcome = msgspec.structs.replace(outcome, retry_at=retry.due_at)
        finished = self.ctx.derive(outcome, cause=approval)
        batch = [finished]
        if retry is not None:
            batch.append(self.ctx.derive(retry, cause=finished))
        # One batch: a crash between the two would leave a failure never retried.
        appended = await self.ctx.log.append_many(batch)
        app = approval.app
        self._finished_at[app] = max([self._finished_at.get(app, 0), *(a.seq for a in appended)])
        if isinstance(outcome, ApplySucceeded):
            self.health.watch(
                finished,
                spec=self.history.state(app).spec,
                fresh=not appended[0].duplicate,
                seen=seen,
            )
        if isinstance(outcome, ApplyFailed):
            log.warning("%s: apply %s failed: %s", approval.app, apply_id, outcome.error)
        else:
            log.info("%s: apply %s succeeded: %d resources", approval.app, apply_id, len(inventory))

    async def _retry_of(
        self, approval: Envelope, payload: ApplyFailed
    ) -> ApplyRetryScheduled | None:
        """The retry that follows the failed apply under the app's retry policy, if any."""
        app = approval.app
        spec = self.history.state(app).spec
        if spec is None:
            return None
        delay = retrying.RetryPolicy.of(spec).delay_after(payload.attempt)
        if delay is None:
            log.warning(
                "%s: apply %s was try %d of %d: no more retries; waiting for a new commit "
                "or `wake sync`",
                app,
                payload.apply_id,
                payload.attempt,
                spec.retry_limit + 1,
            )
            return None
        retried = approval.payload
        approval_id = (
            retried.approval_id if isinstance(retried, ApplyRetryScheduled) else approval.event_id
        )
        return ApplyRetryScheduled(
            plan_id=payload.plan_id,
            after_apply_id=payload.apply_id,
            attempt=payload.attempt + 1,
            due_at=now() + timedelta(seconds=delay),
            delay_seconds=delay,
            approval_id=approval_id,
        )

    async def _apply(
        self,
        approval: Envelope,
        plan: PlanCreated,
        apply_id: str,
        progress: list[ResourceRef],
        seen: dict[ResourceRef, Resource],
    ) -> list[ResourceRef]:
        """Apply every resource, then prune; the inventory Wake manages afterwards.

        `seen` gets each applied resource's object as the server last showed it.
        """
        app = approval.app
        # Followed, as of this approval at least (`handle` waited for it).
        spec = self.history.state(app).spec
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
        created = _planned_namespace(desired, plan, app=app, name=default_namespace)
        if created is not None:
            desired = [created, *desired]
        placements: dict[ResourceRef, phases.Placement] = {}
        for d in desired:
            try:
                placements[d.ref] = phases.placement_of(d.resource, d.ref)
            except (InvalidWave, phases.InvalidHook) as exc:
                raise _Failed(str(exc), d.ref) from None
        # Hooks and skipped resources are no part of the inventory: only these are.
        ordered = sorted(
            (d for d in desired if placements[d.ref].applied and not placements[d.ref].hook),
            key=lambda d: order_key(d.ref, placements[d.ref].wave),
        )
        sync = phases.schedule(
            (d.ref, placements[d.ref])
            for d in sorted(desired, key=lambda d: order_key(d.ref, placements[d.ref].wave))
            if d is not created
        )
        runner = StepRunner(
            self,
            kube,
            approval,
            apply_id,
            desired={d.ref: d for d in desired},
            placements=placements,
            timeout=spec.health_timeout_seconds if spec is not None else 0.0,
            progress=progress,
            seen=seen,
            versions={c.ref: c.resource_version for c in plan.changes if not c.hook},
            settled=frozenset(
                c.ref
                for c in plan.changes
                if c.action == "unchanged" and c.resource_version and not c.hook and not c.error
            ),
        )
        # Phase by phase, wave by wave (phases.py); a wave starts once the one
        # before it is healthy and its hooks complete. Prunes close the Sync
        # phase, before PostSync hooks run, as Argo CD prunes within Sync.
        released: list[ResourceRef] | None = None
        try:
            if created is not None:
                # As Argo CD's CreateNamespace=true: the namespace exists before any
                # phase runs, so that PreSync hooks can run in it.
                await runner.apply_first(created, wave=placements[created.ref].wave)
            for index, step in enumerate(sync.steps):
                if step.phase == phases.POST_SYNC and released is None:
                    released = await self._prune(kube, approval, plan, apply_id, progress)
                await runner.run(step, wait_for_health=sync.waits_for_health(index))
            if released is None:
                released = await self._prune(kube, approval, plan, apply_id, progress)
        except (_Failed, StepFailed) as failure:
            await self._sync_failed(runner, sync.on_failure, approval.app)
            if isinstance(failure, StepFailed):
                raise _Failed(failure.error, failure.resource) from None
            raise
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

    async def _sync_failed(
        self, runner: StepRunner, steps: tuple[phases.Step[ResourceRef], ...], app: str
    ) -> None:
        """Run the SyncFail hooks, wave by wave; their own failure is recorded, not raised.

        The apply fails with its first failure whatever they do.
        """
        for step in steps:
            try:
                await runner.run(step, wait_for_health=False)
            except (_Failed, StepFailed) as exc:
                log.warning("%s: SyncFail hook failed: %s", app, exc)
                return

    async def _apply_bounded(
        self,
        kube: Kube,
        d: DesiredResource,
        planned_version: str | None = None,
        seen: dict[ResourceRef, Resource] | None = None,
    ) -> str:
        async with self._in_flight:
            return await self._apply_one(kube, d, planned_version, seen)

    async def _apply_one(
        self,
        kube: Kube,
        d: DesiredResource,
        planned_version: str | None = None,
        seen: dict[ResourceRef, Resource] | None = None,
    ) -> str:
        """Server-side apply one resource; created, configured or unchanged.

        `planned_version`: the live resourceVersion the plan saw ("" none was
        live). Unchanged means the apply left that version as it was; without it
        (a plan from before it was recorded) the object is read first. `seen`
        gets the object the server answered with.
        """
        if d.error is not None:
            raise _Failed.of(d.error, "cannot apply")
        live = None
        try:
            if not d.served:
                await wait_established(
                    kube, d.ref.api_version, d.ref.kind, timeout=CRD_ESTABLISH_SECONDS
                )
            if planned_version is None:
                live = await kube.get(d.ref)
            applied = await kube.apply(d.resource)
        except KubeError as exc:
            raise _Failed.of(exc, "apply of") from None
        if seen is not None:
            seen[d.ref] = applied.object
        if planned_version is not None:
            if applied.created:
                return "created"
            after = (applied.object.get("metadata") or {}).get("resourceVersion")
            return "unchanged" if planned_version and after == planned_version else "configured"
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
            protected = never_deleted(ref, system_namespace=self.ctx.settings.system_namespace)
            if protected:
                # The planner never plans it (`planning.plan`); a plan from elsewhere might.
                log.warning("%s: not pruning %s: %s", approval.app, ref, protected)
                continue
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
        wave: int = 0,
        then: Sequence[Envelope] = (),
    ) -> None:
        """Append a ResourceApplied for each of `applied`, and `then`, as one batch."""
        events = [
            self.ctx.derive(
                ResourceApplied(
                    apply_id=apply_id, ref=ref, action=action, digest=digest, wave=wave
                ),
                cause=approval,
                key=f"{key}:{ref.api_version}/{ref.kind}/{ref.namespace}/{ref.name}",
            )
            for ref, action, digest in applied
        ]
        await self.ctx.log.append_many([*events, *then])
