"""The retry decision, pure: Argo CD's backoff, and when a due retry may run."""

from __future__ import annotations

from datetime import timedelta

from events.envelope import Envelope, derived_event_id, new_event, now
from events.payloads import (
    ApplyFailed,
    ApplyRetryScheduled,
    ApplyStarted,
    ApplySucceeded,
    PlanApproved,
    PlanCreated,
    PlanSuperseded,
)
from services.applier import admission
from services.applier.retrying import Defer, RetryHistory, RetryPolicy, decide
from tests.planner.scenario import commit_of

BUNDLE = "0" * 64


def test_the_backoff_doubles_up_to_its_cap_and_stops_after_the_limit():
    policy = RetryPolicy(limit=5, backoff=5.0, factor=2.0, max_backoff=30.0)
    assert [policy.delay_after(n) for n in range(1, 7)] == [5.0, 10.0, 20.0, 30.0, 30.0, None]
    assert RetryPolicy(limit=0).delay_after(1) is None


class Log:
    """One app's plan and apply events, with their sequence numbers."""

    def __init__(self) -> None:
        self.events: list[tuple[int, Envelope]] = []

    def add(self, payload, cause: Envelope | None = None, **kwargs) -> Envelope:
        event = new_event(payload, app="shop", actor="t", cause=cause, **kwargs)
        self.events.append((len(self.events) + 1, event))
        return event

    def plan(self, label: str, reason: str = "revision") -> tuple[Envelope, Envelope]:
        created = self.add(
            PlanCreated(
                plan_id=label,
                commit=commit_of(label),
                bundle_digest=BUNDLE,
                changes=[],
                reason=reason,
            )
        )
        return created, self.add(PlanApproved(plan_id=label), cause=created)

    def failed_apply(self, approval: Envelope, plan_id: str, *, due_in: float) -> Envelope:
        started = self.add(
            ApplyStarted(
                apply_id=derived_event_id(approval.event_id, ApplyStarted.event_type),
                plan_id=plan_id,
                commit=commit_of(plan_id),
                bundle_digest=BUNDLE,
            ),
            cause=approval,
            event_id=derived_event_id(approval.event_id, ApplyStarted.event_type),
        )
        failed = self.add(
            ApplyFailed(apply_id=started.event_id, plan_id=plan_id, error="boom"), cause=approval
        )
        return self.add(
            ApplyRetryScheduled(
                plan_id=plan_id,
                after_apply_id=started.event_id,
                attempt=2,
                due_at=now() + timedelta(seconds=due_in),
                delay_seconds=due_in,
                approval_id=approval.event_id,
            ),
            cause=failed,
        )

    def decide(self, retry: Envelope, at_offset: float = 0.0):
        history = RetryHistory()
        for seq, event in self.events:
            history.add(seq, event)
        return decide(
            history,
            retry,
            apply_id=derived_event_id(retry.event_id, ApplyStarted.event_type),
            now=now() + timedelta(seconds=at_offset),
            apply_timeout=300.0,
        )


def test_a_retry_waits_until_due_then_starts():
    log = Log()
    _, approval = log.plan("v1")
    retry = log.failed_apply(approval, "v1", due_in=10.0)
    deferred = log.decide(retry)
    assert isinstance(deferred, Defer) and 9.0 < deferred.seconds <= 10.0
    assert isinstance(log.decide(retry, at_offset=11.0), admission.Start)


def test_a_newer_approved_plan_cancels_a_retry_but_a_waiting_or_self_heal_plan_does_not():
    log = Log()
    _, approval = log.plan("v1")
    retry = log.failed_apply(approval, "v1", due_in=0.0)
    log.add(
        PlanCreated(
            plan_id="heal", commit=commit_of("v0"), bundle_digest=BUNDLE, changes=[], reason="drift"
        )
    )
    log.add(PlanApproved(plan_id="heal"))
    log.add(
        PlanCreated(
            plan_id="v2",
            commit=commit_of("v2"),
            bundle_digest=BUNDLE,
            changes=[],
            needs_approval=True,
        )
    )
    assert isinstance(log.decide(retry), admission.Start)
    log.add(PlanApproved(plan_id="v2", via="cli"))
    skipped = log.decide(retry)
    assert isinstance(skipped, admission.Skip) and "newer plan v2" in skipped.reason


def test_a_retry_of_a_superseded_or_already_retried_plan_is_skipped():
    log = Log()
    _, approval = log.plan("v1")
    retry = log.failed_apply(approval, "v1", due_in=0.0)
    log.add(PlanSuperseded(plan_id="v1", superseded_by="v2"))
    assert isinstance(log.decide(retry), admission.Skip)

    log = Log()
    _, approval = log.plan("v1")
    retry = log.failed_apply(approval, "v1", due_in=0.0)
    other = log.add(
        ApplyStarted(apply_id="again", plan_id="v1", commit=commit_of("v1"), bundle_digest=BUNDLE)
    )
    log.add(
        ApplySucceeded(
            apply_id="again",
            plan_id="v1",
            commit=commit_of("v1"),
            bundle_digest=BUNDLE,
            inventory=[],
        ),
        cause=other,
    )
    skipped = log.decide(retry)
    assert isinstance(skipped, admission.Skip) and "tried again by apply again" in skipped.reason


def test_a_redelivered_retry_resumes_or_skips_its_own_apply():
    log = Log()
    _, approval = log.plan("v1")
    retry = log.failed_apply(approval, "v1", due_in=0.0)
    apply_id = derived_event_id(retry.event_id, ApplyStarted.event_type)
    log.add(
        ApplyStarted(
            apply_id=apply_id, plan_id="v1", commit=commit_of("v1"), bundle_digest=BUNDLE, attempt=2
        ),
        cause=retry,
        event_id=apply_id,
    )
    assert isinstance(log.decide(retry), admission.Resume)
    log.add(ApplyFailed(apply_id=apply_id, plan_id="v1", error="boom", attempt=2), cause=retry)
    assert isinstance(log.decide(retry), admission.Skip)
