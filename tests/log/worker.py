"""A consumer process for the crash test: derives one event, then (the first
time) hangs before acknowledging, so the test can SIGKILL it mid-handler.

Run as: python -m tests.log.worker NATS_URL CONSUMER_NAME MARKER_FILE
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from events import new_event
from events.payloads import ApprovalRequested
from services.wiring.consumers import ConsumerSettings, consume
from services.wiring.eventlog import EventLog, StoredEvent
from tests.signing import trusting


async def main(url: str, name: str, marker: Path) -> None:
    log = trusting(await EventLog.connect(url, name=name))

    async def handle(stored: StoredEvent) -> None:
        derived = new_event(
            ApprovalRequested(plan_id=stored.event.event_id),
            app=stored.event.app,
            actor=f"service:{name}",
            cause=stored.event,
        )
        await log.append(derived)
        if not marker.exists():
            marker.write_text("appended, now hanging before the ack")
            await asyncio.Event().wait()

    settings = ConsumerSettings(
        name=name, subjects=["wake.evt.*.SyncRequested"], backoff=(1.0, 1.0, 1.0)
    )
    await consume(log, settings, handle)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
