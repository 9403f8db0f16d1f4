"""May an approved plan be applied now? Start, resume, wait, skip, or expire a dead apply.

Pure: the shell folds the app's plan and apply events (read from the log)
into an `AppHistory` and asks `decide`. The rules, in order:

1. The approval must name a PlanCreated in the log, else it is `Missing`.
2. A rejected or superseded plan is skipped. A blocked plan (a PlanBlocked, or
   any change with an error) is `Refused`, whoever approved it: applying the
   resources that can be applied would leave the cluster at a state Git never
   described.
3. This approval's own apply (same apply id: a redelivery) is resumed if
   unfinished -- server-side apply is idempotent -- or skipped if finished.
4. A plan already applied under another approval is skipped.
5. A plan older than one whose apply has started is skipped: applying it
   now would take the cluster back in time. "Older" is by `order_of`: where
   the plan's desired state entered the app's history (its revision's
   RevisionDetected, or the RollbackRequested), never the PlanCreated's own
   place in the log -- a stale plan appended late is not newer. A rollback
   is ordered by its request, so it counts as newer than every revision
   detected before it was asked for. A self-heal plan (reason "drift")
   re-applies what was applied already: it makes no plan older, so a
   revision approved after it still applies.
6. Another apply still unfinished: wait for it -- unless it began more than
   `apply_timeout + EXPIRY_GRACE` ago, when its applier is presumed dead
   (every apply bounds itself by apply_timeout) and it is expired.
7. Otherwise start, conditionally on the last ApplyStarted seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from events.envelope import Envelope
from events.payloads import (
    ApplyFailed,
    ApplyStarted,
    ApplySucceeded,
    ApprovalAccepted,
    ApprovalRefused,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    PlanRejected,
    PlanSuperseded,
    ResourceError,
)
from services.resources.identity import errors_of

HISTORY_TYPES = (
    ApprovalAccepted.event_type,
    ApprovalRefused.event_type,
    PlanCreated.event_type,
    PlanRejected.event_type,
    PlanSuperseded.event_type,
    ApplyStarted.event_type,
    ApplySucceeded.event_type,
    ApplyFailed.event_type,
    PlanBlocked.event_type,
)

# Beyond apply_timeout, how long an unfinished apply is given before another
# approval may declare it dead: room for clock skew between replicas and for
# the dying applier's last appends.
EXPIRY_GRACE = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Stored:
    """An event and its stream sequence."""

    seq: int
    event: Envelope


@dataclass
class AppHistory:
    """One app's plans and applies, as far as the log has been read."""

    plans: dict[str, Stored] = field(default_factory=dict)  # by event id
    plan_ids: dict[str, str] = field(default_factory=dict)  # plan id -> PlanCreated event id
    rejected: set[str] = field(default_factory=set)
    superseded: set[str] = field(default_factory=set)
    blocked: dict[str, str] = field(default_factory=dict)  # plan id -> why
    starts: dict[str, Stored] = field(default_factory=dict)  # by apply id
    finished: set[str] = field(default_factory=set)
    last_start_seq: int = 0
    # The planner's verdict on each person's approval, by the approval's event id.
    verdicts: dict[str, ApprovalAccepted | ApprovalRefused] = field(default_factory=dict)

    def add(self, seq: int, event: Envelope) -> None:
        payload = event.payload
        if isinstance(payload, ApprovalAccepted | ApprovalRefused):
            self.verdicts[payload.approval_id] = payload
        elif isinstance(payload, PlanCreated):
            self.plans[event.event_id] = Stored(seq, event)
            self.plan_ids[payload.plan_id] = event.event_id
        elif isinstance(payload, PlanRejected):
            self.rejected.add(payload.plan_id)
        elif isinstance(payload, PlanSuperseded):
            self.superseded.add(payload.plan_id)
        elif isinstance(payload, PlanBlocked):
            self.blocked[payload.plan_id] = blocked_reason(payload.errors)
        elif isinstance(payload, ApplyStarted):
            self.starts[payload.apply_id] = Stored(seq, event)
            self.last_start_seq = max(self.last_start_seq, seq)
        elif isinstance(payload, ApplySucceeded | ApplyFailed):
            self.finished.add(payload.apply_id)

    @classmethod
    def of(cls, events: Iterable[tuple[int, Envelope]]) -> AppHistory:
        history = cls()
        for seq, event in events:
            history.add(seq, event)
        return history

    def plan_for(self, approval: Envelope) -> Stored | None:
        """The PlanCreated an approval approves: its causation, else by plan id."""
        if approval.causation_id and approval.causation_id in self.plans:
            return self.plans[approval.causation_id]
        payload = approval.payload
        if isinstance(payload, PlanApproved) and payload.plan_id in self.plan_ids:
            return self.plans[self.plan_ids[payload.plan_id]]
        return None


