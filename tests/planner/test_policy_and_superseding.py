"""The planner's policy (self-heal, rollback pin) and which plans a new plan supersedes."""

from __future__ import annotations

import hashlib

from events.envelope import Envelope, new_event
from events.payloads import (
    ApplyStarted,
    ApplySucceeded,
    ApprovalRequested,
    Payload,
    PlanApproved,
    PlanCreated,
    PlanRejected,
    SyncRequested,
)
from services.planner import policy
from services.planner.superseding import awaiting_approval, superseded_by

DIGEST = "a" * 64


def commit(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


def ev(payload: Payload) -> Envelope:
    return new_event(payload, app="shop", actor="tests")


def history(*payloads: Payload) -> list[tuple[int, Envelope]]:
    return [(seq, ev(p)) for seq, p in enumerate(payloads, start=1)]


def succeeded(label: str, rollback_of: str | None = None) -> ApplySucceeded:
    return ApplySucceeded(
        apply_id=f"apply-{label}",
        plan_id=f"plan-{label}",
        commit=commit(label),
        bundle_digest=DIGEST,
        inventory=[],
        rollback_of=rollback_of,
    )


def created(plan_id: str, *, needs_approval: bool = True, reason: str = "revision") -> PlanCreated:
    return PlanCreated(
        plan_id=plan_id,
        commit=commit(plan_id),
        bundle_digest=DIGEST,
        changes=[],
        needs_approval=needs_approval,
        reason=reason,
    )


def test_an_app_is_pinned_by_a_rollback_until_a_resume_or_a_forward_apply() -> None:
    rolled_back = policy.applied_history(
        history(succeeded("v1"), succeeded("v2"), succeeded("v1", rollback_of="apply-v1"))
    )
    assert rolled_back.pin == policy.RollbackPin(rollback_of="apply-v1", commit=commit("v1"))
    # v2, applied before the rollback, is held; v3, never applied, moves forward.
    assert policy.held_by_pin(rolled_back, commit("v2")) == rolled_back.pin
    assert policy.held_by_pin(rolled_back, commit("v3")) is None

    resumed = policy.applied_history(
        history(
            succeeded("v2"),
            succeeded("v1", rollback_of="apply-v1"),
            SyncRequested(resume=False),
            SyncRequested(resume=True),
        )
    )
    assert resumed.pin is None
    assert policy.held_by_pin(resumed, commit("v2")) is None

    forward = policy.applied_history(
        history(succeeded("v1", rollback_of="apply-v1"), succeeded("v3"))
    )
    assert forward.pin is None


def test_a_self_heal_keeps_the_pin() -> None:
    applied = policy.applied_history(
        history(
            succeeded("v2"),
            succeeded("v1", rollback_of="apply-v1"),
            succeeded("v1", rollback_of="apply-v1"),  # the self-heal's re-apply
        )
    )
    assert policy.held_by_pin(applied, commit("v2")) is not None


def test_decisions_of_the_policy() -> None:
    auto = created("p1", needs_approval=False)
    assert isinstance(policy.decide(auto), PlanApproved)
    manual = policy.decide(created("p2"))
    assert isinstance(manual, ApprovalRequested)
    heal = policy.decide(created("p3", needs_approval=False, reason="drift"))
    assert isinstance(heal, PlanApproved)
    assert heal.comment.startswith("self-heal")
    pin = policy.RollbackPin(rollback_of="apply-v1", commit=commit("v1"))
    held = policy.decide(auto, pinned=pin)
    assert isinstance(held, ApprovalRequested)
    assert "rolled back" in held.summary


def test_plans_awaiting_approval_are_superseded_by_a_newer_plan() -> None:
    events = history(
        created("old-approved"),
        PlanApproved(plan_id="old-approved"),
        created("old-rejected"),
        PlanRejected(plan_id="old-rejected", reason="no"),
        created("auto", needs_approval=False),
        ApplyStarted(apply_id="a", plan_id="auto", commit=commit("x"), bundle_digest=DIGEST),
        created("waiting-1"),
        created("waiting-2"),
    )
    assert awaiting_approval(events) == ["waiting-1", "waiting-2"]
    new = created("new")
    assert [(s.plan_id, s.superseded_by) for s in superseded_by(new, events)] == [
        ("waiting-1", "new"),
        ("waiting-2", "new"),
    ]


def test_a_self_heal_plan_supersedes_nothing() -> None:
    events = history(created("waiting"))
    assert superseded_by(created("heal", reason="drift"), events) == []
