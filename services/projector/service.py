"""The projector: folds the log into the PostgreSQL read models, exactly once.

Reads the log with `EventLog.read_raw` from the position stored in the read
models, not with a durable consumer: the position lives in PostgreSQL, in the
same transaction as the rows it accounts for (STYLE 9), so there is no second
position (a consumer's ack floor) that could disagree with it.

Crash semantics: a batch is folded in memory and written by one transaction
that also moves the position. Killed before the commit, nothing of the batch
is in PostgreSQL and the restarted projector reads the batch again from the
old position; killed after, the batch is there and reading resumes after it.
Either way each event is folded exactly once. Nothing is acked: the reader's
consumer is ephemeral and the server drops it when the projector goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import asyncpg
import nats.errors

from events import names
from events.envelope import InvalidEvent
from services.projector import store
from services.projector.folding import ReadModels, fold, keys_needed
from services.wiring import metrics, telemetry
from services.wiring.eventlog import EventLog
from services.wiring.leases import leading
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

BATCH_EVENTS = 500
BATCH_SECONDS = 0.1

_END = object()


def require_database(url: str) -> str:
    if not url:
        raise RuntimeError(
            "the projector needs PostgreSQL: set WAKE_DATABASE_URL, or start one with `wake up`"
        )
    return url


# While PostgreSQL is away (restarted, failed over) the projector waits for it,
# retrying 0.5 s doubling up to 5 s, rather than exit: the log keeps every event
# meanwhile, and it catches up from its stored position once PostgreSQL is back.
_RECONNECT_FIRST, _RECONNECT_MAX = 0.5, 5.0
# No statement of a batch takes this long: one that does is waiting on a server that
# was killed under it (a SIGKILLed postmaster can leave the backend of a connection
# alive, answering nothing), and the projector reconnects rather than wait forever.
_STATEMENT_SECONDS = 20.0
_DATABASE_GONE = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    # A connection whose server died mid-statement can be left with that operation
    # "in progress": the next use raises this ("cannot switch to state ..."), and
    # only a new connection helps.
    asyncpg.exceptions.InternalClientError,
)


async def main(ctx: ServiceContext) -> None:
    """Fold the log into the live read models until `ctx.stop`.

    Of several replicas one folds at a time (a lease); the others stand by.
    """
    url = require_database(ctx.settings.database_url)
    progress = _Progress()
    if ctx.health is not None:
        ctx.health.add_check("postgres", progress.database_ready)
    watching = asyncio.create_task(_watch(ctx, url, progress))
    try:
        await _lead(ctx, url, progress)
    finally:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watching


class _Progress:
    """What the projector's metrics and readiness read: its position, PostgreSQL's state."""

    def __init__(self) -> None:
        self.position = 0
        self.database = "not connected yet"
        self.connected = False

    def database_ready(self) -> tuple[bool, str]:
        return self.connected, self.database


_WATCH_INTERVAL = 5.0
# Links a batch's span keeps to the journeys it folds (the rest are not named).
_LINKS = 16


async def _watch(ctx: ServiceContext, url: str, progress: _Progress) -> None:
    """Every few seconds: the lag behind the log, and the apps by sync and health status.

    Its own connection, so it never waits on a batch's transaction; whichever
    replica leads writes the read models, every replica reports them.
    """
    conn = None
    schema = store.schema_name(store.LIVE_SCHEMA)
    while not ctx.stop.is_set():
        try:
            info = await ctx.log.js.stream_info(names.STREAM)
            metrics.PROJECTOR_LAG.set(max(0, (info.state.last_seq or 0) - progress.position))
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(url, timeout=5, command_timeout=_STATEMENT_SECONDS)
            if await store.schema_exists(conn, schema):
                rows = await conn.fetch(
                    f"SELECT sync_state, health, count(*) AS n FROM {schema}.applications "
                    "WHERE NOT removed GROUP BY sync_state, health"
                )
                by_sync: dict[str, int] = {}
                by_health: dict[str, int] = {}
                for row in rows:
                    sync = row["sync_state"] or "unknown"
                    health = row["health"] or "unknown"
                    by_sync[sync] = by_sync.get(sync, 0) + row["n"]
                    by_health[health] = by_health.get(health, 0) + row["n"]
                metrics.APPS_BY_SYNC.clear()
                metrics.APPS_BY_HEALTH.clear()
                for status, count in by_sync.items():
                    metrics.APPS_BY_SYNC.labels(status).set(count)
                for status, count in by_health.items():
                    metrics.APPS_BY_HEALTH.labels(status).set(count)
        except (*_DATABASE_GONE, asyncpg.PostgresError, nats.errors.Error) as exc:
            log.debug("projector metrics: %r", exc)
            if conn is not None and not conn.is_closed():
                conn.terminate()
            conn = None
        if await ctx.wait_stop(_WATCH_INTERVAL):
            break
    if conn is not None and not conn.is_closed():
        conn.terminate()


async def _lead(ctx: ServiceContext, url: str, progress: _Progress) -> None:
    async with leading(
        ctx.log, "projector", holder=ctx.log.instance, stop=ctx.stop, standing_by=ctx.ready
    ) as leads:
        if leads:
            await _fold_until_stopped(ctx, url, progress)
        else:
            progress.connected, progress.database = True, "standing by (another replica leads)"


async def _fold_until_stopped(ctx: ServiceContext, url: str, progress: _Progress) -> None:
    delay = _RECONNECT_FIRST
    while not ctx.stop.is_set():
        try:
            conn = await asyncpg.connect(url, timeout=5, command_timeout=_STATEMENT_SECONDS)
        except _DATABASE_GONE as exc:
            progress.connected, progress.database = False, f"unreachable: {_why(exc)}"
            log.warning("PostgreSQL unreachable (%s); retrying in %.1fs", _why(exc), delay)
            if await ctx.wait_stop(delay):
                return
            delay = min(delay * 2, _RECONNECT_MAX)
            continue
        delay = _RECONNECT_FIRST
        progress.connected, progress.database = True, "connected"
        try:
            await _project_until_stopped(ctx, conn, progress)
        except nats.errors.Error as exc:
            # NATS away for longer than a read waits (restarting, electing a
            # leader): nothing is lost, the stored position says where to resume.
            log.warning("the log is unreachable (%r); resuming in %.1fs", exc, delay)
            if await ctx.wait_stop(delay):
                return
        except _DATABASE_GONE as exc:
            progress.connected, progress.database = False, f"lost: {_why(exc)}"
            log.warning("lost PostgreSQL (%s); reconnecting", _why(exc))
        finally:
            try:
                await asyncio.wait_for(conn.close(), timeout=2)
            except Exception:
                conn.terminate()


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _project_until_stopped(
    ctx: ServiceContext, conn: asyncpg.Connection, progress: _Progress
) -> None:
    schema = store.schema_name(store.LIVE_SCHEMA)
    applied = await store.migrate(conn, schema)
    if applied:
        log.info("applied %d migration(s) to schema %s", applied, schema)
    while not ctx.stop.is_set():
        position = await store.position(conn, schema)
        progress.position = position
        log.info("projecting from sequence %d into schema %s", position + 1, schema)
        queue: asyncio.Queue = asyncio.Queue(maxsize=BATCH_EVENTS * 4)
        reader = asyncio.create_task(_read(ctx, position + 1, queue))
        ctx.ready()
        try:
            await _project(ctx, conn, schema, queue, reader, position, progress)
        except store.PositionMoved as exc:
            # Another replica folded these events first; carry on after them.
            log.warning("%s; resuming from the stored position", exc)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _read(ctx: ServiceContext, start: int, queue: asyncio.Queue) -> None:
    try:
        async for item in ctx.log.read_raw(from_seq=start, follow=True):
            await queue.put(item)
    finally:
        # Wake the batcher if reading ended for any reason other than cancellation.
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(_END)


async def _project(
    ctx: ServiceContext,
    conn: asyncpg.Connection,
    schema: store.SchemaName,
    queue: asyncio.Queue,
    reader: asyncio.Task,
    position: int,
    progress: _Progress,
) -> None:
    models = ReadModels()
    stopping = asyncio.create_task(ctx.stop.wait())
    try:
        while not ctx.stop.is_set():
            getting = asyncio.create_task(queue.get())
            await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                getting.cancel()
                return
            batch = [getting.result()]
            deadline = time.monotonic() + BATCH_SECONDS
            while len(batch) < BATCH_EVENTS and batch[-1] is not _END:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            ended = batch[-1] is _END
            if ended:
                batch.pop()
            if batch:
                await _commit(ctx.log, conn, schema, models, batch, position)
                position = batch[-1][0]
                progress.position = position
                metrics.PROJECTOR_POSITION.set(position)
            if ended:
                # The reader failed; surface its error so the supervisor restarts us.
                reader.result()
                raise RuntimeError("the projector's reader of the log ended")
    finally:
        stopping.cancel()


async def _commit(
    event_log: EventLog,
    conn: asyncpg.Connection,
    schema: store.SchemaName,
    models: ReadModels,
    batch: list[tuple[int, str, bytes]],
    position: int,
) -> None:
    events = []
    for seq, subject, data in batch:
        # Every fold (live, replay, state) skips the same messages: those that do
        # not decode or verify; each is recorded once as an EventRejected.
        try:
            events.append((seq, await event_log.open(data, seq=seq, subject=subject)))
        except InvalidEvent as exc:
            await event_log.skip(seq, subject, data, exc)
    await store.load(conn, schema, models, (k for _, e in events for k in keys_needed(e)))
    for seq, event in events:
        fold(models, seq, event)
    models.last_seq = batch[-1][0]
    # A batch mixes many journeys: a trace of its own, linked to (a few of) theirs.
    journeys = list(dict.fromkeys(e.traceparent for _, e in events if e.traceparent))
    try:
        with telemetry.new_trace(
            "project events",
            links=journeys[:_LINKS],
            **{"wake.projector.events": len(events), "wake.projector.last_seq": models.last_seq},
        ):
            await store.write_batch(conn, schema, models, expected_position=position)
    finally:
        # Rows are reloaded per batch: the working set stays bounded, and the
        # database, not this process, holds the state.
        models.forget()
