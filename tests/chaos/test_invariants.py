"""The chaos suite's checks on hand-made logs: each catches what it is for, and only that."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime

from events import new_event
from events import payloads as p
from events.envelope import Envelope
from tests.chaos import harness, invariants

APP = "shop"
WHEN = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BUNDLE = hashlib.sha256(b"bundle").hexdigest()


def commit(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:40]


class Log:
    """A log being written the way the services write theirs: derived events keep their cause."""

    def __init__(self) -> None:
        self.events: list[invariants.Logged] = []

    def append(self, payload: p.Payload, *, cause: Envelope | None = None, app: str = APP):
        event = new_event(payload, app=app, actor="test", cause=cause, occurred_at=WHEN)
        self.events.append((len(self.events) + 1, event))
        return event

    def detected(self, name: str, *, app: str = APP) -> Envelope:
        return self.append(
            p.RevisionDetected(
                repo_url="/repo", ref="main", commit=commit(name), committed_at=WHEN
            ),
            app=app,
        )

    def rendered(self, name: str, *, unchanged_from: str | None = None) -> Envelope:
        return self.append(
            p.ManifestsRendered(
                commit=commit(name),
                bundle_digest=BUNDLE,
                bundle_size=1,
                renderer="yaml",
                resources=[],
                unchanged_from=commit(unchanged_from) if unchanged_from else None,
            )
        )

    def approved(self, name: str, plan_id: str = "", *, app: str = APP) -> Envelope:
        plan_id = plan_id or f"plan-{name}"
        plan = self.append(
            p.PlanCreated(plan_id=plan_id, commit=commit(name), bundle_digest=BUNDLE, changes=[]),
            app=app,
        )
        return self.append(p.PlanApproved(plan_id=plan_id), cause=plan, app=app)

    def started(self, approval: Envelope, name: str, *, app: str = APP) -> Envelope:
        assert isinstance(approval.payload, p.PlanApproved)
        apply_id = f"apply-{len(self.events)}"
        return self.append(
            p.ApplyStarted(
                apply_id=apply_id,
                plan_id=approval.payload.plan_id,
                commit=commit(name),
                bundle_digest=BUNDLE,
            ),
            cause=approval,
            app=app,
        )

    def succeeded(self, started: Envelope, *, rollback_of: str | None = None) -> Envelope:
        payload = started.payload
        assert isinstance(payload, p.ApplyStarted)
        return self.append(
            p.ApplySucceeded(
                apply_id=payload.apply_id,
                plan_id=payload.plan_id,
                commit=payload.commit,
                bundle_digest=BUNDLE,
                inventory=[],
                rollback_of=rollback_of,
            ),
            app=started.app,
        )

    def failed(self, started: Envelope) -> Envelope:
        payload = started.payload
        assert isinstance(payload, p.ApplyStarted)
        return self.append(
            p.ApplyFailed(apply_id=payload.apply_id, plan_id=payload.plan_id, error="boom"),
            app=started.app,
        )

    def journey(self, name: str, *, app: str = APP) -> Envelope:
        """Detected, planned, approved, applied: the happy path of one revision."""
        self.detected(name, app=app)
        approval = self.approved(name, app=app)
        return self.succeeded(self.started(approval, name, app=app))


def test_a_clean_history_has_no_findings() -> None:
    log = Log()
    log.journey("a")
    log.journey("b")
    log.journey("a", app="cart")
    findings = invariants.assess(log.events, apps=[APP, "cart"])
    assert findings.problems() == []
    assert findings.events == len(log.events)
    assert findings.counts["ApplySucceeded"] == 3


def test_an_app_whose_last_revision_is_not_applied_is_not_at_latest() -> None:
    log = Log()
    log.journey("a")
    log.detected("b")
    log.journey("a", app="cart")
    found = invariants.not_at_latest(log.events, apps=[APP, "cart", "idle"])
    assert [(f.app, f.latest, f.applied) for f in found] == [
        ("idle", None, None),
        (APP, commit("b"), commit("a")),
    ]


def test_a_revision_rendered_unchanged_from_the_applied_one_is_at_latest() -> None:
    log = Log()
    log.journey("a")
    log.detected("b")
    log.rendered("b", unchanged_from="a")
    assert invariants.not_at_latest(log.events) == []


def test_an_older_revision_applied_after_a_newer_one_is_a_regression() -> None:
    # The story: A's planning crashed, B was planned and applied, then A last.
    log = Log()
    log.detected("a")
    approval_a = log.approved("a")
    log.detected("b")
    newer = log.succeeded(log.started(log.approved("b"), "b"))
    stale = log.succeeded(log.started(approval_a, "a"))
    found = invariants.regressions(log.events)
    assert [(f.app, f.event_id, f.applied, f.newer, f.newer_event_id) for f in found] == [
        (APP, stale.event_id, commit("a"), commit("b"), newer.event_id)
    ]
    # ... and it is not at latest either: B was detected last, A is applied.
    assert [f.applied for f in invariants.not_at_latest(log.events)] == [commit("a")]


def test_a_rollback_to_an_older_revision_is_no_regression() -> None:
    log = Log()
    first = log.journey("a")
    log.journey("b")
    rollback = log.approved("a", plan_id="plan-rollback")
    log.succeeded(log.started(rollback, "a"), rollback_of=first.payload.apply_id)
    assert invariants.regressions(log.events) == []


def test_reapplying_the_same_revision_is_no_regression() -> None:
    log = Log()
    log.journey("a")
    drift = log.approved("a", plan_id="plan-drift")
    log.succeeded(log.started(drift, "a"))
    assert invariants.regressions(log.events) == []


def test_a_plan_applied_twice_and_an_approval_started_twice_are_duplicates() -> None:
    log = Log()
    log.detected("a")
    approval = log.approved("a")
    first = log.started(approval, "a")
    log.succeeded(first)
    second = log.started(approval, "a")
    log.succeeded(second)
    found = invariants.duplicate_applies(log.events)
    assert [(f.kind, f.key) for f in found] == [
        ("approval started twice", f"approval {approval.event_id}"),
        ("plan applied twice", "plan plan-a"),
    ]
    assert found[0].event_ids == (first.event_id, second.event_id)


def test_an_apply_that_failed_and_then_succeeded_finished_twice() -> None:
    # An expired apply's ApplyFailed, then the outcome of its applier that was
    # still running after all: two outcomes of one apply.
    log = Log()
    log.detected("a")
    started = log.started(log.approved("a"), "a")
    failed = log.failed(started)
    succeeded = log.succeeded(started)
    found = invariants.duplicate_applies(log.events)
    assert [(f.kind, f.event_ids) for f in found] == [
        ("apply finished twice", (failed.event_id, succeeded.event_id))
    ]


def test_a_failed_apply_retried_is_no_duplicate() -> None:
    log = Log()
    log.detected("a")
    approval = log.approved("a")
    first = log.started(approval, "a")
    log.failed(first)
    retry = log.append(
        p.ApplyRetryScheduled(
            plan_id="plan-a",
            after_apply_id=first.payload.apply_id,
            attempt=2,
            due_at=WHEN,
            delay_seconds=5,
        ),
        cause=approval,
    )
    log.succeeded(log.started(log.append(p.PlanApproved(plan_id="plan-a"), cause=retry), "a"))
    assert invariants.duplicate_applies(log.events) == []
    assert invariants.overlapping_applies(log.events) == []


def test_an_apply_started_while_another_runs_overlaps() -> None:
    log = Log()
    log.detected("a")
    log.detected("b")
    running = log.started(log.approved("a"), "a")
    overlapping = log.started(log.approved("b"), "b")
    log.succeeded(running)
    log.succeeded(overlapping)
    # Another app's apply at the same time is no overlap.
    log.detected("a", app="cart")
    log.started(log.approved("a", app="cart"), "a", app="cart")
    found = invariants.overlapping_applies(log.events)
    assert [(f.app, f.event_id, f.running) for f in found] == [
        (APP, overlapping.event_id, running.payload.apply_id)
    ]


def test_applies_one_after_the_other_do_not_overlap() -> None:
    log = Log()
    log.journey("a")
    log.journey("b")
    log.detected("c")
    log.failed(log.started(log.approved("c"), "c"))
    log.journey("d")
    assert invariants.overlapping_applies(log.events) == []


def test_missing_sequences_are_gaps() -> None:
    assert invariants.sequence_gaps([3, 1, 2, 6, 7, 10]) == [(4, 5), (8, 9)]
    assert invariants.sequence_gaps([5, 6, 7]) == []
    assert invariants.sequence_gaps([]) == []
    log = Log()
    log.journey("a")
    findings = invariants.assess([e for e in log.events if e[0] != 2])
    assert findings.gaps == [(2, 2)]
    assert findings.missing == 1
    assert findings.problems() == ["sequence gap: 2..2"]


def test_the_commits_come_in_bursts_of_overlapping_subsets_replayable_by_seed() -> None:
    config = harness.ChaosConfig(apps=20, commits=100, seed=7)
    apps = harness.app_names(config.apps)
    bursts = harness.plan_bursts(config, apps, random.Random(config.seed))
    assert sum(len(burst) for burst in bursts) == 100
    assert {len(burst) for burst in bursts} <= {1, 2, 3}
    assert len(bursts) < 100  # some commits do come in bursts
    for burst in bursts:
        assert all(commit and set(commit) <= set(apps) for commit in burst)
        # A burst's commits change (nearly) the same apps: several revisions of one app.
        assert all(len(set(burst[0]) & set(commit)) >= len(burst[0]) - 1 for commit in burst)
    assert harness.plan_bursts(config, apps, random.Random(config.seed)) == bursts
