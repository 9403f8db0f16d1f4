"""Rebuilding read models from the log: `wake replay`, its `--verify`, and `wake state --at`.

All of it folds through `folding.fold`, the live projector's own core, so a
replay's rows differ from the live ones only if the live ones were not written
as folded: lost, written twice, or changed by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from events import names
from events.envelope import Envelope, InvalidEvent
from services.projector import store
from services.projector.folding import EventRow, ReadModels, fold
from services.wiring.eventlog import EventLog

# Index rows are sent to PostgreSQL by COPY in chunks of this many, while the
# log is still being read: the whole index of a long log never sits in memory.
EVENTS_CHUNK = 20_000

Progress = Callable[[int, int], None]
"""Called with (events folded so far, sequence reached)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Where a replay stops: after sequence `seq`, or before the first event after `time`.

    The log's order is the truth: a replay `--until TIME` folds the longest
    prefix of the log whose events all occurred at or before TIME, so what it
    shows is a state the read models really passed through.
    """

    seq: int | None = None
    time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """An event of the log no fold takes: it does not decode or verify."""

    seq: int
    subject: str
    reason: str


@dataclass(frozen=True, slots=True)
class Checks:
    """What verifying the events of a replay cost: every event's signature was checked
    (`signatures` Ed25519 verifications, one per batch), in `seconds` in all."""

    events: int = 0
    signatures: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Rebuilt:
    schema: str
    events: int
    last_seq: int
    seconds: float
    refused: tuple[Refused, ...] = ()
    checks: Checks = Checks()

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


class _Opener:
    """Opens each event read as every reader does (decoded and verified), keeping the
    refusals and the time verifying took."""

    def __init__(self, event_log: EventLog) -> None:
        self._log = event_log
        self._trust = event_log.require_trust()
        self._signatures = self._trust.verifier.signatures
        self._verify = self._trust.verifier.verify
        self.refused: list[Refused] = []
        self.events = 0
        self.seconds = 0.0

    @property
    def as_of(self) -> int:
        """Events up to this sequence open without a look at the key events (`catch_up`)."""
        return self._trust.as_of

    async def catch_up(self, seq: int) -> None:
        await self._trust.catch_up(self._log, seq)

    def open(self, seq: int, subject: str, data: bytes) -> Envelope | None:
        """The event, or None if it is refused; call `catch_up(seq)` first if seq > as_of.

        Not a coroutine: a replay calls it a million times, awaiting only the
        rare catch-up.
        """
        started = time.perf_counter()
        try:
            return self._verify(data, seq=seq, subject=subject)
        except InvalidEvent as exc:
            self.refused.append(Refused(seq, subject, str(exc)))
            return None
        finally:
            self.seconds += time.perf_counter() - started
            self.events += 1

    def checks(self) -> Checks:
        signatures = self._trust.verifier.signatures - self._signatures
        return Checks(events=self.events, signatures=signatures, seconds=self.seconds)


async def log_end(event_log: EventLog) -> int:
    """The sequence of the last event in the log now."""
    info = await event_log.js.stream_info(names.STREAM)
    return info.state.last_seq or 0


async def rebuild(
    event_log: EventLog,
    database_url: str,
    schema: store.SchemaName,
    *,
    stop: Stop | None = None,
    progress: Progress | None = None,
) -> Rebuilt:
    """Fold the log from sequence 1 into a fresh `schema` (dropped first if it exists).

    Tables are created bare, the index rows streamed in by COPY while the log
    is read, the other rows loaded by COPY at the end, the secondary indexes
    built last, concurrently. Returns how many events were folded and how fast.
    """
    stop = stop or Stop()
    started = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        await store.drop_schema(conn, schema)
        await store.migrate(conn, schema, tables_only=True)
        models = ReadModels()
        opener = _Opener(event_log)
        folded, last_seq = await _fold_log(opener, event_log, conn, schema, models, stop, progress)
        models.last_seq = last_seq
        indexes = store.index_statements()
        # The index's indexes build while the other rows are loaded; theirs after.
        await asyncio.gather(
            store.write_all(conn, schema, models),
            *(_run(database_url, schema, i.sql) for i in indexes if i.table == "events"),
        )
        await asyncio.gather(
            *(_run(database_url, schema, i.sql) for i in indexes if i.table != "events")
        )
        await store.record_migrations(conn, schema)
    finally:
        await conn.close()
    if progress is not None:
        progress(folded, last_seq)
    return Rebuilt(
        schema,
        folded,
        last_seq,
        time.perf_counter() - started,
        refused=tuple(opener.refused),
        checks=opener.checks(),
    )


async def _fold_log(
    opener: _Opener,
    event_log: EventLog,
    conn: asyncpg.Connection,
    schema: store.SchemaName,
    models: ReadModels,
    stop: Stop,
    progress: Progress | None,
) -> tuple[int, int]:
    copies: asyncio.Queue[list[EventRow] | None] = asyncio.Queue(maxsize=4)
    copier = asyncio.create_task(_copy_events(conn, schema, copies))
    folded = 0
    last_seq = 0
    try:
        reading = event_log.read_raw(from_seq=1, until_seq=stop.seq)
        async with contextlib.aclosing(reading):
            async for seq, subject, data in reading:
                if seq > opener.as_of:
                    await opener.catch_up(seq)
                event = opener.open(seq, subject, data)
                if event is not None:
                    if stop.time is not None and event.occurred_at > stop.time:
                        break
                    fold(models, seq, event)
                folded += 1
                last_seq = seq
                if len(models.events) >= EVENTS_CHUNK:
                    await copies.put(models.events)
                    models.events = []
                    if progress is not None:
                        progress(folded, seq)
        if models.events:
            await copies.put(models.events)
            models.events = []
        await copies.put(None)
        await copier
    finally:
        if not copier.done():
            # Reading failed: the copier is mid-COPY or waiting; the caller
            # closes the connection, which ends either.
            copier.cancel()
    return folded, last_seq


async def _run(database_url: str, schema: store.SchemaName, sql: str) -> None:
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _copy_events(
    conn: asyncpg.Connection, schema: store.SchemaName, chunks: asyncio.Queue
) -> None:
    while (rows := await chunks.get()) is not None:
        await store.copy_events(conn, schema, rows)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A read model's digest in the live schema and in the replay."""

    table: str
    live: store.Digest
    replayed: store.Digest

    @property
    def equal(self) -> bool:
        return self.live.rows == self.replayed.rows and self.live.sha == self.replayed.sha


