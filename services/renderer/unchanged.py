"""Does a new render leave the app where it already is? The renderer's decision, pure.

git-watcher detects a commit when anything the app's last render read
changed (`git_watcher/changes.py`); often the render still comes out the
same (a comment in a base, a field another overlay patches away). Such a
commit moves the app's revision and plans nothing, as Argo CD shows an app
Synced at the new revision when its manifests did not change.

The rule. A render of a revision is *unchanged* -- its ManifestsRendered
carries `unchanged_from`, the planner plans nothing, the read models show
the app synced at the new commit -- when all of these hold:

1. the revision was found by a poll or a webhook. A `sync` is a person
   asking to apply (a failed app, a drifted one); a `register` follows a new
   or changed spec (namespace, renderer options...): both are planned.
2. The app's previous ManifestsRendered has exactly these resources: the
   same refs with the same content digests, in the same canonical order.
   Where a resource came from (file, line) does not matter; what is sent to
   the cluster does. (A spec change always brings a `register` detection,
   planned by rule 1, so a render under an older spec never stands in.)
3. That render's origin -- its own `unchanged_from` if it was unchanged
   too, else its commit -- is the commit of the app's last ApplySucceeded,
   and that apply was not a rollback's (a rolled-back app is at another
   bundle: the new commit is planned, under the rollback pin's rules).
4. That ApplySucceeded applied the app's last plan: no plan came after it
   (one awaiting approval, applying, failed, or a drift heal in flight),
   so the app is synced at that bundle. After a failed apply the identical
   bundle is planned again.
5. No drift was seen since that apply: an out-of-sync app gets a plan for
   the new commit (which puts the live objects back), as Argo CD's automated
   sync does when a new revision arrives.

Anything else is planned as usual. The shell follows what this needs from
the log (`Followed`, folded once and kept current: nothing is read per
render), as far as the revision it renders at least, so a race the log
resolves later -- a rollback requested meanwhile -- is decided by what the
log held then; the planner then simply does not plan the unchanged revision.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from events.envelope import Envelope
from events.payloads import (
    ApplySucceeded,
    AppSpec,
    DriftDetected,
    ManifestsRendered,
    PlanCreated,
    RenderedResource,
)
from services.catalog.registry import LIFECYCLE_TYPES, fold_spec

# What the renderer follows of each app: its spec, and where it stands.
FOLLOWED_TYPES = (
    *LIFECYCLE_TYPES,
    ManifestsRendered.event_type,
    ApplySucceeded.event_type,
    PlanCreated.event_type,
    DriftDetected.event_type,
)


@dataclass(frozen=True, slots=True)
class Standing:
    """Where the app stands, from the log, as this decision needs it.

    `last_render`: its last ManifestsRendered;
    `last_applied`: its last ApplySucceeded; `last_plan_id`: the plan id of
    its last PlanCreated; `drifted`: a DriftDetected naming resources came
    after that ApplySucceeded.
    """

    last_render: ManifestsRendered | None
    last_applied: ApplySucceeded | None
    last_plan_id: str | None
    drifted: bool = False


def content(resources: list[RenderedResource]) -> list[tuple[object, str]]:
    """What a bundle sends to the cluster: each resource's identity and content digest."""
    return [(resource.ref, resource.digest) for resource in resources]


def unchanged_from(
    *, trigger: str, resources: list[RenderedResource], standing: Standing
) -> str | None:
    """The commit whose applied bundle this render equals (rules 1-5), or None to plan it."""
    if trigger not in ("poll", "webhook"):
        return None
    previous = standing.last_render
    applied = standing.last_applied
    if previous is None or applied is None:
        return None
    if content(previous.resources) != content(resources):
        return None
    origin = previous.unchanged_from or previous.commit
    if applied.commit != origin or applied.rollback_of is not None:
        return None
    if applied.plan_id != standing.last_plan_id or standing.drifted:
        return None
    return origin


@dataclass
class Followed:
    """One app's spec and standing, folded event by event in log order.

    Keeps only what `unchanged_from` compares: the last render's content
    (not where each resource came from), the last apply without its
    inventory, the last plan's id -- not the events themselves, for every app.
    """

    spec: AppSpec | None = None
    last_render: ManifestsRendered | None = None
    last_applied: ApplySucceeded | None = None
    last_applied_seq: int = 0
    last_plan_id: str | None = None
    drift_seq: int = 0

    def add(self, seq: int, event: Envelope) -> None:
        payload = event.payload
        if event.type in LIFECYCLE_TYPES:
            self.spec = fold_spec(self.spec, event)
        elif isinstance(payload, ManifestsRendered):
            resources = [msgspec.structs.replace(r, source="") for r in payload.resources]
            self.last_render = msgspec.structs.replace(payload, resources=resources, inputs=[])
        elif isinstance(payload, ApplySucceeded):
            self.last_applied = msgspec.structs.replace(payload, inventory=[])
            self.last_applied_seq = seq
        elif isinstance(payload, PlanCreated):
            self.last_plan_id = payload.plan_id
        elif isinstance(payload, DriftDetected):
            # The last drift check is what counts: one that found nothing clears it.
            self.drift_seq = seq if payload.resources else 0

    def standing(self) -> Standing:
        return Standing(
            last_render=self.last_render,
            last_applied=self.last_applied,
            last_plan_id=self.last_plan_id,
            drifted=self.drift_seq > self.last_applied_seq,
        )
