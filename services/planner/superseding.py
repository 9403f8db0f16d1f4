"""Which plans a new plan supersedes: those of the same app still awaiting approval.

Pure. A plan awaits approval from its PlanCreated until it is approved,
rejected, superseded or its apply starts. A newer plan makes it moot -- a
person approving it later would apply an older revision -- so the planner
appends PlanSuperseded for it together with the new plan. Self-heal plans
(reason "drift") supersede nothing: they restore what is applied, and a
revision waiting for a person still waits.
"""

from __future__ import annotations

from collections.abc import Iterable

from events.envelope import Envelope
from events.payloads import (
    ApplyStarted,
    PlanApproved,
    PlanCreated,
    PlanRejected,
    PlanSuperseded,
)

PLAN_EVENT_TYPES = (
    PlanCreated.event_type,
    PlanApproved.event_type,
    PlanRejected.event_type,
    PlanSuperseded.event_type,
    ApplyStarted.event_type,
)


def plan_ids(events: Iterable[tuple[int, Envelope]]) -> set[str]:
    """Every plan id the app's PlanCreated events carry."""
    return {e.payload.plan_id for _, e in events if isinstance(e.payload, PlanCreated)}


def awaiting_approval(events: Iterable[tuple[int, Envelope]]) -> list[str]:
    """Plan ids still awaiting approval, in log order, from the app's PLAN_EVENT_TYPES events."""
    waiting: dict[str, None] = {}
    for _, event in events:
        payload = event.payload
        if isinstance(payload, PlanCreated):
            if payload.needs_approval:
                waiting[payload.plan_id] = None
        elif isinstance(payload, PlanApproved | PlanRejected | PlanSuperseded | ApplyStarted):
            waiting.pop(payload.plan_id, None)
    return list(waiting)


def superseded_by(new: PlanCreated, events: Iterable[tuple[int, Envelope]]) -> list[PlanSuperseded]:
    """The PlanSuperseded events `new` brings: one per other plan awaiting approval."""
    return superseded_among(new, awaiting_approval(events))


def superseded_among(new: PlanCreated, awaiting: Iterable[str]) -> list[PlanSuperseded]:
    """The PlanSuperseded events `new` brings, given the plan ids awaiting approval."""
    if new.reason == "drift":
        return []
    return [
        PlanSuperseded(plan_id=plan_id, superseded_by=new.plan_id)
        for plan_id in awaiting
        if plan_id != new.plan_id
    ]
