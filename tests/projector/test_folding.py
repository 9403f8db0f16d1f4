"""The projector's pure core, with literal events: no servers."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from events import new_event
from events import payloads as p
from services.projector.folding import TABLES, ReadModels, fold, fold_all, keys_needed
from services.projector.journeys import journeys, moment
from tests.projector.synthetic import random_history

AT = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
COMMIT_A = "a" * 40
COMMIT_B = "b" * 40
BUNDLE_A = "1" * 64
BUNDLE_B = "2" * 64
DEPLOY = p.ResourceRef(api_version="apps/v1", kind="Deployment", name="web", namespace="shop")
SERVICE = p.ResourceRef(api_version="v1", kind="Service", name="web", namespace="shop")


def journey(commit: str, bundle: str, plan_id: str, apply_id: str, inventory, *, rollback_of=None):
    detected = new_event(
        p.RevisionDetected(
            repo_url="https://git.example.com/shop.git",
            ref="main",
            commit=commit,
            author="Ada",
            message="bump web",
            committed_at=AT,
        ),
        app="shop",
        actor="service:git-watcher",
        occurred_at=AT,
    )
    rendered = new_event(
        p.ManifestsRendered(
            commit=commit, bundle_digest=bundle, bundle_size=10, renderer="yaml", resources=[]
        ),
        app="shop",
        actor="service:renderer",
        cause=detected,
        occurred_at=AT,
    )
    planned = new_event(
        p.PlanCreated(
            plan_id=plan_id,
            commit=commit,
            bundle_digest=bundle,
            changes=[p.ResourceChange(ref=DEPLOY, action="update", diff="-1\n+2")],
            needs_approval=True,
            rollback_of=rollback_of,
            reason="rollback" if rollback_of else "revision",
        ),
        app="shop",
        actor="service:planner",
        cause=rendered,
        occurred_at=AT,
    )
    approved = new_event(
        p.PlanApproved(plan_id=plan_id, via="chat", comment="ship it"),
        app="shop",
        actor="chat:carol",
        cause=planned,
        occurred_at=AT,
    )
    succeeded = new_event(
        p.ApplySucceeded(
            apply_id=apply_id,
            plan_id=plan_id,
            commit=commit,
            bundle_digest=bundle,
            inventory=inventory,
            rollback_of=rollback_of,
        ),
        app="shop",
        actor="service:applier",
        cause=approved,
        occurred_at=AT,
    )
    return [detected, rendered, planned, approved, succeeded]


def test_a_journey_fills_every_read_model():
    events = journey(COMMIT_A, BUNDLE_A, "plan-1", "apply-1", [DEPLOY, SERVICE])
    models = fold_all(ReadModels(), enumerate(events, start=1))

    app = models.rows["applications"]["shop"]
    assert app["sync_state"] == "Synced"
    assert app["last_applied_commit"] == COMMIT_A
    assert app["desired_bundle"] == BUNDLE_A
    assert app["rolled_back"] is False
    plan = models.rows["plans"]["plan-1"]
    assert plan["status"] == "applied" and plan["updates"] == 1
    (approval,) = models.rows["approvals"].values()
    assert (approval["actor"], approval["via"], approval["comment"]) == (
        "chat:carol",
        "chat",
        "ship it",
    )
    assert models.rows["revisions"][events[0].event_id]["render_status"] == "rendered"
    assert [r["name"] for r in models.resources["shop"]] == ["web", "web"]
    assert [row[0] for row in models.events] == [1, 2, 3, 4, 5]
    assert models.last_seq == 5


def test_a_rollback_marks_the_app_and_replaces_its_resources():
    first = journey(COMMIT_A, BUNDLE_A, "plan-1", "apply-1", [DEPLOY, SERVICE])
    second = journey(COMMIT_B, BUNDLE_B, "plan-2", "apply-2", [DEPLOY])
    back = journey(
        COMMIT_A, BUNDLE_A, "plan-3", "apply-3", [DEPLOY, SERVICE], rollback_of="apply-1"
    )
    models = fold_all(ReadModels(), enumerate(first + second + back, start=1))

    app = models.rows["applications"]["shop"]
    assert app["rolled_back"] is True and app["rolled_back_to"] == COMMIT_A
    assert len(models.resources["shop"]) == 2
    entries = journeys(
        revisions=models.rows["revisions"].values(),
        plans=models.rows["plans"].values(),
        approvals=models.rows["approvals"].values(),
        applies=models.rows["applies"].values(),
    )
    assert [e.commit for e in entries] == [COMMIT_A, COMMIT_B, COMMIT_A]
    assert [e.rollback for e in entries] == [True, False, False]
    assert entries[0].decisions[0].via == "chat"

    resumed = new_event(p.SyncRequested(resume=True), app="shop", actor="user:x", occurred_at=AT)
    fold(models, 100, resumed)
    assert models.rows["applications"]["shop"]["rolled_back"] is False


def test_folding_in_batches_from_loaded_rows_equals_folding_at_once():
    history = random_history(7, apps=4, journeys=40)
    numbered = list(enumerate(history.events, start=1))
    at_once = fold_all(ReadModels(), numbered)

    # What the live projector does: per batch, only the rows `keys_needed` names,
    # taken from what earlier batches wrote.
    written: dict[str, dict] = {t: {} for t in at_once.rows}
    resources: dict[str, list] = {}
    for start in range(0, len(numbered), 7):
        batch = numbered[start : start + 7]
        models = ReadModels()
        for _, event in batch:
            for table, key in keys_needed(event):
                if key in written[table]:
                    models.rows[table][key] = written[table][key]
        for seq, event in batch:
            fold(models, seq, event)
        for table in models.dirty:
            for row in models.changed_rows(table):
                written[table][row[TABLES[table].key[0]]] = row
        resources.update(models.changed_resources())

    assert written == at_once.rows
    assert resources == at_once.resources


def test_moment_shows_the_last_apply_and_the_last_approval():
    first = journey(COMMIT_A, BUNDLE_A, "plan-1", "apply-1", [DEPLOY])
    models = fold_all(ReadModels(), enumerate(first, start=1))
    view = moment(models, "shop", AT)
    assert view.applied is not None and view.applied["commit"] == COMMIT_A
    assert view.approved is not None and view.approved["actor"] == "chat:carol"
    assert view.desired is not None and view.desired["bundle_digest"] == BUNDLE_A


def test_an_unchanged_revision_moves_the_app_and_keeps_it_synced():
    first = journey(COMMIT_A, BUNDLE_A, "plan-1", "apply-1", [DEPLOY, SERVICE])
    detected = journey(COMMIT_B, BUNDLE_B, "plan-2", "apply-2", [DEPLOY])[0]
    unchanged = new_event(
        p.ManifestsRendered(
            commit=COMMIT_B,
            bundle_digest=BUNDLE_B,
            bundle_size=10,
            renderer="yaml",
            resources=[],
            unchanged_from=COMMIT_A,
        ),
        app="shop",
        actor="service:renderer",
        cause=detected,
        occurred_at=AT,
    )
    models = fold_all(ReadModels(), enumerate([*first, detected, unchanged], start=1))

    app = models.rows["applications"]["shop"]
    assert app["sync_state"] == "Synced"
    assert (app["current_commit"], app["desired_commit"]) == (COMMIT_B, COMMIT_B)
    assert app["last_applied_commit"] == COMMIT_A
    assert models.rows["revisions"][detected.event_id]["render_status"] == "unchanged"
    entries = journeys(
        revisions=models.rows["revisions"].values(),
        plans=models.rows["plans"].values(),
        approvals=models.rows["approvals"].values(),
        applies=models.rows["applies"].values(),
    )
    assert [(e.commit, e.result, e.plan_id) for e in entries] == [
        (COMMIT_B, "unchanged", None),
        (COMMIT_A, "applied", "plan-1"),
    ]
    assert moment(models, "shop", AT).desired["commit"] == COMMIT_B


def test_a_blocked_plan_stays_blocked_and_the_app_out_of_sync():
    applied = journey(COMMIT_A, BUNDLE_A, "plan-1", "apply-1", [DEPLOY])
    detected, rendered, planned, _, _ = journey(COMMIT_B, BUNDLE_B, "plan-2", "apply-2", [DEPLOY])
    refused = "dry run refused: 422 Invalid: spec.replicas: must be >= 0"
    planned = msgspec.structs.replace(
        planned,
        payload=msgspec.structs.replace(
            planned.payload,
            needs_approval=False,
            changes=[p.ResourceChange(ref=DEPLOY, action="update", diff="x", error=refused)],
        ),
    )
    blocked = new_event(
        p.PlanBlocked(plan_id="plan-2", errors=[p.ResourceError(ref=DEPLOY, error=refused)]),
        app="shop",
        actor="service:planner",
        cause=planned,
        occurred_at=AT,
    )
    forced = new_event(
        p.PlanApproved(plan_id="plan-2", via="api"), app="shop", actor="user:x", occurred_at=AT
    )
    events = [*applied, detected, rendered, planned, blocked, forced]
    models = fold_all(ReadModels(), enumerate(events, start=1))

    assert models.rows["plans"]["plan-2"]["status"] == "blocked"
    assert models.rows["applications"]["shop"]["sync_state"] == "OutOfSync"
    entries = journeys(
        revisions=models.rows["revisions"].values(),
        plans=models.rows["plans"].values(),
        approvals=models.rows["approvals"].values(),
        applies=models.rows["applies"].values(),
    )
    assert (entries[0].commit, entries[0].result) == (COMMIT_B, "blocked")
    assert entries[0].error == f"Deployment shop/web: {refused}"
