"""Reading the catalogue from the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

from events import names
from events.envelope import Envelope, InvalidEvent
from events.payloads import AppSpec, PlanCreated
from services.catalog.plans import PLAN_EVENT_TYPES, PlanView, fold_plans
from services.catalog.registry import LIFECYCLE_TYPES, REGISTRY_TYPES, Registry, current_spec
from services.projects.book import PROJECT_TYPES, Projects
from services.wiring.eventlog import EventLog

LIFECYCLE_SUBJECTS = [names.type_subjects(t) for t in REGISTRY_TYPES]


async def app_spec(log: EventLog, app: str) -> AppSpec | None:
    """The app's current spec, or None if it is not registered: three direct reads."""
    found = await asyncio.gather(*(log.last_event(app, t) for t in LIFECYCLE_TYPES))
    registered, updated, removed = (
        (stored.seq, stored.event) if stored is not None else None for stored in found
    )
    return current_spec(registered, updated, removed)


async def load_registry(log: EventLog) -> tuple[Registry, int]:
    """Every registered app, and the sequence the registry is complete up to."""
    registry = Registry()
    last = 0
    async for stored in log.read(subjects=LIFECYCLE_SUBJECTS):
        registry.changed_by(stored.seq, stored.event)
        last = stored.seq
    info = await log.js.stream_info(names.STREAM)
    return registry, max(last, info.state.last_seq)


async def load_projects(log: EventLog) -> Projects:
    """Every defined project, read from the log (a command's one read, not a service's)."""
    projects = Projects()
    async for stored in log.read(subjects=[names.type_subjects(t) for t in PROJECT_TYPES]):
        projects.add(stored.seq, stored.event)
    return projects


async def follow_registry(log: EventLog, registry: Registry, after_seq: int) -> AsyncIterator[str]:
    """Keep `registry` current; yield the name of each app that changed (for a
    project's change, each app in it)."""
    async for stored in log.read(subjects=LIFECYCLE_SUBJECTS, from_seq=after_seq + 1, follow=True):
        for app in registry.changed_by(stored.seq, stored.event):
            yield app


async def app_events(log: EventLog, app: str, types: Iterable[str]) -> list[tuple[int, Envelope]]:
    """The app's events of `types`, in log order, as (seq, event)."""
    subjects = [names.subject(app, t) for t in types]
    return [(stored.seq, stored.event) async for stored in log.read(subjects=subjects)]


async def app_plans(log: EventLog, app: str) -> dict[str, PlanView]:
    return fold_plans(await app_events(log, app, PLAN_EVENT_TYPES))


class PlanNotFound(LookupError):
    pass


async def find_plan(log: EventLog, plan_id: str) -> tuple[PlanView, int]:
    """The plan with this id and the position of its app's log it was read at.

    A plan awaiting approval is almost always its app's last: each app's last
    PlanCreated is read directly first (one read per app); only an older plan
    costs a scan of every PlanCreated.
    """
    registry, _ = await load_registry(log)
    last = await asyncio.gather(
        *(log.last_event(app, PlanCreated.event_type) for app in registry.apps)
    )
    for stored in last:
        if stored is not None and getattr(stored.event.payload, "plan_id", None) == plan_id:
            return await _plan_of(log, stored.event.app, plan_id)
    needle = plan_id.encode()
    async for seq, subject, data in log.read_raw(
        subjects=[names.type_subjects(PlanCreated.event_type)]
    ):
        if needle not in data:  # most plans are not it: decode only what may be
            continue
        try:
            event = await log.open(data, seq=seq, subject=subject)
        except InvalidEvent as exc:
            await log.skip(seq, subject, data, exc)  # skipped by every reader (DESIGN §2)
            continue
        if getattr(event.payload, "plan_id", None) == plan_id:
            return await _plan_of(log, event.app, plan_id)
    raise PlanNotFound(f"no plan {plan_id} in the log")


async def _plan_of(log: EventLog, app: str, plan_id: str) -> tuple[PlanView, int]:
    # The position first: a decision appended on it conflicts with anything
    # that lands on the app while we were reading.
    position = await log.app_position(app)
    plans = fold_plans(
        [
            (seq, event)
            for seq, event in await app_events(log, app, PLAN_EVENT_TYPES)
            if seq <= position
        ]
    )
    if plan_id not in plans:
        raise PlanNotFound(f"no plan {plan_id} in the log")
    return plans[plan_id], position
