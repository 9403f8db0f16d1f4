"""Who approves a plan: the app's sync policy, self-heal, and a rollback's pin.

Pure. An auto-sync app's plans are approved by policy at once (by the planner,
`via` "policy", as Argo CD's automated sync); a manual app's plans wait for a
person, announced by ApprovalRequested with a one-line summary.

Self-heal: a plan made because drift was detected on an app with self_heal
(reason "drift") is approved by policy whatever the sync policy, with the
comment "self-heal: ...", so the log says why nobody was asked.

Rollback pin -- "auto-sync does not undo a rollback". The rule:

1. The app is *pinned* while its last ApplySucceeded is a rollback's
   (`rollback_of` set; a self-heal re-apply of the rolled-back bundle keeps
   it set, so self-heal never unpins) and no SyncRequested with `resume`
   was appended after that ApplySucceeded.
2. While pinned, a revision plan whose commit was applied to this app
   before (the revision rolled back from, re-detected or re-rendered for
   whatever reason: a re-registration, a poll after a restart) is not
   approved by policy: it waits for a person, like a manual app's plan.
3. A revision plan for a commit never applied to this app is a new commit:
   it moves the app forward under the usual policy, and its ApplySucceeded
   (no `rollback_of`) ends the pin.
4. `wake sync NAME --resume` appends SyncRequested(resume=True); every
   revision rendered after it moves forward under the usual policy.

Blocked: a plan with any resource in error (a dry run the API server
refused, an unreadable object, a bad annotation, an object another app owns)
is neither approved nor put to a person, whatever the policy: PlanBlocked
names every resource at fault, and nothing of the plan is applied. Applying
the rest would leave the cluster at a state Git never described.

Why not decide by the RevisionDetected's trigger: every trigger ("poll",
"webhook", "sync", "register") can re-detect the commit that was rolled
back from, and none says "the operator asked to move on". The commit's
novelty and the explicit resume do, and both are in the log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from events.envelope import Envelope
from events.payloads import (
    ApplySucceeded,
    ApprovalRequested,
    AppSpec,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    SyncRequested,
)
from services.planner.planning import summary
from services.resources.identity import errors_of

SELF_HEAL = "self-heal"

PIN_EVENT_TYPES = (ApplySucceeded.event_type, SyncRequested.event_type)


def needs_approval(
    spec: AppSpec,
    *,
    reason: str = "revision",
    pinned: RollbackPin | None = None,
    blocked: bool = False,
) -> bool:
    """Whether a person must approve this app's plan of `reason`.

    A manual app's plans, and a plan held by a rollback's pin; never a self-heal,
    never a blocked plan (nobody can approve it).
    """
    if reason == "drift" or blocked:
        return False
    return not spec.auto_sync or pinned is not None


@dataclass(frozen=True, slots=True)
class RollbackPin:
    """The app stays on `commit`, rolled back by the apply of a plan for `rollback_of`."""

    rollback_of: str
    commit: str


@dataclass(frozen=True, slots=True)
class Applied:
    """What the app's ApplySucceeded and SyncRequested events say about moving forward."""

    commits: frozenset[str]
    pin: RollbackPin | None


def fold_applied(applied: Applied, payload: object) -> Applied:
    """`applied` after one more ApplySucceeded or SyncRequested of the app: see rule 1."""
    if isinstance(payload, ApplySucceeded):
        commits = applied.commits
        if payload.commit not in commits:
            commits = commits | {payload.commit}
        pin = (
            RollbackPin(rollback_of=payload.rollback_of, commit=payload.commit)
            if payload.rollback_of
            else None
        )
        return Applied(commits=commits, pin=pin)
    if isinstance(payload, SyncRequested) and payload.resume:
        return Applied(commits=applied.commits, pin=None)
    return applied


def applied_history(events: Iterable[tuple[int, Envelope]]) -> Applied:
    """Fold the app's ApplySucceeded and SyncRequested events (in log order): see rule 1."""
    applied = Applied(commits=frozenset(), pin=None)
    for _, event in events:
        applied = fold_applied(applied, event.payload)
    return applied


def held_by_pin(applied: Applied, commit: str) -> RollbackPin | None:
    """The pin that keeps a revision plan for `commit` from auto-applying (rule 2), or None."""
    if applied.pin is None or commit not in applied.commits:
        return None
    return applied.pin


def decide(
    plan: PlanCreated, *, pinned: RollbackPin | None = None
) -> PlanApproved | ApprovalRequested | PlanBlocked:
    """The event that follows `plan`: blocked, approved by policy, or a request for approval.

    A plan with any resource in error is blocked, whatever else holds. Every
    other plan of an auto-sync app is approved, the empty one too: applying it
    confirms the live state matches and records the inventory again. A drift
    plan is a self-heal: approved. `pinned`: the plan is held by a rollback's
    pin (`held_by_pin`) and waits for a person.
    """
    counts = summary(plan.changes, plan.prune)
    errors = errors_of(plan.changes)
    if errors:
        return PlanBlocked(plan_id=plan.plan_id, errors=errors, summary=counts)
    if plan.reason == "drift":
        return PlanApproved(plan_id=plan.plan_id, via="policy", comment=f"{SELF_HEAL}: {counts}")
    if pinned is not None:
        return ApprovalRequested(
            plan_id=plan.plan_id,
            summary=f"{counts}; the app is rolled back to {pinned.commit[:12]} "
            f"(rollback of {pinned.rollback_of}): approve to move forward, "
            "or `wake sync --resume`",
        )
    if plan.needs_approval:
        return ApprovalRequested(plan_id=plan.plan_id, summary=counts)
    return PlanApproved(plan_id=plan.plan_id, via="policy", comment=counts)
