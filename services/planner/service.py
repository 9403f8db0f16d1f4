"""The planner's shell: ManifestsRendered, RollbackRequested, DriftDetected -> a plan.

For each rendered revision, each rollback and each self-heal: load the
bundle, prepare each resource (inventory labels, namespace), GET what is live
and dry-run the apply on the app's destination cluster, read the last applied
inventory from the log, let `planning.plan` decide, let `policy` approve or
ask, and append -- conditionally on the app's last PlanCreated, so that two
planners cannot both leave a plan awaiting approval -- the plan, its
follow-up (PlanApproved, ApprovalRequested, or PlanBlocked when any resource
is in error), and a PlanSuperseded for each older plan still awaiting approval.

Per-app order: what it knows of each app (revisions, plans, applies) the
planner folds once from the log and then follows (`tracking`). A revision
older than one already planned -- by detection order: its RevisionDetected's
place in the log, never its render's -- is not planned: a PlanSuperseded with
its commit records it moot (a crash while planning A, then B planned, then A
redelivered: A is superseded, never planned after B). Every plan carries its
order (`desired_seq`) for the applier to compare by.
With `--create-namespace` the app's destination Namespace joins the resources
(`namespaces`).

- ManifestsRendered: a plan of reason "revision" for its bundle; held for a
  person while a rollback pins the app (`policy`'s rollback pin). None for
  a render the renderer found unchanged from the applied bundle
  (`unchanged_from`, see services/renderer/unchanged.py).
- RollbackRequested: a plan of reason "rollback" from the bundle of the
  ApplySucceeded it names (by apply id or commit), read from the object
  store: Git is never touched, so a rollback works with the repository gone.
- DriftDetected with self_heal: a plan of reason "drift" from the last
  applied bundle (the rolled-back one, while rolled back), approved by
  policy as a self-heal.
- PlanApproved by a person: the verdict (`approving`), ApprovalAccepted or
  ApprovalRefused; the applier applies a person's approval only once accepted.

Projects (`services/projects/`): every resource of a plan must be inside the
app's project (its destinations and kinds); one outside is an error of its
change, naming the rule, and blocks the plan. The projects are folded with the
apps' state, so a plan sees every project change before its own event.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from events import names
from events.bundle import InvalidBundle, resource_digest
from events.envelope import Envelope, derived_event_id, encode
from events.payloads import (
    ApplySucceeded,
    ApprovalAccepted,
    ApprovalRefused,
    AppSpec,
    DriftDetected,
    ManifestsRendered,
    PlanApproved,
    PlanCreated,
    PlanSuperseded,
    ResourceRef,
    RollbackRequested,
)
from services.catalog.following import Follower
from services.catalog.revisions import RevisionNotApplied, find_applied
from services.notifier.notifyconfig import groups_of
from services.planner import policy, superseding
from services.planner.planning import (
    DryRun,
    Plan,
    Refusal,
    plan,
    prune_candidates,
    summary,
)
from services.planner.tracking import FOLLOWED_TYPES, INPUT_TYPES, AppState, wanted
from services.projects import approving
from services.projects.book import PROJECT_TYPES, Projects
from services.projects.rules import Missing, Project, project_of, resource_error
from services.resources import namespaces
from services.resources.desired import prepare
from services.resources.identity import errors_of, live_wave
from services.resources.loading import DesiredResource, load_bundle, prepare_all
from services.resources.phases import is_ordinary
from services.wiring import metrics
from services.wiring.batching import BatchDuplicate
from services.wiring.conflicts import after_conflict
from services.wiring.consumers import ConsumerSettings, reject, serve_consumer
from services.wiring.eventlog import (
    BundleCorrupt,
    BundleNotFound,
    ConcurrencyConflict,
    StoredEvent,
)
from services.wiring.kube import (
    Clusters,
    Kube,
    KubeConfigError,
    KubeError,
    KubeUnreachable,
    Resource,
)
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

CONSUMER = ConsumerSettings(
    name="planner",
    subjects=[
        names.type_subjects(ManifestsRendered.event_type),
        names.type_subjects(RollbackRequested.event_type),
        names.type_subjects(DriftDetected.event_type),
        names.type_subjects(PlanApproved.event_type),
    ],
)

# Requests in flight to the API server per plan: enough to hide latency,
# few enough not to look like a flood to an API server's priority and fairness.
CONCURRENT_REQUESTS = 64
# Conditional appends lost in a row (another plan of the app was appended
# meanwhile) before the event goes back for redelivery; each loss waits a
# jittered, doubling delay (services/wiring/conflicts.py).
MAX_CONFLICTS = 10

COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")

T = TypeVar("T")
R = TypeVar("R")


class Unplannable(Exception):
    """This event can never be planned (the message says why): it is rejected, not retried."""


class PlanConflict(Exception):
    """The app's log kept moving under the planner: the event is redelivered later."""


