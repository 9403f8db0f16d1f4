"""Retries of a failed apply: when the next try is due, and whether a due one may run. Pure.

The backoff is Argo CD's: after failed try n (1 for the approval's own apply),
the next is due after `backoff * factor ** (n - 1)` seconds, capped at
`max_backoff`, while n <= `limit` (the number of retries, 0: none). The
applier appends an ApplyRetryScheduled together with the ApplyFailed; the
applier's durable consumer holds that event until it is due (a nak with that
delay), so a retry survives an applier restart and is run by whichever
replica gets it -- no timer lives only in one process's memory.

A retry delivered before it is due is handed back at once (`not_due`),
before the shell reads anything of the app's history. When it is due,
`decide` says what to do, like `admission.decide` does for an approval:

1. Its own apply (the same derived apply id: a redelivery) is resumed if
   unfinished, expired if its applier died, or skipped if finished.
2. A rejected or superseded plan is not retried.
3. A newer plan that was approved, or whose apply started, cancels the
   retry: applying an older plan after it would take the cluster back in
   time. "Newer" is by `admission.order_of` (where the plan's revision was
   detected, or its rollback requested), never by the PlanCreated's place in
   the log; a self-heal plan
   (reason "drift") re-applies what was applied already, so it cancels nothing.
4. Another apply of this plan started after the failed one (a second retry
   chain, an approval applied meanwhile): this retry is moot.
5. Not due yet: `Defer` for the seconds left.
6. Another apply of the app in flight: wait; one presumed dead is expired.
7. Otherwise start, conditionally on the last ApplyStarted seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events.envelope import Envelope
from events.payloads import ApplyRetryScheduled, AppSpec, PlanApproved
from services.applier import admission

HISTORY_TYPES = (*admission.HISTORY_TYPES, PlanApproved.event_type)

# A retry delivered this close before its due time runs: timers are not exact,
# and a second nak for a few milliseconds would only cost a delivery.
EARLY_TOLERANCE = timedelta(milliseconds=50)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """An app's retry settings: the number of retries and the backoff between tries."""

    limit: int = 5
    backoff: float = 5.0
    factor: float = 2.0
    max_backoff: float = 180.0

    @classmethod
    def of(cls, spec: AppSpec) -> RetryPolicy:
        return cls(
            limit=spec.retry_limit,
            backoff=spec.retry_backoff_seconds,
            factor=spec.retry_backoff_factor,
            max_backoff=spec.retry_max_backoff_seconds,
        )

    def delay_after(self, attempt: int) -> float | None:
        """Seconds from failed try `attempt` (1-based) to the next; None if it was the last."""
        if attempt > self.limit:
            return None
        return max(0.0, min(self.backoff * self.factor ** (attempt - 1), self.max_backoff))


@dataclass
class RetryHistory(admission.AppHistory):
    """The app's plans and applies, and when each plan was first approved (its seq)."""

    approved: dict[str, int] = field(default_factory=dict)

    def add(self, seq: int, event: Envelope) -> None:
        super().add(seq, event)
        payload = event.payload
        if isinstance(payload, PlanApproved):
            self.approved.setdefault(payload.plan_id, seq)


@dataclass(frozen=True, slots=True)
class Defer:
    """The retry is not due: hand it back for `seconds`."""

    seconds: float


def not_due(retry: ApplyRetryScheduled, now: datetime) -> Defer | None:
    """`Defer` for the time left if the retry is not due yet.

    The shell asks this before it reads the app's history: a retry delivered
    early (just scheduled) costs no read of the log.
    """
    if now + EARLY_TOLERANCE < retry.due_at:
        return Defer((retry.due_at - now).total_seconds())
    return None


RetryDecision = (
    admission.Start | admission.Resume | admission.Wait | admission.Skip | admission.Expire | Defer
)


def decide(
    history: RetryHistory,
    retry: Envelope,
    *,
    apply_id: str,
    now: datetime,
    apply_timeout: float,
) -> RetryDecision:
    """What to do with a delivered ApplyRetryScheduled (see the module docstring).

    `apply_id` is the id the retry's ApplyStarted has (or would have).
    """
    payload = retry.payload
    assert isinstance(payload, ApplyRetryScheduled)
    plan_id = payload.plan_id
    plan = history.plans.get(history.plan_ids.get(plan_id, ""))
    if plan is None:
        return admission.Skip(f"retry {retry.event_id}: no PlanCreated {plan_id} is in the log")

    def expired(started: admission.Stored) -> bool:
        return now > admission.deadline(started.event, apply_timeout) + admission.EXPIRY_GRACE

    mine = history.starts.get(apply_id)
    if mine is not None:
        if apply_id in history.finished:
            return admission.Skip(f"retry {payload.attempt} of plan {plan_id} already finished")
        if expired(mine):
            return admission.Expire(mine, mine=True)
        return admission.Resume(plan, mine)
    if plan_id in history.rejected:
        return admission.Skip(f"plan {plan_id} was rejected")
    if plan_id in history.superseded:
        return admission.Skip(f"plan {plan_id} was superseded")
    for other in history.plans.values():
        other_plan = other.event.payload
        if admission.order_of(other) <= admission.order_of(plan) or other_plan.reason == "drift":
            continue
        began = any(s.event.payload.plan_id == other_plan.plan_id for s in history.starts.values())
        if began or other_plan.plan_id in history.approved:
            return admission.Skip(
                f"retry {payload.attempt} of plan {plan_id} cancelled: "
                f"the newer plan {other_plan.plan_id} was approved"
            )
    failed = history.starts.get(payload.after_apply_id)
    after_seq = failed.seq if failed is not None else 0
    for started in history.starts.values():
        if started.event.payload.plan_id == plan_id and started.seq > after_seq:
            return admission.Skip(
                f"plan {plan_id} was tried again by apply {started.event.payload.apply_id} "
                f"after apply {payload.after_apply_id} failed"
            )
    early = not_due(payload, now)
    if early is not None:
        return early
    for started in history.starts.values():
        if started.event.payload.apply_id in history.finished:
            continue
        if expired(started):
            return admission.Expire(started, mine=False)
        return admission.Wait(
            f"apply {started.event.payload.apply_id} of plan {started.event.payload.plan_id} "
            "is in flight"
        )
    return admission.Start(plan, history.last_start_seq)