async def live_snapshot(
    conn: asyncpg.Connection, schema: store.SchemaName
) -> tuple[int, dict[str, store.Digest]]:
    """The live read models' position and digests, read in one snapshot.

    One REPEATABLE READ transaction: a projector committing meanwhile cannot
    make the position and the digests disagree.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        position = await store.position(conn, schema)
        return position, await store.digests(conn, schema)


async def verify(
    event_log: EventLog,
    database_url: str,
    *,
    into: store.SchemaName,
    live: store.SchemaName,
    progress: Progress | None = None,
) -> tuple[Rebuilt, list[Comparison]]:
    """Rebuild into `into` up to the live schema's position and compare every digest."""
    conn = await asyncpg.connect(database_url)
    try:
        position, live_digests = await live_snapshot(conn, live)
        rebuilt = await rebuild(
            event_log, database_url, into, stop=Stop(seq=position), progress=progress
        )
        replayed = await store.digests(conn, into)
    finally:
        await conn.close()
    return rebuilt, [
        Comparison(table, live_digests[table], replayed[table]) for table in store.READ_MODELS
    ]


async def fold_app(event_log: EventLog, app: str, *, at: datetime) -> ReadModels:
    """App `app`'s read models as they were at `at`: its events folded up to that moment."""
    models = ReadModels()
    reading = event_log.read_raw(subjects=[names.app_subjects(app)])
    opener = _Opener(event_log)
    async with contextlib.aclosing(reading):
        async for seq, subject, data in reading:
            if seq > opener.as_of:
                await opener.catch_up(seq)
            event = opener.open(seq, subject, data)
            if event is None:
                continue
            if event.occurred_at > at:
                break
            fold(models, seq, event)
    return models
