"""The log client against a real JetStream server (STYLE 8)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

import msgspec
import nats.js.api as api
import nats.js.errors as js_errors
import pytest

from events import InvalidEvent, encode, new_event
from events.names import BUNDLES, STREAM
from events.payloads import PlanApproved, RevisionDetected, SyncRequested
from events.samples import sample_payloads
from services.wiring.eventlog import (
    DUPLICATE_WINDOW_SECONDS,
    BundleNotFound,
    ConcurrencyConflict,
    EventLog,
    provision,
)
from tests.signing import ADMIN, key_of, register


def sync(app: str = "shop", **kw) -> object:
    return new_event(SyncRequested(**kw), app=app, actor="user:test")


@pytest.fixture
async def base(event_log: EventLog) -> int:
    """The sequence before a test's first event: the keys its events are signed with are
    registered (KeyRegistered on `_wake`) before it."""
    await register(event_log, key_of("user:test"))
    return await event_log.stream_end()


async def app_events(log: EventLog, **kw) -> list:
    """What `read` yields, without the key registrations of the system app."""
    return [s async for s in log.read(**kw) if s.event.app != "_wake"]


async def test_the_stream_has_the_settings_of_the_design(event_log: EventLog):
    info = await event_log.js.stream_info(STREAM)
    config = info.config
    assert config.subjects == ["wake.evt.>"]
    assert config.storage == api.StorageType.FILE
    assert config.deny_delete and config.deny_purge
    assert not config.max_age
    assert config.duplicate_window == DUPLICATE_WINDOW_SECONDS
    await event_log.js.object_store(BUNDLES)


async def test_provisioning_twice_changes_nothing(event_log: EventLog, base: int):
    await event_log.append(sync())
    await provision(event_log.nc)
    info = await event_log.js.stream_info(STREAM)
    assert info.state.messages == base + 1


async def test_appending_the_same_event_twice_stores_it_once_and_reports_the_duplicate(
    event_log: EventLog,
):
    event = sync()
    first = await event_log.append(event)
    second = await event_log.append(event)
    assert (first.duplicate, second.duplicate) == (False, True)
    assert second.seq == first.seq
    stored = await app_events(event_log)
    assert [s.event.event_id for s in stored] == [event.event_id]


async def test_two_concurrent_conditional_appends_one_wins_the_other_gets_the_conflict(
    event_log: EventLog,
):
    await event_log.append(sync())
    position = await event_log.app_position("shop")
    approvals = [
        new_event(PlanApproved(plan_id="p1", via="cli"), app="shop", actor=f"user:{who}")
        for who in ("ada", "grace")
    ]
    results = await asyncio.gather(
        *(event_log.append(e, expected_last_seq=position) for e in approvals),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1 and len(losers) == 1
    assert isinstance(losers[0], ConcurrencyConflict)
    assert losers[0].expected_seq == position
    assert await event_log.app_position("shop") == winners[0].seq


async def test_a_conditional_append_is_scoped_to_its_app(event_log: EventLog, base: int):
    position = await event_log.app_position("shop")
    assert position == 0
    await event_log.append(sync("other"))
    appended = await event_log.append(sync("shop"), expected_last_seq=position)
    assert appended.seq == base + 2


async def test_purging_or_deleting_messages_is_refused_by_the_server(
    event_log: EventLog, base: int
):
    appended = await event_log.append(sync())
    with pytest.raises(js_errors.APIError, match="purge not permitted"):
        await event_log.js.purge_stream(STREAM)
    with pytest.raises(js_errors.APIError, match="delete not permitted"):
        await event_log.js.delete_msg(STREAM, appended.seq)
    info = await event_log.js.stream_info(STREAM)
    assert info.state.messages == base + 1


async def test_replay_returns_events_in_sequence_order_and_decodes_every_type(
    event_log: EventLog, base: int
):
    # (each by the admin: the only identity entitled to every type, key events included)
    events = [
        new_event(payload, app=f"app-{i % 3}", actor="admin")
        for i, payload in enumerate(sample_payloads() * 3)
    ]
    appended = await event_log.append_many(events)
    expected = list(range(base + 1, base + len(events) + 1))
    assert [a.seq for a in appended] == expected
    replayed = [s async for s in event_log.read(from_seq=base + 1)]
    assert [s.seq for s in replayed] == expected
    assert [s.event for s in replayed] == [
        msgspec.structs.replace(e, signer=ADMIN.key_id) for e in events
    ]


async def test_reading_from_a_sequence_with_filters_and_until(event_log: EventLog, base: int):
    await event_log.append_many([sync(app, reason=str(i)) for i in range(10) for app in ("a", "b")])
    only_b = [s async for s in event_log.read(subjects=["wake.evt.b.>"], from_seq=base + 5)]
    assert [s.seq - base for s in only_b] == [6, 8, 10, 12, 14, 16, 18, 20]
    bounded = [s.seq - base async for s in event_log.read(from_seq=base + 3, until_seq=base + 7)]
    assert bounded == [3, 4, 5, 6, 7]
    both = [s.seq - base async for s in event_log.read(subjects=["wake.evt.a.>", "wake.evt.b.>"])]
    assert both == list(range(1, 21))
    assert [s async for s in event_log.read(from_seq=base + 21)] == []


async def test_reading_from_a_time(event_log: EventLog):
    await event_log.append_many([sync(reason="before") for _ in range(3)])
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)  # the server's clock must move past `middle`
    await event_log.append_many([sync(reason="after") for _ in range(2)])
    later = [s async for s in event_log.read(since=middle)]
    assert [s.event.payload.reason for s in later] == ["after", "after"]


async def test_following_the_log_yields_events_appended_later(event_log: EventLog, base: int):
    await event_log.append(sync(reason="0"))
    seen: list[str] = []

    async def follow() -> None:
        async for stored in event_log.read(follow=True, from_seq=base + 1):
            seen.append(stored.event.payload.reason)
            if len(seen) == 3:
                return

    task = asyncio.create_task(follow())
    await event_log.append_many([sync(reason="1"), sync(reason="2")])
    await asyncio.wait_for(task, timeout=10)
    assert seen == ["0", "1", "2"]


async def test_the_last_event_of_a_type_for_an_app(event_log: EventLog, base: int):
    assert await event_log.last_event("shop", "SyncRequested") is None
    await event_log.append_many([sync(reason="1"), sync(reason="2"), sync("other", reason="3")])
    last = await event_log.last_event("shop", "SyncRequested")
    assert last is not None and last.seq == base + 2 and last.event.payload.reason == "2"


async def _rejections(event_log: EventLog) -> list:
    return [s.event.payload async for s in event_log.read(subjects=["wake.evt.*.EventRejected"])]


async def test_a_read_skips_a_garbage_message_and_records_it_once_naming_its_sequence(
    event_log: EventLog,
):
    # Given a valid event, garbage on the same subject, and another valid event
    await event_log.append(sync(reason="1"))
    garbage = (await event_log.js.publish("wake.evt.shop.SyncRequested", b"{garbage")).seq
    await event_log.append(sync(reason="3"))
    # When the log is read twice
    told: list[tuple[int, str]] = []
    for _ in range(2):
        read = [
            s.event.payload.reason
            async for s in event_log.read(
                subjects=["wake.evt.shop.SyncRequested"],
                on_invalid=lambda seq, exc: told.append((seq, str(exc))),
            )
        ]
        # Then both valid events are read, the garbage is not
        assert read == ["1", "3"]
    # and the reader was told each time, naming the sequence
    assert [seq for seq, _ in told] == [garbage, garbage]
    assert f"stream sequence {garbage} (wake.evt.shop.SyncRequested)" in told[0][1]
    # and the log holds one rejection naming the sequence, the reader and why
    (rejection,) = await _rejections(event_log)
    assert rejection.stream_seq == garbage and rejection.consumer == "tests"
    assert "not a JSON event" in rejection.error and rejection.excerpt == "{garbage"


async def test_an_event_on_another_events_subject_is_refused_like_garbage(event_log: EventLog):
    # Given a SyncRequested of app "other" published on shop's PlanApproved subject
    forged = new_event(SyncRequested(reason="forged"), app="other", actor="user:test")
    moved = (await event_log.js.publish("wake.evt.shop.PlanApproved", encode(forged))).seq
    await event_log.append(sync(reason="real"))
    # Then no reader takes it for what its subject says, nor for what it says it is
    read = [s.event async for s in event_log.read(subjects=["wake.evt.shop.>", "wake.evt.other.>"])]
    assert [e.payload.reason for e in read if e.type == "SyncRequested"] == ["real"]
    assert await event_log.last_event("shop", "PlanApproved") is None
    (rejection,) = await _rejections(event_log)
    assert rejection.stream_seq == moved


async def test_the_last_event_of_a_subject_is_the_last_valid_one(event_log: EventLog):
    good = await event_log.append(sync(reason="good"))
    garbage = (await event_log.js.publish("wake.evt.shop.SyncRequested", b"\x00not json")).seq
    last = await event_log.last_event("shop", "SyncRequested")
    assert last is not None and last.seq == good.seq and last.event.payload.reason == "good"
    (rejection,) = await _rejections(event_log)
    assert rejection.stream_seq == garbage


async def test_bundles_are_content_addressed(event_log: EventLog):
    data = b"apiVersion: v1\nkind: ConfigMap\n" * 1000
    digest = await event_log.put_bundle(data)
    assert await event_log.put_bundle(data) == digest
    assert await event_log.get_bundle(digest) == data
    with pytest.raises(BundleNotFound, match="0" * 64):
        await event_log.get_bundle("0" * 64)


async def test_appending_many_is_idempotent_even_when_partly_stored(event_log: EventLog, base: int):
    events = [sync(reason=str(i)) for i in range(1500)]
    first = await event_log.append_many(events[:700])
    again = await event_log.append_many(events)
    assert [a.duplicate for a in again] == [True] * 700 + [False] * 800
    assert [a.seq for a in again[:700]] == [a.seq for a in first]
    assert [a.seq - base for a in again[700:]] == list(range(701, 1501))


async def test_a_conditional_batch_conflicts_as_a_whole(event_log: EventLog, base: int):
    first = await event_log.append(sync())
    stale = 0
    with pytest.raises(ConcurrencyConflict):
        await event_log.append_many([sync(), sync()], expected_last_seq=stale)
    appended = await event_log.append_many([sync(), sync()], expected_last_seq=first.seq)
    assert [a.seq - base for a in appended] == [2, 3]
    info = await event_log.js.stream_info(STREAM)
    assert info.state.messages == base + 3


async def test_an_event_its_readers_would_reject_is_refused_before_it_reaches_the_log(
    event_log: EventLog, base: int
):
    bad = new_event(
        RevisionDetected(
            repo_url="https://git.example.com/a.git",
            ref="main",
            commit="not-a-commit",
            committed_at=datetime.now(UTC),
        ),
        app="shop",
        actor="user:test",
    )
    with pytest.raises(InvalidEvent, match="commit") as caught:
        await event_log.append(bad)
    assert caught.value.field == "$.payload.commit"
    with pytest.raises(InvalidEvent):
        await event_log.append_many([sync(), bad])
    info = await event_log.js.stream_info(STREAM)
    assert info.state.messages == base


async def test_bundles_read_by_direct_gets_are_object_store_objects(event_log: EventLog):
    """Bundles are read without nats-py's ObjectStore.get (one consumer per get), yet stay
    in the object store's format: any object store client reads what Wake wrote, one
    chunk or several, and Wake reads them back alike."""
    store = await event_log.js.object_store(BUNDLES)
    small = b"kind: ConfigMap\n" * 10
    digest = await event_log.put_bundle(small)
    assert (await store.get(digest)).data == small
    assert await event_log.get_bundle(digest) == small

    large = bytes(range(256)) * 2000 + b"!"  # 512001 bytes: four 128 KiB chunks
    large_digest = await event_log.put_bundle(large)
    assert large_digest == hashlib.sha256(large).hexdigest()
    assert (await store.get_info(large_digest)).chunks == 4
    assert (await store.get(large_digest)).data == large
    assert await event_log.get_bundle(large_digest) == large


async def test_garbage_on_a_subject_does_not_make_its_conditional_appends_conflict(
    event_log: EventLog,
):
    # Given an app's last event at seq 1, then garbage on its subject
    first = await event_log.append(sync(reason="1"))
    await event_log.js.publish("wake.evt.shop.SyncRequested", b"garbage")
    # When an append expects the app's last event to be seq 1
    appended = await event_log.append(sync(reason="2"), expected_last_seq=first.seq)
    # Then it lands after the garbage (and the record of its rejection): nothing
    # that decides anything came in between
    assert appended.seq > 2
    assert (await event_log.last_event("shop", "SyncRequested")).event.payload.reason == "2"
    # But a real event in between is a conflict, garbage or not
    await event_log.js.publish("wake.evt.shop.SyncRequested", b"more garbage")
    await event_log.append(sync(reason="4"))
    with pytest.raises(ConcurrencyConflict):
        await event_log.append(sync(reason="5"), expected_last_seq=appended.seq)
    with pytest.raises(ConcurrencyConflict):
        await event_log.append_many([sync(reason="5")], expected_last_seq=appended.seq)
async def test_concurrent_appends_are_committed_together_each_call_keeping_its_promises(
    event_log: EventLog,
):
    # Given events already in the log, appended twenty at once
    earlier = [sync(f"app-{i % 3}") for i in range(20)]
    appended = await asyncio.gather(*(event_log.append(e) for e in earlier))
    assert [a.event_id for a in appended] == [e.event_id for e in earlier]
    assert len({a.seq for a in appended}) == 20 and not any(a.duplicate for a in appended)
    known = earlier[7]
    # When forty single appends (one of them the known event again) and three
    # batches of five are made at once through one client
    singles = [sync(f"app-{i % 7}") for i in range(40)]
    singles[13] = known
    batches = [[sync(f"batch-{b}") for _ in range(5)] for b in range(3)]
    results = await asyncio.gather(
        *(event_log.append(e) for e in singles),
        *(event_log.append_many(batch) for batch in batches),
    )
    # Then every event is stored once, where its call says
    stored = {
        s.event.event_id: s.seq
        async for s in event_log.read(subjects=["wake.evt.*.SyncRequested"])
    }
    assert len(stored) == 20 + 39 + 15
    for event, appended in zip(singles, results[:40], strict=True):
        assert appended.event_id == event.event_id
        assert appended.seq == stored[event.event_id]
    # and the known one comes back as a duplicate at its first place
    assert results[13].duplicate and not any(
        r.duplicate for i, r in enumerate(results[:40]) if i != 13
    )
    # and each batch is stored in order at consecutive sequences (all or nothing)
    for batch, appended in zip(batches, results[40:], strict=True):
        seqs = [a.seq for a in appended]
        assert seqs == [stored[e.event_id] for e in batch]
        assert seqs == list(range(seqs[0], seqs[0] + 5))


async def test_concurrent_conditional_appends_of_different_apps_each_get_their_own_verdict(
    event_log: EventLog,
):
    # Given ten apps with one event each
    firsts = [await event_log.append(sync(f"app-{i}")) for i in range(10)]
    # When each app's next event is appended at once, conditionally on that
    # first event -- app-3's expecting a position that is not its last
    nexts = [sync(f"app-{i}") for i in range(10)]
    outcomes = await asyncio.gather(
        *(
            event_log.append(
                event,
                expected_last_seq=first.seq if i != 3 else first.seq - 1,
                on_subjects=f"wake.evt.app-{i}.>",
            )
            for i, (event, first) in enumerate(zip(nexts, firsts, strict=True))
        ),
        *(event_log.append(sync("bystander")) for _ in range(5)),
        return_exceptions=True,
    )
    # Then app-3's append lost, and only it
    assert isinstance(outcomes[3], ConcurrencyConflict)
    assert not any(isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 3)
    stored = {
        s.event.event_id async for s in event_log.read(subjects=["wake.evt.*.SyncRequested"])
    }
    assert nexts[3].event_id not in stored
    assert {e.event_id for i, e in enumerate(nexts) if i != 3} <= stored
    assert len(stored) == 10 + 9 + 5
