"""Reading the catalogue from the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from events import names
from events.payloads import AppSpec
from services.catalog.registry import LIFECYCLE_TYPES, Registry, current_spec
from services.wiring.eventlog import EventLog

LIFECYCLE_SUBJECTS = [names.type_subjects(t) for t in LIFECYCLE_TYPES]


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
        registry.apply(stored.seq, stored.event)
        last = stored.seq
    info = await log.js.stream_info(names.STREAM)
    return registry, max(last, info.state.last_seq)


async def follow_registry(log: EventLog, registry: Registry, after_seq: int) -> AsyncIterator[str]:
    """Keep `registry` current; yield the name of each app that changed."""
    async for stored in log.read(subjects=LIFECYCLE_SUBJECTS, from_seq=after_seq + 1, follow=True):
        if registry.apply(stored.seq, stored.event):
            yield stored.event.app
