"""One plan-status state machine: `wake plans` (catalog) and the read model agree. Pure."""

from __future__ import annotations

from services.catalog.plans import fold_plans
from services.projector.folding import ReadModels, fold_all
from tests.projector.synthetic import random_history


def test_the_catalog_and_the_projector_give_every_plan_the_same_status() -> None:
    history = random_history(13, apps=5, journeys=200)
    events = list(enumerate(history.events, start=1))
    models = fold_all(ReadModels(), events)
    by_app: dict[str, list] = {}
    for seq, event in events:
        by_app.setdefault(event.app, []).append((seq, event))
    catalog = {
        plan_id: view.status
        for app_events in by_app.values()
        for plan_id, view in fold_plans(app_events).items()
    }
    projected = {plan_id: row["status"] for plan_id, row in models.rows["plans"].items()}
    assert catalog == projected
    # and the history exercises more than one of them
    assert len(set(catalog.values())) >= 3
