"""The notifier service on a real JetStream server, POSTing to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

from events import new_event
from events.envelope import Envelope, derived_event_id
from events.names import STREAM
from events.payloads import NotificationFailed, NotificationSent
from events.samples import sample_payloads
from services.notifier.service import CONSUMER, main
from services.notifier.signing import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verify
from services.wiring.consumers import ensure_consumer
from services.wiring.eventlog import EventLog, StoredEvent
from services.wiring.metrics import EVENTS_HANDLED
from services.wiring.runtime import ServiceContext
from services.wiring.settings import Settings
from tests.notifier.receiver import Receiver
from tests.waiting import eventually

SECRET = "webhook-secret-7f3a"
SAMPLES = {type(p).event_type: p for p in sample_payloads()}


def sample(event_type: str, app: str = "shop") -> Envelope:
    return new_event(SAMPLES[event_type], app=app, actor="service:applier")


@contextlib.asynccontextmanager
async def notifier(
    event_log: EventLog, tmp_path: Path, **options: object
) -> AsyncIterator[ServiceContext]:
    """The service's main(ctx) as a task, once it has said it is ready."""
    ready = tmp_path / "notifier.ready"
    ready.unlink(missing_ok=True)
    options = {"notify_secret": SECRET, "notify_backoff": 0.01, **options}
    ctx = ServiceContext(
        name="notifier", settings=Settings(**options), log=event_log, ready_file=ready
    )
    task = asyncio.create_task(main(ctx))
    await eventually(lambda: ready.exists() or task.done(), what="the notifier ready")
    if task.done():
        task.result()
    try:
        yield ctx
    finally:
        ctx.stop.set()
        await asyncio.wait_for(task, timeout=15)


async def records(log: EventLog) -> list[StoredEvent]:
    subjects = ["wake.evt.*.NotificationSent", "wake.evt.*.NotificationFailed"]
    return [s async for s in log.read(subjects=subjects)]


async def handled_up_to(log: EventLog, seq: int) -> bool:
    info = await log.js.consumer_info(STREAM, CONSUMER.name)
    return info.ack_floor.stream_seq >= seq


async def test_a_chosen_event_is_posted_signed_and_recorded_as_sent(event_log, tmp_path):
    async with (
        Receiver() as receiver,
        notifier(event_log, tmp_path, notify_url=receiver.url, notify_events="ApplySucceeded"),
    ):
        applied = sample("ApplySucceeded")
        stored = await event_log.append(applied)
        await eventually(lambda: records(event_log), what="a NotificationSent")

    [post] = receiver.received
    assert verify(post.body, post.headers[SIGNATURE_HEADER], SECRET)
    assert post.headers[EVENT_HEADER] == "ApplySucceeded"
    assert post.headers[DELIVERY_HEADER] == applied.event_id
    body = json.loads(post.body)
    assert body["event"]["event_id"] == applied.event_id
    assert body["seq"] == stored.seq
    assert body["summary"] == "shop: applied 3f1e9a4: 3 resources"

    [record] = await records(event_log)
    assert record.event.payload == NotificationSent(
        channel="webhook",
        about_event_id=applied.event_id,
        about_type="ApplySucceeded",
        attempts=1,
        status_code=200,
    )
    assert record.event.event_id == derived_event_id(
        applied.event_id, "NotificationSent", "webhook"
    )
    assert record.event.causation_id == applied.event_id
    assert record.event.correlation_id == applied.correlation_id
    assert record.event.app == "shop"


async def test_an_unchosen_event_is_not_posted(event_log, tmp_path):
    async with (
        Receiver() as receiver,
        notifier(event_log, tmp_path, notify_url=receiver.url, notify_events="ApplySucceeded"),
    ):
        unchosen = await event_log.append(sample("RevisionDetected"))
        # the chosen event after it is the sign the unchosen one was handled
        chosen = await event_log.append(sample("ApplySucceeded"))
        await eventually(lambda: handled_up_to(event_log, chosen.seq), what="both handled")
        await eventually(lambda: records(event_log), what="a record")
    assert [json.loads(p.body)["seq"] for p in receiver.received] == [chosen.seq]
    assert [r.event.payload.about_event_id for r in await records(event_log)] == [chosen.event_id]
    assert unchosen.seq < chosen.seq


async def test_an_event_of_a_type_no_channel_hears_is_acknowledged_unread(event_log, tmp_path):
    # Most of a fan-out's events go to no channel: they cost an ack, not a
    # decoding, a signature check and a span.
    def skipped() -> float:
        return EVENTS_HANDLED.labels("notifier", "ManifestsRendered", "skipped")._value.get()

    before = skipped()
    async with (
        Receiver() as receiver,
        notifier(event_log, tmp_path, notify_url=receiver.url, notify_events="ApplySucceeded"),
    ):
        # Not even an event: had the notifier read it, it would have rejected it.
        await event_log.js.publish("wake.evt.shop.ManifestsRendered", b"not an event")
        chosen = await event_log.append(sample("ApplySucceeded"))
        await eventually(lambda: handled_up_to(event_log, chosen.seq), what="both handled")
        await eventually(lambda: records(event_log), what="a record")
    assert skipped() == before + 1
    assert [json.loads(p.body)["seq"] for p in receiver.received] == [chosen.seq]
    rejected = [s async for s in event_log.read(subjects=["wake.evt.*.EventRejected"])]
    assert rejected == []