async def main(ctx: ServiceContext) -> None:
    await serve(ctx)


async def serve(ctx: ServiceContext, *, consumer: ConsumerSettings = CONSUMER) -> None:
    """Plan every rendered revision, rollback and self-heal until ctx.stop.

    `consumer` lets tests shorten backoff.
    """
    async with Clusters.from_settings(ctx.settings) as clusters:
        planner = Planner(ctx, clusters, consumer=consumer.name)
        planner.state.start()
        try:
            await serve_consumer(ctx, consumer, planner.handle)
        finally:
            await planner.close()


class Planner:
    """Handles one event at a time; idempotent (every event it appends is derived)."""

    def __init__(
        self, ctx: ServiceContext, clusters: Clusters, *, consumer: str = CONSUMER.name
    ) -> None:
        self.ctx = ctx
        self.clusters = clusters
        self.consumer = consumer
        self._limit = asyncio.Semaphore(CONCURRENT_REQUESTS)
        # Every app's revisions, plans and applies, and every project, folded
        # once and followed (`tracking`): a handled event costs the same
        # whatever the app's history.
        self.projects = Projects()
        # Groups of approvers (`group:NAME`) are the notify file's, read once at start.
        self.groups = groups_of(ctx.settings)
        self.state: Follower[AppState] = Follower(
            ctx.log,
            FOLLOWED_TYPES,
            new_state=AppState,
            fold=self._fold,
            name=f"{ctx.name} state",
            passing=INPUT_TYPES,
            wanted=wanted,
        )

    def _fold(self, state: AppState, seq: int, event: Envelope) -> None:
        if event.type in PROJECT_TYPES:
            self.projects.add(seq, event)
        else:
            state.add(seq, event)

    def project(self, spec: AppSpec) -> Project | Missing:
        """The app's project as folded so far (see `projects.rules.project_of`)."""
        return project_of(
            spec, self.projects.specs, system_namespace=self.ctx.settings.system_namespace
        )

    async def close(self) -> None:
        await self.state.close()

    async def handle(self, stored: StoredEvent) -> None:
        event = stored.event
        payload = event.payload
        if isinstance(payload, PlanApproved):
            if not approving.by_policy(event):
                await self._on_approval(stored, payload)
            return
        if not isinstance(payload, ManifestsRendered | RollbackRequested | DriftDetected):
            return
        # Never decide on a state that has not seen everything before this event.
        state = await self.state.at_least(stored.seq, event.app)
        spec = state.spec
        if spec is None:
            log.info("skipping %s of %s: the app is not registered", event.event_id, event.app)
            return
        try:
            if isinstance(payload, ManifestsRendered):
                await self._on_rendered(
                    event, payload, spec, state, order=state.order_of_render(event, stored.seq)
                )
            elif isinstance(payload, RollbackRequested):
                await self._on_rollback(event, payload, spec, state, order=stored.seq)
            else:
                await self._on_drift(event, payload, spec, state)
        except Unplannable as exc:
            await reject(
                self.ctx.log,
                consumer=self.consumer,
                seq=stored.seq,
                subject=stored.subject,
                data=encode(event),
                error=f"{event.type} {event.event_id}: {exc}",
                event_id=event.event_id,
            )

    async def _on_approval(self, stored: StoredEvent, approval: PlanApproved) -> None:
        """Append the verdict on a person's approval: accepted or refused (`approving`)."""
        event = stored.event
        state = await self.state.at_least(stored.seq, event.app)
        spec = state.spec
        commit = state.plan_commits.get(approval.plan_id, "")
        decided = approving.verdict(
            approver=event.actor,
            app=event.app,
            spec=spec,
            project=self.project(spec) if spec is not None else None,
            commit=commit,
            author=state.authors.get(commit),
            groups=self.groups,
        )
        verdict_type = ApprovalAccepted if decided.accepted else ApprovalRefused
        await self.ctx.log.append(
            self.ctx.derive(
                verdict_type(
                    plan_id=approval.plan_id,
                    approval_id=event.event_id,
                    approver=event.actor,
                    reason=decided.reason,
                ),
                cause=event,
            )
        )
        if decided.accepted:
            log.info("%s: approval %s accepted: %s", event.app, event.event_id, decided.reason)
        else:
            log.warning("%s: approval %s refused: %s", event.app, event.event_id, decided.reason)

    async def _on_rendered(
        self,
        event: Envelope,
        rendered: ManifestsRendered,
        spec: AppSpec,
        state: AppState,
        *,
        order: int,
    ) -> None:
        if rendered.unchanged_from is not None:
            # The renderer found the app synced at these very resources
            # (services/renderer/unchanged.py): the revision moves, nothing to do.
            log.info(
                "%s: %s renders as %s, which is applied: nothing to plan",
                event.app,
                rendered.commit[:12],
                rendered.unchanged_from[:12],
            )
            return
        if await self._superseded(event, rendered.commit, state, order):
            return
        pinned = policy.held_by_pin(state.applied, rendered.commit)
        await self._plan(
            event,
            spec,
            bundle_digest=rendered.bundle_digest,
            commit=rendered.commit,
            reason="revision",
            pinned=pinned,
            desired_seq=order,
        )

    async def _on_rollback(
        self,
        event: Envelope,
        request: RollbackRequested,
        spec: AppSpec,
        state: AppState,
        *,
        order: int,
    ) -> None:
        target = self._rollback_target(event.app, request, state)
        if await self._superseded(event, target.commit, state, order):
            return
        await self._plan(
            event,
            spec,
            bundle_digest=target.bundle_digest,
            commit=target.commit,
            reason="rollback",
            rollback_of=target.apply_id,
            desired_seq=order,
        )

    async def _superseded(self, event: Envelope, commit: str, state: AppState, order: int) -> bool:
        """Record `event`'s revision superseded if a newer one was planned (see `tracking`).

        The PlanSuperseded names the plan id this event's plan would have had, so
        a redelivery finds it and does nothing; its commit says which revision.
        """
        plan_id = derived_event_id(event.event_id, PlanCreated.event_type)
        if plan_id in state.plan_ids:
            return True  # planned (or superseded) before: a redelivery
        newer = state.newer_than(order)
        if newer is None:
            return False
        await self.ctx.log.append(
            self.ctx.derive(
                PlanSuperseded(plan_id=plan_id, superseded_by=newer.plan_id, commit=commit),
                cause=event,
            )
        )
        log.info(
            "%s: %s of %s not planned: %s (plan %s) was detected after it and planned",
            event.app,
            event.type,
            commit[:12],
            newer.commit[:12],
            newer.plan_id,
        )
        return True

    def _rollback_target(
        self, app: str, request: RollbackRequested, state: AppState
    ) -> ApplySucceeded:
        """The ApplySucceeded a rollback goes back to: by apply id, else by commit (or prefix).

        The log is the authority: a target the app was never applied at is an
        error naming it, whatever the requester resolved.
        """
        try:
            return find_applied(
                app,
                state.applies,
                request.apply_id or request.target,
                commit=request.commit or request.target,
                min_prefix=7,
            ).apply
        except RevisionNotApplied as exc:
            raise Unplannable(
                f"cannot roll {app} back to {request.target!r}: no apply of {app} succeeded "
                f"at that apply id or commit (a rollback goes to a revision that was "
                f"applied): {exc}"
            ) from None

    async def _on_drift(
        self, event: Envelope, drift: DriftDetected, spec: AppSpec, state: AppState
    ) -> None:
        if not (drift.self_heal and spec.self_heal):
            return
        if not state.applies:
            return
        applied = state.applies[-1].apply
        if applied.bundle_digest != drift.bundle_digest:
            # Another apply came after the drift was seen: it is what is live now.
            log.info(
                "%s: not healing drift %s: bundle %s is no longer the last applied",
                event.app,
                event.event_id,
                drift.bundle_digest[:12],
            )
            return
        await self._plan(
            event,
            spec,
            bundle_digest=applied.bundle_digest,
            commit=applied.commit,
            reason="drift",
            # Healing a rolled-back app keeps it rolled back (and pinned).
            rollback_of=applied.rollback_of,
        )

    async def _plan(
        self,
        event: Envelope,
        spec: AppSpec,
        *,
        bundle_digest: str,
        commit: str,
        reason: str,
        rollback_of: str | None = None,
        pinned: policy.RollbackPin | None = None,
        desired_seq: int = 0,
    ) -> None:
        """Plan `bundle_digest` for `event`'s app and append the plan with what follows it."""
        app = event.app
        if not COMMIT.match(commit) or not SHA256.match(bundle_digest):
            raise Unplannable(f"commit {commit!r} or bundle digest {bundle_digest!r} is malformed")
        try:
            bundle = await load_bundle(self.ctx.log, bundle_digest, app=app)
        except (BundleNotFound, BundleCorrupt, InvalidBundle) as exc:
            # The renderer stores the bundle before it announces it: this will not heal.
            raise Unplannable(str(exc)) from None
        try:
            kube = await self.clusters.get(spec.destination_context)
        except KubeConfigError as exc:
            raise Unplannable(f"destination of {app}: {exc}") from None
        desired = await prepare_all(kube, bundle, app=app, default_namespace=spec.namespace)
        if spec.create_namespace:
            desired = await self._with_destination_namespace(kube, desired, app, spec.namespace)
        live, dry_run = await self._observe(kube, desired)
        # The last apply as followed (`tracking`), at least as of this event: not
        # read from the log again.
        applies = self.state.state(app).applies
        inventory = applies[-1].apply.inventory if applies else []
        if spec.prune:
            candidates = prune_candidates((d.ref for d in desired), inventory)
            found = await self._all(lambda ref: self._live(kube, ref), candidates)
            for ref, obj in zip(candidates, found, strict=True):
                # Unreadable (its kind is not served any more): shown without a diff.
                live[ref] = None if isinstance(obj, Refusal) else obj
        decided = plan(
            [d.resource for d in desired],
            dry_run,
            live,
            inventory,
            prune=spec.prune,
            ignore=spec.ignore_differences,
            app=app,
            adopt=spec.adopt,
            # Followed at least as of this event, so up to the apply whose inventory
            # this is: its creations are in.
            created=self.state.state(app).created,
            system_namespace=self.ctx.settings.system_namespace,
        )
        decided = self._within_project(decided, spec)
        plan_id = derived_event_id(event.event_id, PlanCreated.event_type)
        created = self.ctx.derive(
            PlanCreated(
                plan_id=plan_id,
                commit=commit,
                bundle_digest=bundle_digest,
                changes=decided.changes,
                prune=decided.prune,
                reason=reason,
                rollback_of=rollback_of,
                needs_approval=policy.needs_approval(
                    spec, reason=reason, pinned=pinned, blocked=bool(errors_of(decided.changes))
                ),
                desired_seq=desired_seq,
            ),
            cause=event,
        )
        assert isinstance(created.payload, PlanCreated)
        # An approval by policy is the planner's own, signed as the planner (its
        # `via` says policy): an approver is always the signer, never a name.
        follow_up = self.ctx.derive(policy.decide(created.payload, pinned=pinned), cause=created)
        superseded = await self._append(event, created, follow_up)
        if superseded is None:
            return
        log.info(
            "%s: %s plan %s for %s: %s -> %s%s",
            app,
            reason,
            plan_id,
            commit[:12],
            summary(decided.changes, decided.prune),
            follow_up.type,
            f", superseding {', '.join(superseded)}" if superseded else "",
        )

    def _within_project(self, decided: Plan, spec: AppSpec) -> Plan:
        """`decided` with an error on each change outside the app's project (`rules`)."""
        project = self.project(spec)
        changes = []
        for change in decided.changes:
            outside = resource_error(
                change.ref,
                project,
                context=spec.destination_context,
                system_namespace=self.ctx.settings.system_namespace,
            )
            if outside:
                error = "; ".join(filter(None, (change.error, outside)))
                change = msgspec.structs.replace(change, error=error)
            changes.append(change)
        return msgspec.structs.replace(decided, changes=changes)

    async def _append(
        self, cause: Envelope, created: Envelope, follow_up: Envelope
    ) -> list[str] | None:
        """Append the plan, its follow-up and what it supersedes, as one conditional batch.

        The plan ids it superseded; None if the plan itself is moot (a newer
        revision was planned meanwhile, recorded as superseded) or was appended
        before (a redelivery: the batch was atomic, it appends nothing again).

        The race this closes: two plans of one app made at once (two replicas,
        or a revision and a rollback) each see the other's absence, and both
        would stay awaiting approval -- or an older revision's plan lands after
        a newer one's. Each batch expects the app's last PlanCreated to be the
        one its state saw (only another plan matters, not every event of the
        app); one wins, the other waits a jittered backoff, catches up with the
        log and decides again: it supersedes the winner, or is superseded by it.
        """
        app = created.app
        plan = created.payload
        assert isinstance(plan, PlanCreated)
        on_plans = names.subject(app, PlanCreated.event_type)
        seen = 0
        for attempt in range(MAX_CONFLICTS):
            state = await self.state.at_least(seen, app)
            if plan.plan_id in state.plan_ids:
                return None
            if plan.reason != "drift" and await self._superseded(
                cause, plan.commit, state, plan.desired_seq
            ):
                return None
            supersedes = superseding.superseded_among(plan, state.awaiting)
            superseded = [self.ctx.derive(s, cause=created, key=s.plan_id) for s in supersedes]
            try:
                await self.ctx.log.append_many(
                    [created, follow_up, *superseded],
                    # Garbage or a forgery on the subject is stepped over by the
                    # log's conditional append (`EventLog._past_invalid`).
                    expected_last_seq=state.last_plan_seq,
                    on_subjects=on_plans,
                )
            except ConcurrencyConflict:
                seen = await self.ctx.log.position(on_plans)
                await after_conflict(attempt)
                continue
            except BatchDuplicate:
                # This very batch is stored already (its ids are derived from the
                # render): a redelivery the followed state had not caught up with.
                # Once it has, the plan is found above.
                seen = await self.ctx.log.position(on_plans)
                continue
            return [s.plan_id for s in supersedes]
        raise PlanConflict(f"{app}: lost {MAX_CONFLICTS} conditional appends of a plan in a row")

    async def _with_destination_namespace(
        self, kube: Kube, desired: list[DesiredResource], app: str, name: str
    ) -> list[DesiredResource]:
        """`desired` and, first, the app's destination Namespace (`--create-namespace`),
        unless the bundle has it or it exists and is not the app's (`namespaces`)."""
        ref = namespaces.namespace_ref(name)
        if not namespaces.lacks_namespace((d.ref for d in desired), name):
            return desired
        found = await self._live(kube, ref)
        if isinstance(found, Refusal) or not namespaces.is_creatable(found, app=app):
            # Unreadable, or someone else's: left alone, as Argo CD leaves an existing one.
            return desired
        wave = min((live_wave(d.resource, d.ref) for d in desired), default=0)
        rendered = namespaces.destination_namespace(name, wave=wave)
        ready = prepare(rendered, app=app, namespaced=False, default_namespace=name)
        created = DesiredResource(ref=ref, resource=ready, digest=resource_digest(rendered))
        return [created, *desired]

    async def _observe(
        self, kube: Kube, desired: list[DesiredResource]
    ) -> tuple[dict[ResourceRef, Resource | None], dict[ResourceRef, DryRun]]:
        """Live objects and dry-run outcomes of every desired resource, by ref.

        Hooks and skipped resources are neither read nor dry-run: a hook is
        created afresh (maybe under a generated name), a skipped one not at all.
        """
        desired = [d for d in desired if is_ordinary(d.resource, d.ref)]
        live: dict[ResourceRef, Resource | None] = {}
        dry_run: dict[ResourceRef, DryRun] = {}
        refusals: dict[ResourceRef, Refusal] = {}
        for d in desired:
            if d.error is not None:
                refusals[d.ref] = _refusal(d.error)
        readable = [d for d in desired if d.served and d.error is None]
        # Reads and dry runs all at once: one round trip, not two. A dry run in
        # a namespace this plan creates (absent now) is refused by the server
        # and set aside below; the resource is compared as sent.
        found, outcomes = await asyncio.gather(
            self._all(lambda ref: self._live(kube, ref), [d.ref for d in readable]),
            self._timed_dry_runs(self._all(lambda d: self._dry_run(kube, d), readable)),
        )
        for d, obj in zip(readable, found, strict=True):
            if isinstance(obj, Refusal):
                refusals[d.ref] = obj
            else:
                live[d.ref] = obj
        # A namespace this plan creates cannot hold a dry run yet; neither can
        # a kind whose CRD this plan creates. Those resources are compared as sent.
        missing_namespaces = {
            d.ref.name for d in desired if d.ref.kind == "Namespace" and live.get(d.ref) is None
        }
        for d, outcome in zip(readable, outcomes, strict=True):
            if d.ref not in refusals and d.ref.namespace not in missing_namespaces:
                dry_run[d.ref] = outcome
        dry_run.update(refusals)
        return live, dry_run

    async def _live(self, kube: Kube, ref: ResourceRef) -> Resource | Refusal | None:
        try:
            return await kube.get(ref)
        except KubeUnreachable:
            raise
        except KubeError as exc:
            return _refusal(exc, operation="read")

    @staticmethod
    async def _timed_dry_runs(running: Awaitable[T]) -> T:
        with metrics.timed(metrics.DRY_RUN_SECONDS, purpose="plan"):
            return await running

    async def _dry_run(self, kube: Kube, d: DesiredResource) -> DryRun:
        try:
            return (await kube.apply(d.resource, dry_run=True)).object
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
