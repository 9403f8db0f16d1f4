"""Durable consumers: delivery semantics on a real JetStream server (STYLE 8)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg

from events import new_event
from events.names import STREAM
from events.payloads import EventRejected, SyncRequested
from services.wiring.consumers import (
    PIN_TIMEOUT,
    PRIORITY_GROUP,
    ConsumerSettings,
    Deferred,
    Placement,
    consume,
    ensure_consumer,
    partition_of,
)
from services.wiring.embedded_nats import EmbeddedNats
from services.wiring.eventlog import EventLog, StoredEvent
from tests.signing import connect
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

    garbage = await event_log.js.publish("wake.evt.shop.SyncRequested", b"\x00garbage{")
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
        garbage.seq,
        "wake.evt.shop.SyncRequested",
        "garbage-test",
    )
    assert "not a JSON event" in payload.error and "garbage" in payload.excerpt
    assert rejected[0].event.app == "shop"
    # the garbage itself is still in the log
    raw = await event_log.js.get_msg(STREAM, garbage.seq)
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


async def test_messages_waiting_for_their_app_are_kept_alive_past_the_ack_deadline(
    event_log: EventLog,
):
    # Given app "a" has three messages and the first one's handler takes
    # several ack deadlines (0.5 s each)
    handled: list[str] = []
    ack_wait = 0.5

    async def handler(stored: StoredEvent) -> None:
        reason = stored.event.payload.reason
        if reason == "1":
            started = time.monotonic()

            # The point is time running out for the two waiting messages.
            async def past_their_deadline() -> bool:
                return time.monotonic() - started > 6 * ack_wait

            await eventually(past_their_deadline)
        handled.append(reason)

    await event_log.append_many(
        [new_event(SyncRequested(reason=str(i)), app="a", actor="t") for i in (1, 2, 3)]
    )
    settings = ConsumerSettings(
        name="keepalive-test",
        subjects=["wake.evt.*.SyncRequested"],
        backoff=(ack_wait, ack_wait, ack_wait),
        concurrency=4,
    )
    async with running(event_log, settings, handler):
        await eventually(lambda: len(handled) >= 3, what="three handled")
        info = await event_log.js.consumer_info(STREAM, "keepalive-test")
    # Then nothing was redelivered ahead of the slow one, and the order held
    assert handled == ["1", "2", "3"]
    assert info.num_redelivered == 0
    assert info.delivered.consumer_seq == 3


async def test_a_failing_message_holds_back_its_apps_later_ones_and_no_other_app(
    event_log: EventLog,
):
    # Given app "a"'s first message fails twice before it succeeds
    log_of: list[str] = []
    failures = {"a1": 2}

    async def handler(stored: StoredEvent) -> None:
        key = f"{stored.event.app}{stored.event.payload.reason}"
        if failures.get(key, 0) > 0:
            failures[key] -= 1
            log_of.append(f"{key} failed")
            raise RuntimeError(f"{key} not yet")
        log_of.append(key)

    await event_log.append_many(
        [
            new_event(SyncRequested(reason="1"), app="a", actor="t"),
            new_event(SyncRequested(reason="2"), app="a", actor="t"),
            new_event(SyncRequested(reason="1"), app="b", actor="t"),
        ]
    )
    settings = ConsumerSettings(
        name="retry-order-test",
        subjects=["wake.evt.*.SyncRequested"],
        backoff=(0.3, 0.3, 0.3, 0.3),
        concurrency=4,
    )
    async with running(event_log, settings, handler):
        await eventually(lambda: "a2" in log_of, what="a2 handled")
    # Then a2 waited for a1's retries, b1 did not
    assert [e for e in log_of if e.startswith("a")] == ["a1 failed", "a1 failed", "a1", "a2"]
    assert log_of.index("b1") < log_of.index("a1")


async def test_a_deferred_message_lets_its_apps_later_ones_go_ahead(event_log: EventLog):
    # Given app "a"'s first message is not due on its first delivery
    handled: list[str] = []
    deferred_once: set[str] = set()

    async def handler(stored: StoredEvent) -> None:
        reason = stored.event.payload.reason
        if reason == "1" and reason not in deferred_once:
            deferred_once.add(reason)
            raise Deferred(0.5, "not due")
        handled.append(reason)

    await event_log.append_many(
        [new_event(SyncRequested(reason=str(i)), app="a", actor="t") for i in (1, 2)]
    )
    settings = ConsumerSettings(
        name="defer-test", subjects=["wake.evt.*.SyncRequested"], concurrency=4
    )
    async with running(event_log, settings, handler):
        await eventually(lambda: len(handled) == 2, what="both handled")
    # Then the later one did not wait out the delay, and the deferred one came back
    assert handled == ["2", "1"]


async def test_two_replicas_split_the_apps_and_one_takes_over_when_the_other_stops(
    event_log: EventLog, nats_server: EmbeddedNats
):
    # Given two replicas of one consumer, two partitions, one preferred by each
    owners: dict[str, set[str]] = {}
    settings = ConsumerSettings(
        name="replica-test",
        subjects=["wake.evt.*.SyncRequested"],
        backoff=(1.0, 1.0, 1.0),
        concurrency=4,
    )
    logs = [await connect(nats_server.url, name=f"replica-{i}") for i in (0, 1)]
    stops = [asyncio.Event(), asyncio.Event()]

    def handler_of(replica: str):
        async def handler(stored: StoredEvent) -> None:
            owners.setdefault(stored.event.app, set()).add(replica)

        return handler

    tasks = [
        asyncio.create_task(
            consume(
                logs[i],
                settings,
                handler_of(f"r{i}"),
                stop=stops[i],
                placement=Placement(partitions=2, slot=i, replicas=2),
            )
        )
        for i in (0, 1)
    ]
    apps = [f"app{i}" for i in range(10)]
    try:
        await event_log.append_many(
            [new_event(SyncRequested(reason="1"), app=a, actor="t") for a in apps]
        )
        await eventually(lambda: set(owners) == set(apps), what="every app handled")
        # Then each app was handled by one replica, the one owning its partition
        for app in apps:
            assert owners[app] == {f"r{partition_of(app, 2)}"}, app
        # When replica 0 stops, its apps' next messages go to replica 1
        stops[0].set()
        await asyncio.wait_for(tasks[0], timeout=10)
        owners.clear()
        await event_log.append_many(
            [new_event(SyncRequested(reason="2"), app=a, actor="t") for a in apps]
        )
        await eventually(
            lambda: set(owners) == set(apps), timeout=30, what="every app handled again"
        )
        assert all(owners[a] == {"r1"} for a in apps)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for log in logs:
            await log.close()


async def test_a_new_partition_layout_starts_where_the_old_one_got_to_and_replaces_it(
    event_log: EventLog,
):
    # Given a consumer with one partition that has handled two messages
    handled: list[str] = []

    async def handler(stored: StoredEvent) -> None:
        handled.append(stored.event.payload.reason)

    settings = ConsumerSettings(name="layout-test", subjects=["wake.evt.*.SyncRequested"])
    await event_log.append_many(
        [new_event(SyncRequested(reason=r), app=f"app-{r}", actor="t") for r in ("1", "2")]
    )
    async with running(event_log, settings, handler):
        await eventually(lambda: handled == ["1", "2"], what="the first two handled")
    # When the service comes back split into three partitions, and more arrives
    await event_log.append_many(
        [new_event(SyncRequested(reason=r), app=f"app-{r}", actor="t") for r in ("3", "4", "5")]
    )
    stop = asyncio.Event()
    task = asyncio.create_task(
        consume(event_log, settings, handler, stop=stop, placement=Placement(partitions=3))
    )
    try:
        await eventually(lambda: len(handled) == 5, what="the three new ones handled")
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)
    # Then only the new messages were handled again, and the old consumer is gone
    assert sorted(handled) == ["1", "2", "3", "4", "5"]
    names = [c.name for c in await event_log.js.consumers_info(STREAM)]
    assert sorted(n for n in names if n.startswith("layout-test")) == [
        "layout-test-p0-of-3",
        "layout-test-p1-of-3",
        "layout-test-p2-of-3",
    ]


async def _held_by_a_replica_that_dies(nats_server: EmbeddedNats, consumer: str) -> int:
    """Take the consumer's next message the way a replica does -- in the pinned
    group, kept alive once -- then vanish without acking, like a SIGKILLed
    process. Returns the delivery count it was given."""
    nc = await nats.connect(nats_server.url)
    try:
        inbox = await nc.subscribe(nc.new_inbox())
        request = json.dumps({"batch": 1, "expires": 1_000_000_000, "group": PRIORITY_GROUP})
        taken: list[Msg] = []

        async def pulled() -> bool:
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer}", request.encode(), inbox.subject
            )
            with contextlib.suppress(nats.errors.TimeoutError):
                message = await inbox.next_msg(timeout=1.5)
                if not (message.headers or {}).get("Status"):
                    taken.append(message)
            return bool(taken)

        # The dead holder's pin times out and its messages come back: seconds.
        await eventually(pulled, timeout=30, what=f"a delivery from {consumer}")
        await taken[0].in_progress()
        return taken[0].metadata.num_delivered
    finally:
        await nc.close()


async def test_a_message_whose_holders_died_again_and_again_comes_back_within_its_ack_deadline(
    nats_server: EmbeddedNats, event_log: EventLog
):
    # Given an approval held, in turn, by three replicas that each died
    # before acknowledging it (a SIGKILLed applier mid-apply, three times)
    settings = ConsumerSettings(name="deaths-test", subjects=["wake.evt.*.SyncRequested"])
    await ensure_consumer(event_log, settings)
    held = await event_log.append(new_event(SyncRequested(reason="1"), app="a", actor="t"))
    deliveries = [await _held_by_a_replica_that_dies(nats_server, "deaths-test") for _ in range(3)]
    assert deliveries == [1, 2, 3]
    died = time.monotonic()
    handled: list[tuple[int, float]] = []

    async def handler(stored: StoredEvent) -> None:
        handled.append((stored.seq, time.monotonic() - died))

    # When a live replica pulls
    async with running(event_log, settings, handler):
        # Then the message comes back within its ack deadline (5 s) and the pin
        # handover, not after the backoff of a fourth delivery (3 min)
        ack_deadline, pin_handover = settings.backoff[0], PIN_TIMEOUT
        await eventually(lambda: handled, timeout=ack_deadline + pin_handover + 5.0)
    assert [seq for seq, _ in handled] == [held.seq]


async def test_a_dead_replicas_message_coming_back_goes_ahead_of_its_apps_later_one_waiting_for_it(
    nats_server: EmbeddedNats, event_log: EventLog
):
    # Given app "a"'s first message (an approval whose apply is in flight) was
    # held by a replica that died, and its second can only succeed after the
    # first was handled (an approval waiting for that apply to finish)
    settings = ConsumerSettings(
        name="comeback-test", subjects=["wake.evt.*.SyncRequested"], concurrency=4
    )
    await ensure_consumer(event_log, settings)
    await event_log.append(new_event(SyncRequested(reason="1"), app="a", actor="t"))
    assert await _held_by_a_replica_that_dies(nats_server, "comeback-test") == 1
    await event_log.append(new_event(SyncRequested(reason="2"), app="a", actor="t"))
    handled: list[str] = []
    failures: list[str] = []

    async def handler(stored: StoredEvent) -> None:
        reason = stored.event.payload.reason
        if reason == "2" and "1" not in handled:
            failures.append(reason)
            raise RuntimeError("apply of 1 in flight")
        handled.append(reason)

    # When a live replica takes the partition: it is given the second at once
    # and the first only after the dead one's ack deadline
    async with running(event_log, settings, handler):
        await eventually(lambda: failures, what="the second tried while the first is away")
        # Then the first, back, is handled ahead of the second waiting to retry,
        # and the second succeeds right after -- not after its retries' backoff
        # (5 s, 15 s, 60 s ...) with the first queued behind it
        deadline = settings.backoff[0] + PIN_TIMEOUT + 5.0
        await eventually(lambda: len(handled) == 2, timeout=deadline, what="both handled")
    assert handled == ["1", "2"]
