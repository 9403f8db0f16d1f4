"""Durable consumers: how every service takes its input from the log.

Pull, explicit ack, bounded redelivery with backoff. A message that can never
be handled -- it does not decode, or the handler failed on every delivery --
is recorded as an EventRejected event and acknowledged: never retried forever,
never dropped silently (DESIGN §2). The message itself stays in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats.errors
import nats.js.api as api
import nats.js.errors as js_errors
from nats.aio.msg import Msg

from events import names
from events.envelope import InvalidEvent, decode, derived_event_id, new_event
from events.payloads import EventRejected
from services.wiring import telemetry
from services.wiring.eventlog import EventLog, StoredEvent

log = logging.getLogger(__name__)

# Redelivery delays after a delivery that was neither acked nor nakked (the
# handler's process died, or hung past its ack deadline): 5 s, 15 s, 1 min,
# 3 min, 5 min -- ~9.5 min in all, inside the log's one-hour duplicate window,
# so a re-derived event is still recognised as a duplicate.
DEFAULT_BACKOFF: tuple[float, ...] = (5.0, 15.0, 60.0, 180.0, 300.0)

Handler = Callable[[StoredEvent], Awaitable[None]]

# What a fetch fails with while NATS is away or a cluster elects a new leader
# for the consumer (a node died): the consumer is durable, so wait and ask again.
_LOG_AWAY = (
    js_errors.ServiceUnavailableError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
)
_RETRY_FETCH = 0.5


class Deferred(Exception):
    """Raised by a handler whose message is not due yet: redeliver it in `seconds`.

    Not a failure: the message is nakked with that delay (JetStream keeps it,
    so a restart or another replica still gets it), and only runs out of
    deliveries if it is deferred more often than the consumer allows.
    """

    def __init__(self, seconds: float, why: str = "") -> None:
        super().__init__(why or f"not due for {seconds:.1f}s")
        self.seconds = max(seconds, 0.0)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How one durable consumer takes its messages.

    `backoff[i]` is the wait before delivery i+2 when delivery i+1 was not
    acknowledged; a handler error naks with the same delays. After
    `len(backoff) + 1` deliveries the message is rejected.
    """

    name: str
    subjects: Sequence[str]
    backoff: Sequence[float] = DEFAULT_BACKOFF
    batch: int = 32
    deliver_policy: api.DeliverPolicy = api.DeliverPolicy.ALL
    # Messages handled at once, never two of one app: an app's messages are
    # handled one after another, in log order; different apps' side by side.
    # 1 keeps the whole consumer in log order (what a projection needs).
    concurrency: int = 1

    @property
    def max_deliver(self) -> int:
        return len(self.backoff) + 1


class ConsumerMissing(RuntimeError):
    """A service's durable consumer does not exist, and the service may not create it."""


async def ensure_consumer(event_log: EventLog, settings: ConsumerSettings) -> None:
    """Create the durable consumer, or update it to `settings` -- if this connection may.

    Only the admin manages consumers (`EventLog.manages`): the admin provisions
    every service's (`wake up`, `wake infra up`, `wake infra provision`), and a
    service connected as itself only checks that its own exists, and refuses
    to start, naming the command, if not.
    """
    if not event_log.manages:
        await require_consumer(event_log, settings.name)
        return
    config = api.ConsumerConfig(
        durable_name=settings.name,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=settings.deliver_policy,
        max_deliver=settings.max_deliver,
        # JetStream applies `backoff` to deliveries that time out; the first
        # entry is the ack deadline (it overrides ack_wait).
        ack_wait=settings.backoff[0],
        backoff=list(settings.backoff),
        max_ack_pending=max(settings.batch * 4, settings.concurrency * 2, 256),
    )
    if len(settings.subjects) == 1:
        config.filter_subject = settings.subjects[0]
    else:
        config.filter_subjects = list(settings.subjects)
    try:
        await event_log.js.add_consumer(names.STREAM, config)
    except js_errors.BadRequestError:
        # The consumer exists with other settings; some (deliver policy) cannot
        # change, the rest converge.
        existing = await event_log.js.consumer_info(names.STREAM, settings.name)
        config.deliver_policy = existing.config.deliver_policy
        config.opt_start_seq = existing.config.opt_start_seq
        await event_log.js.add_consumer(names.STREAM, config)


async def require_consumer(event_log: EventLog, name: str) -> None:
    """Raise ConsumerMissing unless the durable consumer `name` exists on the stream."""
    try:
        await event_log.js.consumer_info(names.STREAM, name)
    except js_errors.NotFoundError:
        raise ConsumerMissing(
            f"durable consumer {name!r} of stream {names.STREAM} does not exist, and "
            f"{event_log.identity or 'this identity'} may not create it: provision it as the "
            "admin with `wake infra provision` (wake up and wake infra up do so at start)"
        ) from None


