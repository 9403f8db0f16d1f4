"""Fold an app's events into its plans and their status. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from events.envelope import Envelope
from events.payloads import (
    ApplyFailed,
    ApplyStarted,
    ApplySucceeded,
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
    PlanRejected.event_type,
    PlanSuperseded.event_type,
    ApplyStarted.event_type,
    ApplySucceeded.event_type,
    ApplyFailed.event_type,
    PlanBlocked.event_type,
)

# Status of a plan, in the order a plan moves through them.
AWAITING_APPROVAL = "awaiting-approval"
APPROVED = "approved"
REJECTED = "rejected"
SUPERSEDED = "superseded"
APPLYING = "applying"
APPLIED = "applied"
FAILED = "failed"
# Some resource of the plan cannot be applied: nothing of it is, nobody may approve it.
BLOCKED = "blocked"
DECIDED = {APPROVED, REJECTED, SUPERSEDED, APPLYING, APPLIED, FAILED, BLOCKED}


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
                status=AWAITING_APPROVAL,
            )
            continue
        plan_id = getattr(payload, "plan_id", None) or by_apply.get(
            getattr(payload, "apply_id", "")
        )
        view = plans.get(plan_id or "")
        if view is None:
            continue
        view.history.append((seq, event.type, event.actor))
        if isinstance(payload, PlanBlocked):
            view.status, view.blocked_by = BLOCKED, list(payload.errors)
        elif view.status == BLOCKED:
            continue  # a blocked plan stays blocked: nothing after it applies it
        elif isinstance(payload, ApprovalRequested):
            view.status = AWAITING_APPROVAL
        elif isinstance(payload, PlanApproved) and view.status == AWAITING_APPROVAL:
            view.status = APPROVED
            view.decided_by, view.decided_via, view.decided_at = (
                event.actor,
                payload.via,
                event.occurred_at,
            )
        elif isinstance(payload, PlanRejected) and view.status == AWAITING_APPROVAL:
            view.status = REJECTED
            view.decided_by, view.decided_via, view.decided_at = (
                event.actor,
                payload.via,
                event.occurred_at,
            )
            view.reason = payload.reason
        elif isinstance(payload, PlanSuperseded) and view.status == AWAITING_APPROVAL:
            view.status = SUPERSEDED
        elif isinstance(payload, ApplyStarted):
            by_apply[payload.apply_id] = view.plan_id
            view.status, view.apply_id = APPLYING, payload.apply_id
        elif isinstance(payload, ApplySucceeded):
            view.status = APPLIED
        elif isinstance(payload, ApplyFailed):
            view.status, view.error = FAILED, payload.error
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
