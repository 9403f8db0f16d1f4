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

Anything else is planned as usual. The shell reads what this needs from the
log (last message per subject) when it renders, so a race the log resolves
later -- a rollback requested meanwhile -- is decided by what the log held
then; the planner then simply does not plan the unchanged revision.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.payloads import ApplySucceeded, ManifestsRendered, RenderedResource


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
