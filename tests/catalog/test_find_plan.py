"""Finding a plan by id on real NATS: the app's last plan directly, an older one by scan."""

from __future__ import annotations

import pytest

from events import new_event
from events.payloads import ApplicationRegistered, AppSpec, PlanCreated
from services.catalog.lookup import PlanNotFound, find_plan
from services.wiring.eventlog import EventLog


def plan(plan_id: str) -> PlanCreated:
    return PlanCreated(
        plan_id=plan_id, commit="1" * 40, bundle_digest="b" * 64, changes=[], needs_approval=True
    )


async def test_find_plan_reads_the_last_plan_directly_and_scans_for_older_ones(
    event_log: EventLog,
) -> None:
    spec = AppSpec(repo_url="/r")
    for app in ("shop", "web"):
        await event_log.append(new_event(ApplicationRegistered(spec=spec), app=app, actor="t"))
    for plan_id in ("shop-1", "shop-2"):
        appended = await event_log.append(new_event(plan(plan_id), app="shop", actor="t"))
    await event_log.append(new_event(plan("web-1"), app="web", actor="t"))

    last, position = await find_plan(event_log, "shop-2")
    assert (last.app, last.status, position) == ("shop", "awaiting-approval", appended.seq)
    older, _ = await find_plan(event_log, "shop-1")
    assert (older.app, older.plan_id) == ("shop", "shop-1")
    assert (await find_plan(event_log, "web-1"))[0].app == "web"
    with pytest.raises(PlanNotFound, match="no plan shop-3 in the log"):
        await find_plan(event_log, "shop-3")
