"""Who approves a plan: the app's sync policy.

Pure. An auto-sync app's plans are approved by policy at once (actor
"policy", as Argo CD's automated sync); a manual app's plans wait for a
person, announced by ApprovalRequested with a one-line summary.
"""

from __future__ import annotations

from events.payloads import ApprovalRequested, AppSpec, PlanApproved, PlanCreated
from services.planner.planning import summary

POLICY_ACTOR = "policy"


def needs_approval(spec: AppSpec) -> bool:
    """Whether a person must approve this app's plans."""
    return not spec.auto_sync


def decide(plan: PlanCreated) -> PlanApproved | ApprovalRequested:
    """The event that follows `plan`: approved by policy, or a request for approval.

    Every plan of an auto-sync app is approved, the empty one too: applying it
    confirms the live state matches and records the inventory again.
    """
    if plan.needs_approval:
        return ApprovalRequested(plan_id=plan.plan_id, summary=summary(plan.changes, plan.prune))
    return PlanApproved(
        plan_id=plan.plan_id, via="policy", comment=summary(plan.changes, plan.prune)
    )