@dataclass(frozen=True, slots=True)
class Start:
    """Append ApplyStarted, expecting the app's last ApplyStarted at `expected_seq` (0: none)."""

    plan: Stored
    expected_seq: int


@dataclass(frozen=True, slots=True)
class Resume:
    """This approval's apply started and did not finish: apply again and finish it."""

    plan: Stored
    started: Stored


@dataclass(frozen=True, slots=True)
class Wait:
    """Another apply of the app is in flight."""

    reason: str


@dataclass(frozen=True, slots=True)
class Skip:
    """Nothing to do for this approval."""

    reason: str


@dataclass(frozen=True, slots=True)
class Missing:
    """The approval names no plan in the log: it can never be applied."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The approval approves a blocked plan: it is never applied (recorded, not retried)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Expire:
    """`started` outlived apply_timeout: record it failed, then decide again."""

    started: Stored
    mine: bool


Decision = Start | Resume | Wait | Skip | Missing | Refused | Expire


def order_of(plan: Stored) -> int:
    """Where `plan`'s desired state entered the app's history (see rule 5).

    Plans from before PlanCreated carried `desired_seq` fall back on their own place.
    """
    payload = plan.event.payload
    assert isinstance(payload, PlanCreated)
    return payload.desired_seq or plan.seq


def blocked_reason(errors: Iterable[ResourceError]) -> str:
    """`Kind ns/name: error; ...` for the resources that block a plan."""
    return "; ".join(map(str, errors))


def deadline(started: Envelope, apply_timeout: float) -> datetime:
    """When an apply that started with `started` must be over."""
    return started.occurred_at + timedelta(seconds=apply_timeout)


def decide(
    history: AppHistory,
    approval: Envelope,
    *,
    apply_id: str,
    now: datetime,
    apply_timeout: float,
) -> Decision:
    """What to do with `approval` (see the module docstring).

    `apply_id` is the id this approval's ApplyStarted has (or would have).
    """
    payload = approval.payload
    assert isinstance(payload, PlanApproved)
    plan = history.plan_for(approval)
    if plan is None:
        return Missing(
            f"PlanApproved {approval.event_id} approves plan {payload.plan_id}, "
            f"but no PlanCreated {approval.causation_id or payload.plan_id} is in the log"
        )
    plan_id = plan.event.payload.plan_id
    if plan_id in history.rejected:
        return Skip(f"plan {plan_id} was rejected")
    if plan_id in history.superseded:
        return Skip(f"plan {plan_id} was superseded")
    blocked = history.blocked.get(plan_id) or blocked_reason(errors_of(plan.event.payload.changes))
    if blocked:
        return Refused(
            f"PlanApproved {approval.event_id} approves plan {plan_id}, which is blocked "
            f"(nothing of a blocked plan is applied): {blocked}"
        )

    def expired(started: Stored) -> bool:
        return now > deadline(started.event, apply_timeout) + EXPIRY_GRACE

    mine = history.starts.get(apply_id)
    if mine is not None:
        if apply_id in history.finished:
            return Skip(f"apply {apply_id} of plan {plan_id} already finished")
        if expired(mine):
            return Expire(mine, mine=True)
        return Resume(plan, mine)
    for started in history.starts.values():
        other = started.event.payload
        if other.plan_id == plan_id and other.apply_id in history.finished:
            return Skip(f"plan {plan_id} was already applied by apply {other.apply_id}")
    for started in history.starts.values():
        other_plan = history.plans.get(history.plan_ids.get(started.event.payload.plan_id, ""))
        if (
            other_plan is not None
            and order_of(other_plan) > order_of(plan)
            and other_plan.event.payload.reason != "drift"
        ):
            return Skip(
                f"plan {plan_id} is older than plan {started.event.payload.plan_id}, "
                f"whose apply {started.event.payload.apply_id} has started"
            )
    for started in history.starts.values():
        if started.event.payload.apply_id in history.finished:
            continue
        if expired(started):
            return Expire(started, mine=False)
        return Wait(
            f"apply {started.event.payload.apply_id} of plan {started.event.payload.plan_id} "
            "is in flight"
        )
    return Start(plan, history.last_start_seq)
