"""Running one apply's steps -- phases, waves, hooks -- against the cluster (shell around `phases`).

For each step (a wave of PreSync, Sync or PostSync, see `phases.schedule`):
apply its ordinary resources and create its hooks, tier by tier in
`ordering` order (`apply_tier`: a tier's resources at once); then wait,
polling every `health_interval`, until every hook has completed and -- when
another step follows -- every resource is healthy (`WAITS_FOR`). Waiting is
bounded by the app's health_timeout_seconds, counted from the end of the
step's applies; a hook that fails, a resource that turns
Degraded, or the timeout ends the apply (StepFailed names the resource, the
phase and the wave).

Every step appends ResourceApplied (with its wave, and for a hook its
phase), WaveWaiting once if it has to wait for health, HookFinished for each
hook, HookDeleted for each hook its delete policy removed, and WaveCompleted.
Their ids derive from the approval and the phase, wave and (template) ref,
so a redelivered approval appends nothing twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

from events.bundle import ref_of
from events.envelope import Envelope
from events.payloads import (
    HookDeleted,
    HookFinished,
    ResourceApplied,
    ResourceHealth,
    ResourceRef,
    WaveCompleted,
    WaveWaiting,
)
from services.resources import health, phases
from services.resources.loading import DesiredResource
from services.resources.ordering import apply_tier, order_key
from services.wiring.kube import Kube, KubeError, Resource

if TYPE_CHECKING:
    from services.applier.service import Applier

log = logging.getLogger(__name__)


# What a wave waits for before the next starts. Healthy and Suspended (a paused
# rollout is where its owner wants it, and would otherwise hold the sync until
# the timeout) let it go on, and so does Unknown: a kind with no health rule
# cannot be waited for, and Argo CD does not wait for it either.
WAITS_FOR = frozenset({"Progressing", "Missing"})


class StepFailed(Exception):
    """A step of the sync failed: a hook failed, a resource is Degraded, or waiting timed out."""

    def __init__(self, error: str, resource: ResourceRef | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.resource = resource


@dataclass
class _Hook:
    """A hook created in this step: its template (the bundle's) and the object made of it."""

    template: DesiredResource
    ref: ResourceRef
    policies: frozenset[str]
    status: phases.HookStatus = "Running"
    message: str = ""


def _key(ref: ResourceRef) -> str:
    return f"{ref.api_version}/{ref.kind}/{ref.namespace}/{ref.name}"


def _where(step: phases.Step[ResourceRef]) -> str:
    return f"{step.phase} wave {step.wave}"


class StepRunner:
    """Runs the steps of one apply (see the module docstring)."""

    def __init__(
        self,
        applier: Applier,
        kube: Kube,
        approval: Envelope,
        apply_id: str,
        *,
        desired: Mapping[ResourceRef, DesiredResource],
        placements: Mapping[ResourceRef, phases.Placement],
        timeout: float,
        progress: list[ResourceRef],
        versions: Mapping[ResourceRef, str] | None = None,
        settled: Set[ResourceRef] = frozenset(),
        seen: dict[ResourceRef, Resource] | None = None,
    ) -> None:
        # Each resource's object as the server last showed it (its apply's
        # answer, or a later read while waiting for its health).
        self.seen = seen if seen is not None else {}
        # The plan's resourceVersion of each resource ("" if none was live):
        # lets an apply say configured or unchanged without a GET first.
        self.versions = versions or {}
        # What the plan found live and unchanged by this apply (its dry run):
        # nothing waits for it to exist, it exists (`_tiers`).
        self.settled = settled
        self.applier = applier
        self.ctx = applier.ctx
        self.kube = kube
        self.approval = approval
        self.apply_id = apply_id
        self.desired = desired
        self.placements = placements
        self.timeout = timeout
        self.progress = progress
        # The ResourceApplied batch of the tier before, still being appended
        # while the next tier is applied: one fsync less on the path per tier.
        # Batches are chained, so the log keeps them in apply order.
        self._recording: asyncio.Task[None] | None = None

    async def run(self, step: phases.Step[ResourceRef], *, wait_for_health: bool) -> None:
        """Apply `step`, then wait for its hooks (and, if asked, its resources' health)."""
        items = sorted(
            [*step.resources, *step.hooks],
            key=lambda ref: order_key(ref, self.placements[ref].wave),
        )
        hooks: list[_Hook] = []
        tiers = self._tiers(items, step)
        # A step with no hooks and no health to wait for is complete once its
        # last tier is applied: its WaveCompleted goes in that tier's batch of
        # ResourceApplied (one append less on every apply's path).
        simple = not step.hooks and not wait_for_health
        for index, group in enumerate(tiers):
            ordinary = [self.desired[ref] for ref in group if ref not in step.hooks]
            closing = simple and index == len(tiers) - 1 and bool(ordinary)
            await self._apply(
                step, ordinary, closing=self._completed(step, []) if closing else None
            )
            if closing:
                await self.recorded()
                return
            for ref in group:
                if ref in step.hooks:
                    await self.recorded()
                    hooks.append(await self._create(step, self.desired[ref]))
        await self.recorded()
        await self._wait(step, hooks, wait_for_health)
        await self.ctx.log.append(self._completed(step, hooks, waited=wait_for_health))

    def _tiers(
        self, items: list[ResourceRef], step: phases.Step[ResourceRef]
    ) -> list[list[ResourceRef]]:
        """`items` (in apply order) by tier, a settled tier sent with the one beside it.

        Tiers go one after the other so that what others need exists first (a
        Namespace before what lives in it, a ConfigMap before the Deployment
        reading it). A tier whose every resource the plan found live and
        unchanged needs no such wait, before or after it: it goes with the
        tier before it (the first, with the one after). An app whose commit
        changes only its ConfigMaps is applied in one round trip, not three.
        """
        tiers: list[list[ResourceRef]] = []
        carried: list[ResourceRef] = []
        for _, grouped in itertools.groupby(items, key=lambda ref: apply_tier(ref.kind)):
            tier = list(grouped)
            if all(ref in self.settled and ref not in step.hooks for ref in tier):
                if tiers:
                    tiers[-1].extend(tier)
                else:
                    carried.extend(tier)
                continue
            tiers.append([*carried, *tier])
            carried = []
        if carried:
            tiers.append(carried)
        return tiers

    def _completed(
        self, step: phases.Step[ResourceRef], hooks: list[_Hook], *, waited: bool = False
    ) -> Envelope:
        return self.ctx.derive(
            WaveCompleted(
                apply_id=self.apply_id,
                phase=step.phase,
                wave=step.wave,
                resources=list(step.resources),
                hooks=[hook.ref for hook in hooks],
                waited=waited,
            ),
            cause=self.approval,
            key=f"wave:{step.phase}:{step.wave}",
        )

    async def apply_first(self, d: DesiredResource, *, wave: int) -> None:
        """Apply `d` before every phase (the namespace --create-namespace adds)."""
        await self._apply(phases.Step(phases.PRE_SYNC, wave, resources=(d.ref,)), [d])
        await self.recorded()

    async def recorded(self) -> None:
        """Until every ResourceApplied of the tiers applied so far is in the log."""
        if self._recording is not None:
            recording, self._recording = self._recording, None
            await recording

    async def _apply(
        self,
        step: phases.Step[ResourceRef],
        group: Sequence[DesiredResource],
        *,
        closing: Envelope | None = None,
    ) -> None:
        """Server-side apply ordinary resources of one kind rank at once; record what was done.

        `closing`: appended after the records, in their batch, if every apply succeeded.
        """
        if not group:
            return
        self.progress.extend(d.ref for d in group)
        outcomes = await asyncio.gather(
            *(
                self.applier._apply_bounded(self.kube, d, self.versions.get(d.ref), self.seen)
                for d in group
            ),
            return_exceptions=True,
        )
        done = [
            (d.ref, action, d.digest)
            for d, action in zip(group, outcomes, strict=True)
            if isinstance(action, str)
        ]
        before = self._recording
        failed = any(isinstance(outcome, BaseException) for outcome in outcomes)
        then = [closing] if closing is not None and not failed else []

        async def record() -> None:
            if before is not None:
                await before
            await self.applier._record_many(
                self.approval, self.apply_id, done, key="apply", wave=step.wave, then=then
            )

        self._recording = asyncio.create_task(record())
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                await self.recorded()  # what was applied is recorded before the failure
                raise outcome

    async def _create(self, step: phases.Step[ResourceRef], d: DesiredResource) -> _Hook:
        """Create the hook `d` afresh (its BeforeHookCreation policy deletes the old one first)."""
        placement = self.placements[d.ref]
        self.progress.append(d.ref)
        named = bool((d.resource.get("metadata") or {}).get("name"))
        try:
            if named and phases.BEFORE_HOOK_CREATION in placement.delete_policies:
                if await self.kube.get(d.ref) is not None:
                    await self._delete(step, d.ref, d.ref, phases.BEFORE_HOOK_CREATION)
            if named:
                live = await self.kube.get(d.ref)
                applied = await self.kube.apply(d.resource)
                obj = applied.object
                action = "created" if applied.created or live is None else "configured"
            else:
                obj = await self.kube.create(d.resource)
                action = "created"
        except KubeError as exc:
            code = f"{exc.status_code} " if exc.status_code else ""
            raise StepFailed(
                f"{_where(step)}: creating hook {d.ref}: {code}{exc.reason}: {exc.message}", d.ref
            ) from None
        ref = ref_of(obj)
        event = self.ctx.derive(
            ResourceApplied(
                apply_id=self.apply_id,
                ref=ref,
                action=action,
                digest=d.digest,
                wave=step.wave,
                hook=step.phase,
            ),
            cause=self.approval,
            key=f"hook:{step.phase}:{_key(d.ref)}",
        )
        await self.ctx.log.append(event)
        log.info("%s: %s hook %s %s", self.approval.app, step.phase, ref, action)
        return _Hook(template=d, ref=ref, policies=placement.delete_policies)

    async def _delete(
        self, step: phases.Step[ResourceRef], ref: ResourceRef, template: ResourceRef, policy: str
    ) -> None:
        """Delete a hook object and wait until it is gone; record HookDeleted."""
        await self.kube.delete(ref)
        deadline = time.monotonic() + max(self.timeout, self.ctx.settings.health_interval)
        while await self.kube.get(ref) is not None:
            if time.monotonic() >= deadline:
                raise StepFailed(
                    f"{_where(step)}: hook {ref} was not gone within {self.timeout:g}s of its "
                    f"deletion ({policy})",
                    ref,
                )
            await asyncio.sleep(self.ctx.settings.health_interval)
        await self.ctx.log.append(
            self.ctx.derive(
                HookDeleted(apply_id=self.apply_id, ref=ref, phase=step.phase, policy=policy),
                cause=self.approval,
                key=f"hook-deleted:{policy}:{step.phase}:{_key(template)}",
            )
        )

    async def _wait(
        self, step: phases.Step[ResourceRef], hooks: list[_Hook], wait_for_health: bool
    ) -> None:
        deadline = time.monotonic() + self.timeout
        announced = False
        while True:
            await self._check_hooks(step, hooks)
            pending: list[ResourceHealth] = []
            if wait_for_health:
                for verdict in await self._assess(step.resources):
                    if verdict.status == "Degraded":
                        raise StepFailed(
                            f"{_where(step)}: {verdict.ref} is Degraded: {verdict.message}",
                            verdict.ref,
                        )
                    if verdict.status in WAITS_FOR:
                        pending.append(verdict)
            running = [hook for hook in hooks if hook.status == "Running"]
            if not pending and not running:
                return
            if time.monotonic() >= deadline:
                what = [f"{v.ref} ({v.status}: {v.message})" for v in pending] + [
                    f"hook {h.ref} (running: {h.message})" for h in running
                ]
                culprit = pending[0].ref if pending else running[0].ref
                raise StepFailed(
                    f"{_where(step)}: not done within health_timeout_seconds "
                    f"({self.timeout:g}s): {'; '.join(what)}",
                    culprit,
                )
            if pending and not announced:
                announced = True
                await self.ctx.log.append(
                    self.ctx.derive(
                        WaveWaiting(
                            apply_id=self.apply_id,
                            phase=step.phase,
                            wave=step.wave,
                            waiting_for=pending,
                        ),
                        cause=self.approval,
                        key=f"wave-waiting:{step.phase}:{step.wave}",
                    )
                )
                log.info(
                    "%s: %s waits for %s",
                    self.approval.app,
                    _where(step),
                    ", ".join(str(v.ref) for v in pending),
                )
            await asyncio.sleep(self.ctx.settings.health_interval)

    async def _assess(self, refs: Sequence[ResourceRef]) -> list[ResourceHealth]:
        async def one(ref: ResourceRef) -> ResourceHealth:
            try:
                obj = await self.kube.get(ref)
            except KubeError as exc:
                # Not known yet: keep waiting (until the timeout) rather than judge.
                return ResourceHealth(ref=ref, status="Progressing", message=f"unreadable: {exc}")
            if obj is not None:
                self.seen[ref] = obj
            return health.assess(ref, obj)

        return list(await asyncio.gather(*(one(ref) for ref in refs)))

    async def _check_hooks(self, step: phases.Step[ResourceRef], hooks: list[_Hook]) -> None:
        """Record every hook that finished since the last check; a failed one fails the step."""
        for hook in hooks:
            if hook.status != "Running":
                continue
            try:
                obj = await self.kube.get(hook.ref)
            except KubeError as exc:
                hook.message = str(exc)
                continue
            status, message = phases.hook_status(hook.ref, obj)
            hook.message = message
            if status == "Running":
                continue
            hook.status = status
            await self.ctx.log.append(
                self.ctx.derive(
                    HookFinished(
                        apply_id=self.apply_id,
                        ref=hook.ref,
                        phase=step.phase,
                        wave=step.wave,
                        status=status,
                        message=message,
                    ),
                    cause=self.approval,
                    key=f"hook-finished:{step.phase}:{_key(hook.template.ref)}",
                )
            )
            log.info("%s: %s hook %s %s", self.approval.app, step.phase, hook.ref, status)
            if obj is not None and phases.deletes_after(hook.policies, status):
                policy = phases.HOOK_SUCCEEDED if status == "Succeeded" else phases.HOOK_FAILED
                try:
                    await self._delete(step, hook.ref, hook.template.ref, policy)
                except KubeError as exc:
                    log.warning("%s: cannot delete hook %s: %s", self.approval.app, hook.ref, exc)
            if status == "Failed":
                raise StepFailed(f"{_where(step)}: hook {hook.ref} failed: {message}", hook.ref)