async def test_two_503s_then_200_is_sent_on_the_third_attempt(event_log, tmp_path):
    async with (
        Receiver(statuses=[503, 503]) as receiver,
        notifier(event_log, tmp_path, notify_url=receiver.url, notify_events="ApplyFailed"),
    ):
        failed = await event_log.append(sample("ApplyFailed"))
        await eventually(lambda: records(event_log), what="a record")
    [record] = await records(event_log)
    assert isinstance(record.event.payload, NotificationSent)
    assert (record.event.payload.attempts, record.event.payload.status_code) == (3, 200)
    assert record.event.payload.about_event_id == failed.event_id
    assert len(receiver.received) == 3
    # every retry carries the same delivery id and the same signed bytes
    assert len({(p.body, p.headers[DELIVERY_HEADER]) for p in receiver.received}) == 1


async def test_a_receiver_that_always_fails_is_recorded_as_failed_after_every_attempt(
    event_log, tmp_path
):
    async with (
        Receiver(default=500) as receiver,
        notifier(
            event_log,
            tmp_path,
            notify_url=receiver.url,
            notify_events="ApplySucceeded",
            notify_retries=4,
        ),
    ):
        await event_log.append(sample("ApplySucceeded"))
        await eventually(lambda: records(event_log), what="a record")
    [record] = await records(event_log)
    payload = record.event.payload
    assert isinstance(payload, NotificationFailed)
    assert payload.attempts == 4
    assert payload.error == "HTTP 500 Internal Server Error: answer 4: 500"
    assert len(receiver.received) == 4


async def test_a_400_fails_at_once_without_retries(event_log, tmp_path):
    async with (
        Receiver(default=400) as receiver,
        notifier(event_log, tmp_path, notify_url=receiver.url, notify_events="ApplySucceeded"),
    ):
        await event_log.append(sample("ApplySucceeded"))
        await eventually(lambda: records(event_log), what="a record")
    [record] = await records(event_log)
    assert isinstance(record.event.payload, NotificationFailed)
    assert record.event.payload.attempts == 1
    assert record.event.payload.error.startswith("HTTP 400 Bad Request")
    assert len(receiver.received) == 1


async def test_an_event_recorded_before_the_crash_is_not_posted_again(event_log, tmp_path):
    """The notifier appended its record, then died before acking: the event comes again."""
    await ensure_consumer(event_log, CONSUMER)
    applied = sample("ApplySucceeded")
    await event_log.append(applied)
    recorded_before = new_event(
        NotificationSent(
            channel="webhook",
            about_event_id=applied.event_id,
            about_type="ApplySucceeded",
            status_code=200,
        ),
        app="shop",
        actor="service:notifier",
        cause=applied,
        key="webhook",
    )
    await event_log.append(recorded_before)
    async with (
        Receiver() as receiver,
        notifier(event_log, tmp_path, notify_url=receiver.url, notify_events="ApplySucceeded"),
    ):
        later = sample("ApplySucceeded")
        await event_log.append(later)

        async def two_records() -> bool:
            return len(await records(event_log)) == 2

        await eventually(two_records, what="the later event's record")
    assert [json.loads(p.body)["event"]["event_id"] for p in receiver.received] == [later.event_id]
    assert sorted(r.event.payload.about_event_id for r in await records(event_log)) == sorted(
        [applied.event_id, later.event_id]
    )


async def test_with_no_channel_the_service_runs_and_routes_nothing(event_log, tmp_path):
    async with notifier(event_log, tmp_path, notify_url="", notify_events="ApplySucceeded"):
        applied = await event_log.append(sample("ApplySucceeded"))
        await eventually(lambda: handled_up_to(event_log, applied.seq), what="handled")
    assert await records(event_log) == []


async def test_the_secret_never_reaches_the_log_or_the_logs(event_log, tmp_path, caplog):
    caplog.set_level("DEBUG")
    async with (
        Receiver(statuses=[503]) as receiver,
        notifier(
            event_log,
            tmp_path,
            notify_url=receiver.url,
            notify_events="ApplySucceeded,ApplyFailed",
            notify_retries=2,
        ),
    ):
        await event_log.append(sample("ApplySucceeded"))
        await event_log.append(sample("ApplyFailed"))

        async def two_records() -> bool:
            return len(await records(event_log)) == 2

        await eventually(two_records, what="two records")
    everything = b"".join([data async for _seq, _subject, data in event_log.read_raw()])
    assert SECRET.encode() not in everything
    assert SECRET not in caplog.text
    assert "sent ApplySucceeded" in caplog.text and "attempt 1/2" in caplog.text
