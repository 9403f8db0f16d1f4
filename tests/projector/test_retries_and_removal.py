"""The projector folds retries into plans and journeys, and a cascade into resources. Pure."""

from __future__ import annotations

from events import new_event
from events import payloads as p
from services.projector.folding import ReadModels, fold_all
from services.projector.journeys import journeys
from tests.projector.test_folding import AT, BUNDLE_A, COMMIT_A, DEPLOY, SERVICE, journey


def entries(models: ReadModels):
    return journeys(
        revisions=models.rows["revisions"].values(),
        plans=models.rows["plans"].values(),
        approvals=models.rows["approvals"].values(),
        applies=models.rows["applies"].values(),
    )


def test_a_retried_apply_shows_as_retrying_then_applied_at_its_last_try():
    detected, rendered, planned, approved, succeeded = journey(
        COMMIT_A, BUNDLE_A, "plan-1", "apply-2", [DEPLOY]
    )

    def applier(payload, cause):
        return new_event(payload, app="shop", actor="service:applier", cause=cause, occurred_at=AT)

    started = applier(
        p.ApplyStarted(
            apply_id="apply-1", plan_id="plan-1", commit=COMMIT_A, bundle_digest=BUNDLE_A
        ),
        approved,
    )
    failed = applier(
        p.ApplyFailed(apply_id="apply-1", plan_id="plan-1", error="quota", retry_at=AT), approved
    )
    retry = applier(
        p.ApplyRetryScheduled(
            plan_id="plan-1", after_apply_id="apply-1", attempt=2, due_at=AT, delay_seconds=5.0
        ),
        failed,
    )
    so_far = [detected, rendered, planned, approved, started, failed, retry]
    models = fold_all(ReadModels(), enumerate(so_far, start=1))
    assert models.rows["plans"]["plan-1"]["status"] == "retrying"
    (entry,) = entries(models)
    assert (entry.result, entry.attempts) == ("apply failed, retrying", 1)

    again = applier(
        p.ApplyStarted(
            apply_id="apply-2", plan_id="plan-1", commit=COMMIT_A, bundle_digest=BUNDLE_A, attempt=2
        ),
        retry,
    )
    models = fold_all(ReadModels(), enumerate([*so_far, again, succeeded], start=1))
    assert models.rows["plans"]["plan-1"]["status"] == "applied"
    (entry,) = entries(models)
    assert (entry.result, entry.attempts, entry.apply_id) == ("applied", 2, "apply-2")


def test_a_cascade_removes_the_deleted_resources_and_keeps_the_kept_ones():
    events = journey(COMMIT_A, BUNDLE_A, "plan-1", "apply-1", [DEPLOY, SERVICE])
    removed = new_event(p.ApplicationRemoved(cascade=True), app="shop", actor="user:x")
    deleted = [
        new_event(
            p.ResourceDeleted(removal_id=removed.event_id, ref=ref, action=action),
            app="shop",
            actor="service:applier",
            cause=removed,
            key=ref.kind,
        )
        for ref, action in ((DEPLOY, "deleted"), (SERVICE, "kept"))
    ]
    models = fold_all(ReadModels(), enumerate([*events, removed, *deleted], start=1))
    assert [r["kind"] for r in models.resources["shop"]] == ["Service"]