async def consume(
    event_log: EventLog,
    settings: ConsumerSettings,
    handler: Handler,
    *,
    stop: asyncio.Event | None = None,
    concurrency: int | None = None,
) -> None:
    """Feed every message of the durable consumer to `handler`, in order, until `stop`.

    `concurrency` (default: the settings') is how many apps are handled at once.

    The handler is called once per delivery; it must be idempotent (derive
    its events' ids from the input's, so JetStream drops a re-append). A
    handler that returns has its message acked; one that raises gets it
    redelivered with backoff, and on the last delivery it is rejected.
    """
    stop = stop or asyncio.Event()
    if concurrency is not None:
        settings = dataclasses.replace(settings, concurrency=concurrency)
    await ensure_consumer(event_log, settings)
    subscription = await event_log.js.pull_subscribe_bind(settings.name, stream=names.STREAM)
    lanes = _Lanes(event_log, settings, handler) if settings.concurrency > 1 else None
    away = False
    try:
        while not stop.is_set():
            try:
                messages = await subscription.fetch(settings.batch, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                # No message within the second (nats-py raises either type); look
                # at `stop` and ask again.
                messages = []
            except _LOG_AWAY as exc:
                if not away:
                    log.warning(
                        "%s: the log is unavailable (%s); asking again every %.1fs",
                        settings.name,
                        type(exc).__name__,
                        _RETRY_FETCH,
                    )
                    away = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _RETRY_FETCH)
                continue
            if away and event_log.nc.is_connected:
                log.info("%s: the log is available again", settings.name)
                away = False
            for message in messages:
                if settings.concurrency <= 1:
                    await _handle(event_log, settings, handler, message)
                else:
                    await lanes.dispatch(message)
    finally:
        if lanes is not None:
            await lanes.drain()
        with contextlib.suppress(nats.errors.Error):
            await subscription.unsubscribe()


class _Lanes:
    """Up to `concurrency` handlers at once, one lane per app keeping its order."""

    def __init__(self, event_log: EventLog, settings: ConsumerSettings, handler: Handler) -> None:
        self._handle = functools.partial(_handle, event_log, settings, handler)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._lanes: dict[str, asyncio.Lock] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def dispatch(self, message: Msg) -> None:
        await self._slots.acquire()
        parsed = names.parse_subject(message.subject)
        key = parsed[0] if parsed is not None else message.subject
        # Locks are taken in dispatch order (asyncio.Lock wakes waiters FIFO), so
        # an app's messages are handled in the order they were fetched.
        lane = self._lanes.setdefault(key, asyncio.Lock())
        task = asyncio.create_task(self._run(lane, message))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, lane: asyncio.Lock, message: Msg) -> None:
        try:
            async with lane:
                await self._handle(message)
        except Exception:
            log.exception("handling %s failed", message.subject)
        finally:
            self._slots.release()

    async def drain(self) -> None:
        """Let the handlers under way finish (their messages are then acked)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)


async def _handle(
    event_log: EventLog, settings: ConsumerSettings, handler: Handler, message: Msg
) -> None:
    metadata = message.metadata
    seq = metadata.sequence.stream
    deliveries = metadata.num_delivered
    try:
        event = decode(message.data)
    except InvalidEvent as exc:
        await reject(
            event_log,
            consumer=settings.name,
            seq=seq,
            subject=message.subject,
            data=message.data,
            error=str(exc),
            event_id=exc.event_id,
            deliveries=deliveries,
        )
        await message.ack()
        return
    stored = StoredEvent(
        seq=seq, subject=message.subject, event=event, stored_at=metadata.timestamp
    )
    keepalive = asyncio.create_task(_keep_in_progress(message, settings.backoff[0]))
    try:
        with telemetry.span_for(event, settings.name):
            await handler(stored)
    except Deferred as deferred:
        if deliveries < settings.max_deliver:
            await message.nak(delay=deferred.seconds)
            return
        await reject(
            event_log,
            consumer=settings.name,
            seq=seq,
            subject=message.subject,
            data=message.data,
            error=f"still deferred ({deferred}) after {deliveries} deliveries",
            event_id=event.event_id,
            deliveries=deliveries,
        )
        await message.term()
        return
    except Exception as exc:
        if deliveries >= settings.max_deliver:
            log.exception(
                "%s: giving up on seq %d after %d deliveries", settings.name, seq, deliveries
            )
            await reject(
                event_log,
                consumer=settings.name,
                seq=seq,
                subject=message.subject,
                data=message.data,
                error=f"handler failed on all {deliveries} deliveries: {exc!r}",
                event_id=event.event_id,
                deliveries=deliveries,
            )
            await message.term()
        else:
            delay = settings.backoff[min(deliveries - 1, len(settings.backoff) - 1)]
            log.warning(
                "%s: handler failed on seq %d (delivery %d), retrying in %.0fs: %r",
                settings.name,
                seq,
                deliveries,
                delay,
                exc,
            )
            await message.nak(delay=delay)
        return
    finally:
        keepalive.cancel()
    await message.ack()


async def _keep_in_progress(message: Msg, ack_wait: float) -> None:
    # A handler may legitimately take longer than the ack deadline (an apply
    # waiting on a slow API server); tell JetStream it is still being worked
    # on so it is not redelivered to another replica meanwhile.
    while True:
        await asyncio.sleep(max(ack_wait / 3, 0.2))
        with contextlib.suppress(nats.errors.Error):
            await message.in_progress()


async def reject(
    event_log: EventLog,
    *,
    consumer: str,
    seq: int,
    subject: str,
    data: bytes,
    error: str,
    event_id: str | None = None,
    deliveries: int = 1,
) -> None:
    """Record that `consumer` skipped the message at `seq`, once however often it is called."""
    parsed = names.parse_subject(subject)
    app = names.SYSTEM_APP
    if parsed is not None:
        with contextlib.suppress(names.InvalidName):
            app = names.app_name(parsed[0])
    payload = EventRejected(
        stream_seq=seq,
        subject=subject,
        consumer=consumer,
        error=error,
        deliveries=deliveries,
        rejected_event_id=event_id,
        size=len(data),
        excerpt=data[:256].decode("utf-8", errors="replace"),
    )
    cause_id = derived_event_id(f"{names.STREAM}/{seq}", "Delivery", consumer)
    rejected = new_event(
        payload,
        app=app,
        actor=f"consumer:{consumer}",
        event_id=derived_event_id(cause_id, EventRejected.event_type),
        correlation_id=event_id or cause_id,
    )
    await event_log.append(rejected)
    log.error("%s: rejected seq %d on %s: %s", consumer, seq, subject, error)
