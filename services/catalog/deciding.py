"""Approving or rejecting a plan: read, decide, append on the position read.

One core for every front door (`wake approve|reject`, the console's API): if
anything lands on the app meanwhile (another person's decision, a superseding
plan), the append conflicts and the decision is taken again on the new state.
The whole app's position, not one subject: what matters here spans several
types (PlanCreated, PlanApproved, PlanRejected, PlanSuperseded).
"""

from __future__ import annotations

from typing import Literal

from events import new_event
from events.envelope import Envelope
from events.payloads import PlanApproved, PlanRejected
from services.catalog import lookup
from services.catalog.plans import AWAITING_APPROVAL, BLOCKED, PlanView
from services.wiring import telemetry
from services.wiring.conflicts import after_conflict
from services.wiring.eventlog import ConcurrencyConflict, EventLog

Decision = Literal["approve", "reject"]


class DecisionRefused(Exception):
    """The plan cannot be decided now; the message says why (`status`: an HTTP status)."""

    def __init__(self, message: str, *, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


async def decide(
    log: EventLog,
    plan_id: str,
    decision: Decision,
    *,
    actor: str,
    via: Literal["cli", "api", "chat"],
    reason: str = "",
    allowed: object = None,
) -> tuple[Envelope, int, PlanView]:
    """Append `actor`'s decision on plan `plan_id`; return it, its sequence and the plan.

    `allowed(app) -> bool`, if given, is asked before anything is appended (a caller
    that may decide only for some apps); False refuses with status 403.
    """
    for attempt in range(5):
        try:
            view, position = await lookup.find_plan(log, plan_id)
        except lookup.PlanNotFound as exc:
            raise DecisionRefused(str(exc), status=404) from None
        if callable(allowed) and not allowed(view.app):
            raise DecisionRefused(f"you may not decide plans of {view.app}", status=403)
        verb = "approved" if decision == "approve" else "rejected"
        if view.status == BLOCKED:
            raise DecisionRefused(
                f"plan {plan_id} of {view.app} is blocked and cannot be {verb}: "
                "nothing of it is applied because of "
                + "; ".join(map(str, view.blocked_by))
                + ". Fix the repository: its next commit is planned again"
            )
        if view.status != AWAITING_APPROVAL:
            by = f" by {view.decided_by}" if view.decided_by else ""
            raise DecisionRefused(
                f"plan {plan_id} of {view.app} is {view.status}{by}, not awaiting approval"
            )
        payload = (
            PlanApproved(plan_id=plan_id, via=via)
            if decision == "approve"
            else PlanRejected(plan_id=plan_id, reason=reason, via=via)
        )
        # The approval's own trace, linked to the plan's.
        telemetry.add_link(view.event.traceparent)
        # Keyed by who decides and where the app's log stood: a retried publish is
        # stored once, and an approval after a refused one (by someone else, or
        # after the approvers changed) is a new event.
        event = new_event(
            payload,
            app=view.app,
            actor=actor,
            traceparent=telemetry.traceparent(),
            cause=view.event,
            key=f"{actor}@{position}",
        )
        try:
            appended = await log.append(event, expected_last_seq=position)
        except ConcurrencyConflict:
            await after_conflict(attempt)
            continue
        return event, appended.seq, view
    raise DecisionRefused(f"plan {plan_id}: the app kept changing; try again")
