"""What the planner folds of an app, and per-app order by detection. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from events.envelope import new_event
from events.payloads import (
    ApplySucceeded,
    ManifestsRendered,
    PlanCreated,
    PlanSuperseded,
    RevisionDetected,
    SyncRequested,
)
from services.planner.tracking import AppState

A, B = "a" * 40, "b" * 40


def detected(commit: str):
    return new_event(
        RevisionDetected(
            repo_url="/r", ref="main", commit=commit, committed_at=datetime(2026, 1, 1, tzinfo=UTC)
        ),
        app="shop",
        actor="t",
    )


def rendered(cause, commit: str):
    payload = ManifestsRendered(
        commit=commit, bundle_digest="0" * 64, bundle_size=1, renderer="yaml", resources=[]
    )
    return new_event(payload, app="shop", actor="t", cause=cause)


def planned(plan_id: str, commit: str, desired_seq: int, reason: str = "revision"):
    payload = PlanCreated(
        plan_id=plan_id,
        commit=commit,
        bundle_digest="0" * 64,
        changes=[],
        reason=reason,
        desired_seq=desired_seq,
        needs_approval=True,
    )
    return new_event(payload, app="shop", actor="t")


def test_a_render_is_ordered_by_its_detection_and_an_older_one_is_moot() -> None:
    state = AppState()
    a, b = detected(A), detected(B)
    state.add(1, a)
    state.add(2, b)
    # B rendered and planned first (seq 4, 5); A's render lands later (seq 6)
    state.add(4, rendered(b, B))
    state.add(5, planned("plan-b", B, desired_seq=2))
    late_a = rendered(a, A)
    state.add(6, late_a)
    assert state.order_of_render(late_a, 6) == 1
    newer = state.newer_than(1)
    assert newer is not None and (newer.plan_id, newer.commit) == ("plan-b", B)
    assert state.newer_than(2) is None  # B itself, redelivered
    assert state.awaiting == {"plan-b": None} and state.last_plan_seq == 5
    # a self-heal plan orders nothing; a superseded would-be plan is known
    state.add(7, planned("heal", B, desired_seq=0, reason="drift"))
    state.add(
        8,
        new_event(
            PlanSuperseded(plan_id="x", superseded_by="plan-b", commit=A), app="shop", actor="t"
        ),
    )
    assert state.newest is not None and state.newest.plan_id == "plan-b"
    assert {"plan-b", "heal", "x"} <= state.plan_ids


def test_the_rollback_pin_is_folded_as_policy_reads_it() -> None:
    state = AppState()
    applied = ApplySucceeded(
        apply_id="ap", plan_id="p", commit=A, bundle_digest="0" * 64, inventory=[], rollback_of="r"
    )
    state.add(1, new_event(applied, app="shop", actor="t"))
    assert state.applied.pin is not None and A in state.applied.commits
    assert [r.apply.apply_id for r in state.applies] == ["ap"]
    state.add(2, new_event(SyncRequested(resume=True), app="shop", actor="t"))
    assert state.applied.pin is None
