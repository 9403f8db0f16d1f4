"""Durable consumers: delivery semantics on a real JetStream server (STYLE 8)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from events import new_event
from events.names import STREAM
from events.payloads import EventRejected, SyncRequested
from services.wiring.consumers import ConsumerSettings, consume
from services.wiring.embedded_nats import EmbeddedNats
from services.wiring.eventlog import EventLog, StoredEvent
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


async def events_of(log: EventLog, event_type: str) -> list[StoredEvent]:
    return [s async for s in log.read(subjects=[f"wake.evt.*.{event_type}"])]


@contextlib.asynccontextmanager
async def running(log: EventLog, settings: ConsumerSettings, handler):
    stop = asyncio.Event()
    task = asyncio.create_task(consume(log, settings, handler, stop=stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def test_a_garbage_payload_becomes_one_event_rejected_and_the_consumer_goes_on(
    event_log: EventLog,
):
    handled: list[str] = []

    async def handler(stored: StoredEvent) -> None:
        handled.append(stored.event.payload.reason)

    await event_log.js.publish("wake.evt.shop.SyncRequested", b"\x00garbage{")
    await event_log.append(new_event(SyncRequested(reason="next"), app="shop", actor="t"))
    settings = ConsumerSettings(name="garbage-test", subjects=["wake.evt.*.SyncRequested"])
    async with running(event_log, settings, handler):

        async def next_handled() -> bool:
            return handled == ["next"]

        await eventually(next_handled)
    rejected = await events_of(event_log, "EventRejected")
    assert len(rejected) == 1
    payload = rejected[0].event.payload
    assert isinstance(payload, EventRejected)
    assert (payload.stream_seq, payload.subject, payload.consumer) == (
        1,
        "wake.evt.shop.SyncRequested",
        "garbage-test",
    )
    assert "not a JSON event" in payload.error and "garbage" in payload.excerpt
    assert rejected[0].event.app == "shop"
    # the garbage itself is still in the log
    raw = await event_log.js.get_msg(STREAM, 1)
    assert raw.data == b"\x00garbage{"


async def test_a_handler_that_always_fails_is_retried_then_rejected_and_the_consumer_goes_on(
    event_log: EventLog,
):
    attempts: dict[str, int] = {}

    async def handler(stored: StoredEvent) -> None:
        reason = stored.event.payload.reason
        attempts[reason] = attempts.get(reason, 0) + 1
        if reason == "poison":
            raise RuntimeError("cannot handle this one")

    await event_log.append_many(
        [new_event(SyncRequested(reason=r), app="shop", actor="t") for r in ("poison", "fine")]
    )
    settings = ConsumerSettings(
        name="poison-test", subjects=["wake.evt.*.SyncRequested"], backoff=(0.1, 0.1, 0.1)
    )
    async with running(event_log, settings, handler):

        async def rejected_once() -> bool:
            return len(await events_of(event_log, "EventRejected")) == 1

        await eventually(rejected_once)
        await eventually(lambda: attempts.get("fine") == 1)
    assert attempts["poison"] == settings.max_deliver == 4
    (rejected,) = await events_of(event_log, "EventRejected")
    assert "handler failed on all 4 deliveries" in rejected.event.payload.error
    assert "cannot handle this one" in rejected.event.payload.error


@pytest.mark.timeout(60)
async def test_a_consumer_killed_mid_handler_gets_the_message_again_and_its_event_appears_once(
    event_log: EventLog, nats_server: EmbeddedNats, tmp_path: Path
):
    # Given a consumer process whose handler appends a derived event and then
    # hangs before acknowledging
    marker = tmp_path / "marker"
    source = new_event(SyncRequested(reason="go"), app="shop", actor="t")
    await event_log.append(source)
    command = [sys.executable, "-m", "tests.log.worker", nats_server.url, "crash-test", str(marker)]
    first = subprocess.Popen(command, cwd=ROOT)
    try:

        async def derived_appended() -> bool:
            return marker.exists() and len(await events_of(event_log, "ApprovalRequested")) == 1

        await eventually(derived_appended)
        # When it is killed before the ack
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.wait)
    finally:
        first.kill()

    second = subprocess.Popen(command, cwd=ROOT)
    try:
        # Then a restarted consumer gets the message again and acknowledges it
        async def acknowledged() -> bool:
            info = await event_log.js.consumer_info(STREAM, "crash-test")
            return info.ack_floor.stream_seq >= 1 and info.num_ack_pending == 0

        await eventually(acknowledged, timeout=30, what="the redelivered message acked")
        info = await event_log.js.consumer_info(STREAM, "crash-test")
        assert info.delivered.consumer_seq >= 2  # it was delivered twice
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait)
    # and the derived event is in the log exactly once
    derived = await events_of(event_log, "ApprovalRequested")
    assert len(derived) == 1
    assert derived[0].event.causation_id == source.event_id


async def test_with_concurrency_apps_are_handled_side_by_side_each_in_log_order(
    event_log: EventLog,
):
    # Given the first message of app "slow" blocks until every "fast" message is handled
    handled: list[tuple[str, str]] = []
    fast_done = asyncio.Event()

    async def handler(stored: StoredEvent) -> None:
        app, reason = stored.event.app, stored.event.payload.reason
        if (app, reason) == ("slow", "1"):
            await asyncio.wait_for(fast_done.wait(), timeout=10)
        handled.append((app, reason))
        if [r for a, r in handled if a == "fast"] == ["1", "2", "3"]:
            fast_done.set()

    await event_log.append_many(
        [
            new_event(SyncRequested(reason=str(i)), app=app, actor="t")
            for i in (1, 2, 3)
            for app in ("slow", "fast")
        ]
    )
    settings = ConsumerSettings(
        name="lanes-test", subjects=["wake.evt.*.SyncRequested"], concurrency=4
    )
    # When they are consumed with a concurrency above one
    async with running(event_log, settings, handler):
        await eventually(lambda: len(handled) == 6, what="all six handled")
    # Then "fast" did not wait for "slow", and each app kept its order
    assert handled[:3] == [("fast", "1"), ("fast", "2"), ("fast", "3")]
    assert [r for a, r in handled if a == "slow"] == ["1", "2", "3"]
    info = await event_log.js.consumer_info(STREAM, "lanes-test")
    assert info.num_ack_pending == 0 and info.num_pending == 0
