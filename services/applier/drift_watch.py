"""Checking live objects against the last applied bundle on an interval (shell around `drift.py`).

At start and every `drift_interval` seconds after, for each registered app whose last apply
succeeded and none is in flight (its last ApplySucceeded is later than its
last ApplyStarted and ApplyFailed): load the bundle of that ApplySucceeded,
prepare it as the apply did, GET each resource and dry-run its apply on the
app's destination cluster, and let `drift` say what drifted. News is appended
as DriftDetected(bundle_digest, resources, self_heal=spec.self_heal); the
planner turns a self-healing one into a plan.

What was last seen per apply is kept in memory (an empty set too, so a drift
that was undone by hand and comes back is news again); after a restart it
starts from the app's last DriftDetected if that came after the last apply.
DriftDetected derives from the ApplySucceeded with the drift set's digest as
key, so two replicas seeing the same drift append it once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

import msgspec

from events.bundle import InvalidBundle
from events.payloads import (
    ApplyFailed,
    ApplyStarted,
    ApplySucceeded,
    AppSpec,
    DriftDetected,
    DriftedResource,
)
from services.applier import drift
from services.catalog.lookup import load_registry
from services.resources.loading import DesiredResource, load_bundle, prepare_all
from services.resources.phases import is_ordinary
from services.wiring import metrics, telemetry
from services.wiring.eventlog import BundleCorrupt, BundleNotFound, StoredEvent
from services.wiring.kube import Clusters, Kube, KubeConfigError, KubeError, Resource
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

CONCURRENT_REQUESTS = 8


class DriftWatch:
    """The drift checks of one applier."""

    def __init__(self, ctx: ServiceContext, clusters: Clusters) -> None:
        self.ctx = ctx
        self.clusters = clusters
        # app -> (apply id, the drift set last seen for that apply)
        self._seen: dict[str, tuple[str, list[DriftedResource]]] = {}
        self._limit = asyncio.Semaphore(CONCURRENT_REQUESTS)

    async def run(self) -> None:
        """Check every app at once, then each drift_interval, until ctx.stop.

        The first round runs at start: a hand edit made while no applier ran
        is news now, not a whole interval later. One failing app stops no other.
        """
        while not self.ctx.stop.is_set():
            try:
                await self.check_all()
            except Exception:
                # The log or a cluster hiccupped: the next round tries again.
                log.exception("drift checks failed this round")
            if await self.ctx.wait_stop(self.ctx.settings.drift_interval):
                return

    async def check_all(self) -> None:
        registry, _ = await load_registry(self.ctx.log)
        for app, application in registry.apps.items():
            if self.ctx.stop.is_set():
                return
            try:
                await self.check(app, application.spec)
            except (KubeError, BundleNotFound, BundleCorrupt, InvalidBundle) as exc:
                log.warning("%s: drift check failed: %s", app, exc)

    async def check(self, app: str, spec: AppSpec) -> DriftDetected | None:
        """Check `app` once; the DriftDetected appended, or None (no news, or nothing to check)."""
        succeeded = await self.ctx.log.last_event(app, ApplySucceeded.event_type)
        if succeeded is None:
            return None
        for other in (ApplyStarted.event_type, ApplyFailed.event_type):
            later = await self.ctx.log.last_event(app, other)
            if later is not None and later.seq > succeeded.seq:
                return None  # in flight, or the cluster holds a failed apply's half
        # Each check is a trace of its own, linked to the apply it compares with: drift
        # found days later never grows that apply's trace.
        with telemetry.new_trace(
            "check drift", link=succeeded.event.traceparent, **{"wake.app": app}
        ):
            return await self._check(app, spec, succeeded)

    async def _check(self, app: str, spec: AppSpec, succeeded: StoredEvent) -> DriftDetected | None:
        applied = succeeded.event.payload
        assert isinstance(applied, ApplySucceeded)
        try:
            kube = await self.clusters.get(spec.destination_context)
        except KubeConfigError as exc:
            log.warning("%s: no drift check: %s", app, exc)
            return None
        bundle = await load_bundle(self.ctx.log, applied.bundle_digest, app=app)
        desired = await prepare_all(kube, bundle, app=app, default_namespace=spec.namespace)
        # Hooks come and go by their delete policies, skipped resources are never
        # applied: neither can drift.
        desired = [d for d in desired if is_ordinary(d.resource, d.ref)]
        with metrics.timed(metrics.DRY_RUN_SECONDS, purpose="drift"):
            found = await asyncio.gather(*(self._drifted(kube, d, spec) for d in desired))
        current = drift.drift_set(found)
        seen_apply, previous = self._seen.get(app, ("", []))
        if seen_apply != applied.apply_id:
            previous = await self._last_reported(app, succeeded)
        self._seen[app] = (applied.apply_id, current)
        if not drift.is_news(current, previous):
            return None
        detected = DriftDetected(
            bundle_digest=applied.bundle_digest, resources=current, self_heal=spec.self_heal
        )
        key = hashlib.sha256(msgspec.json.encode(current)).hexdigest()
        await self.ctx.log.append(self.ctx.derive(detected, cause=succeeded.event, key=key))
        log.info(
            "%s: drift from apply %s: %s",
            app,
            applied.apply_id,
            ", ".join(
                f"{d.ref} deleted" if d.deleted else f"{d.ref} {' '.join(d.fields)}"
                for d in current
            ),
        )
        return detected

    async def _last_reported(self, app: str, succeeded: StoredEvent) -> list[DriftedResource]:
        last = await self.ctx.log.last_event(app, DriftDetected.event_type)
        if last is None or last.seq < succeeded.seq:
            return []
        payload = last.event.payload
        return payload.resources if isinstance(payload, DriftDetected) else []

    async def _drifted(
        self, kube: Kube, d: DesiredResource, spec: AppSpec
    ) -> DriftedResource | None:
        if d.error is not None or not d.served:
            return None
        async with self._limit:
            live: Resource | None = await kube.get(d.ref)
            if live is None:
                return drift.drifted(d.ref, None, None, spec.ignore_differences)
            try:
                dry_run = (await kube.apply(d.resource, dry_run=True)).object
            except KubeError as exc:
                if exc.status_code == 0:
                    raise
                log.info("cannot tell drift of %s: %s", d.ref, exc)
                dry_run = None
        return drift.drifted(d.ref, dry_run, live, spec.ignore_differences)
