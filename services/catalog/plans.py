"""Fold an app's events into its plans and their status. Pure.

`next_status` is the one plan-status state machine: `fold_plans` (the CLI's
`wake plans`) and the projector's plans read model (services/projector/
folding.py) both move a plan's status with it, so they cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from events.envelope import Envelope
from events.payloads import (
    ApplyFailed,
    ApplyRetryScheduled,
    ApplyStarted,
    ApplySucceeded,
    ApprovalRefused,
    ApprovalRequested,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    PlanRejected,
    PlanSuperseded,
    ResourceError,
)

PLAN_EVENT_TYPES = (
    PlanCreated.event_type,
    ApprovalRequested.event_type,
    PlanApproved.event_type,
    ApprovalRefused.event_type,
    PlanRejected.event_type,
    PlanSuperseded.event_type,
    ApplyStarted.event_type,
    ApplySucceeded.event_type,
    ApplyFailed.event_type,
    PlanBlocked.event_type,
    ApplyRetryScheduled.event_type,
)

# Status of a plan, in the order a plan moves through them.
# Approved by policy in the same batch (no person asked): created, then approved.
CREATED = "created"
AWAITING_APPROVAL = "awaiting-approval"
APPROVED = "approved"
REJECTED = "rejected"
SUPERSEDED = "superseded"
APPLYING = "applying"
APPLIED = "applied"
FAILED = "failed"
# Its apply failed and another try is scheduled (ApplyRetryScheduled).
RETRYING = "retrying"
# Some resource of the plan cannot be applied: nothing of it is, nobody may approve it.
BLOCKED = "blocked"
DECIDED = {APPROVED, REJECTED, SUPERSEDED, APPLYING, APPLIED, FAILED, RETRYING, BLOCKED}
# Statuses in which nobody has decided yet: approval, rejection, supersession apply.
UNDECIDED = {CREATED, AWAITING_APPROVAL}


def next_status(status: str | None, payload: object) -> str | None:
    """A plan's status after one more event about it; None for no plan yet and no PlanCreated.

    - PlanCreated: awaiting approval if a person must approve, else created.
    - PlanBlocked: blocked, for good -- nothing after it applies the plan.
    - ApprovalRequested, PlanApproved, PlanRejected, PlanSuperseded: only while
      undecided (a late approval of an applied plan changes nothing).
    - ApprovalRefused (the planner refused the person who approved): an
      approved plan awaits approval again.
    - ApplyStarted, ApplySucceeded, ApplyFailed: applying, applied, failed;
      ApplyRetryScheduled after a failure: retrying.
    """
    if isinstance(payload, PlanCreated):
        return AWAITING_APPROVAL if payload.needs_approval else CREATED
    if status is None or status == BLOCKED:
        return status
    if isinstance(payload, PlanBlocked):
        return BLOCKED
    if isinstance(payload, ApprovalRefused) and status == APPROVED:
        return AWAITING_APPROVAL
    if status in UNDECIDED:
        if isinstance(payload, ApprovalRequested):
            return AWAITING_APPROVAL
        if isinstance(payload, PlanApproved):
            return APPROVED
        if isinstance(payload, PlanRejected):
            return REJECTED
        if isinstance(payload, PlanSuperseded):
            return SUPERSEDED
    if isinstance(payload, ApplyStarted):
        return APPLYING
    if isinstance(payload, ApplySucceeded):
        return APPLIED
    if isinstance(payload, ApplyFailed):
        return FAILED
    if isinstance(payload, ApplyRetryScheduled) and status == FAILED:
        return RETRYING
    return status


@dataclass
class PlanView:
    plan_id: str
    app: str
    seq: int
    created_at: datetime
    event: Envelope
    plan: PlanCreated
    status: str = APPROVED
    decided_by: str = ""
    decided_via: str = ""
    decided_at: datetime | None = None
    reason: str = ""
    apply_id: str = ""
    error: str = ""
    # Why the plan is blocked: each resource at fault with its error.
    blocked_by: list[ResourceError] = field(default_factory=list)
    history: list[tuple[int, str, str]] = field(default_factory=list)


def fold_plans(events: list[tuple[int, Envelope]]) -> dict[str, PlanView]:
    """Plans by id, from (seq, event) pairs in log order."""
    plans: dict[str, PlanView] = {}
    by_apply: dict[str, str] = {}
    for seq, event in events:
        payload = event.payload
        if isinstance(payload, PlanCreated):
            plans[payload.plan_id] = PlanView(
                plan_id=payload.plan_id,
                app=event.app,
                seq=seq,
                created_at=event.occurred_at,
                event=event,
                plan=payload,
                status=next_status(None, payload) or AWAITING_APPROVAL,
            )
            continue
        plan_id = getattr(payload, "plan_id", None) or by_apply.get(
            getattr(payload, "apply_id", "")
        )
        view = plans.get(plan_id or "")
        if view is None:
            continue
        view.history.append((seq, event.type, event.actor))
        before = view.status
        view.status = next_status(before, payload) or before
        if view.status == before and not isinstance(payload, ApplyStarted | ApplyFailed):
            continue
        if isinstance(payload, PlanBlocked):
            view.blocked_by = list(payload.errors)
        elif isinstance(payload, PlanApproved | PlanRejected):
            view.decided_by, view.decided_via, view.decided_at = (
                event.actor,
                payload.via,
                event.occurred_at,
            )
            if isinstance(payload, PlanRejected):
                view.reason = payload.reason
        elif isinstance(payload, ApprovalRefused):
            view.decided_by, view.decided_via, view.decided_at = "", "", None
            view.reason = f"approval by {payload.approver} refused: {payload.reason}"
        elif isinstance(payload, ApplyStarted) and view.status == APPLYING:
            by_apply[payload.apply_id] = view.plan_id
            view.apply_id = payload.apply_id
        elif isinstance(payload, ApplyFailed) and view.status == FAILED:
            view.error = payload.error
    return plans


def summary(plan: PlanCreated) -> str:
    """'2 to create, 1 to update, 1 to prune' (or 'no changes')."""
    counts: dict[str, int] = {}
    for change in plan.changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    if plan.prune:
        counts["prune"] = counts.get("prune", 0) + len(plan.prune)
    parts = [f"{counts[a]} to {a}" for a in ("create", "update", "prune") if counts.get(a)]
    errors = sum(1 for change in plan.changes if change.error)
    if errors:
        parts.append(f"{errors} with errors")
    return ", ".join(parts) or "no changes"


def blocked_line(plan_id: str, errors: list[ResourceError]) -> str:
    """`plan X blocked: Deployment ns/web: dry run refused: 422 Invalid: ...; ...`"""
    return f"plan {plan_id[:8]} blocked: " + "; ".join(map(str, errors))
