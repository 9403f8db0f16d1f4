"""Durable consumers: how every service takes its input from the log.

Pull, explicit ack, bounded redelivery with backoff. A message that can never
be handled -- it does not decode, or the handler failed on every delivery --
is recorded as an EventRejected event and acknowledged: never retried forever,
never dropped silently (DESIGN §2). The message itself stays in the log.

**Order.** An app's messages are handled strictly in log order, one at a time
(`_Lanes`); different apps' side by side. A message fetched while its app's
lane is busy waits in the lane and is kept alive (`in_progress`) so its ack
deadline never runs out: it cannot be redelivered ahead of the one in progress.
A handler error does not give the lane up: the message is retried in place
after its backoff delay, and the app's later messages wait until it is handled
or, after its last delivery, rejected. A lane is kept in log order, not in
order of arrival: an earlier message of the app that arrives late (a dead
replica's, redelivered after its ack deadline to the partition's new holder,
which was given the app's later messages at once) goes ahead of them, and cuts
short the retry wait of one that failed -- it may be the very message the
failing one waits for (the approval whose apply is in flight). The one way out
of order is `Deferred`: a handler that says "not due yet" (the applier's
scheduled retries) has its message nakked with the delay and the lane goes on
with the app's later messages -- a deferred message must never block its app
for the length of its delay, and a handler that defers must be right whatever
was handled meanwhile (the applier checks it does not apply an older plan over
a newer one).

**Replicas.** Any service may run as several processes. Each consumer is split
into `partitions` durable consumers (`<name>-p<i>-of-<n>`; with one partition,
the consumer keeps its plain name). An app's messages belong to partition
`crc32(app) % n`. Every partition consumer has a pinned-client priority group
(NATS ADR-42, nats-server >= 2.11): JetStream delivers its messages to one
client at a time -- the one it pinned -- and hands the pin to another client
pulling from the group once the pinned one has not pulled for `PIN_TIMEOUT`.
So each app is owned by one replica at a time, and when a replica dies its
partitions move to a live one within `PIN_TIMEOUT`, its unacknowledged
messages follow after their ack deadline (the first backoff entry, however
often they were delivered before: see `_config`), in log order. Why not the
alternatives: per-app leases in a KV bucket would show every message to every
replica, and a message nakked by a non-owner comes back after the owner's
later ones (out of order); the partitioned consumer groups
of orbit.go (`pcgroups`, the same ADR-42 pins) either put a partition token in
the stream's own subjects (a `{{partition()}}` subject transform, which would
change the subjects outside consumers rely on, docs/events.md) or source the
stream into a work-queue stream per group (a second copy of the log). The
price here is that every partition consumer is offered every message of its
filter and acknowledges, unhandled, those of other partitions' apps.

A replica pulls first from its preferred partitions (`p % replicas == slot`,
the slot `wake up --replicas` gives it, or the lowest free one it claims as a
lease, `leases.SlotLease`) and joins the others' groups only after
`STANDBY_AFTER`, so replicas started together split the work instead of the
first taking it all; a standby's pulls wait unanswered until a pin frees.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import nats.errors
import nats.js.api as api
import nats.js.errors as js_errors
from nats.aio.msg import Msg

from events import names
from events.envelope import InvalidEvent
from services.wiring import logs, metrics, telemetry
from services.wiring.eventlog import EventLog, StoredEvent
from services.wiring.permissions import partition_names

if TYPE_CHECKING:
    from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

# Delays before a failed handler is retried in place: 5 s, 15 s, 1 min, 3 min,
# 5 min -- ~9.5 min in all, inside the log's one-hour duplicate window, so a
# re-derived event is still recognised as a duplicate. The first entry is also
# the ack deadline: how soon a dead holder's messages come back (see `_config`).
DEFAULT_BACKOFF: tuple[float, ...] = (5.0, 15.0, 60.0, 180.0, 300.0)

# The pinned-client priority group every Wake consumer has.
PRIORITY_GROUP = "wake"
# A pinned replica that has not pulled for this long loses its partition to
# another. Pulls are renewed every PULL_EXPIRES, so only a dead or wedged
# process goes that long.
PIN_TIMEOUT = 3.0
PULL_EXPIRES = 1.0
# How long a replica leaves other replicas' preferred partitions to them.
STANDBY_AFTER = 2 * PIN_TIMEOUT

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
    deliveries if it is deferred more often than the consumer allows. Its app's
    later messages are handled meanwhile (see the module's docstring).
    """

    def __init__(self, seconds: float, why: str = "") -> None:
        super().__init__(why or f"not due for {seconds:.1f}s")
        self.seconds = max(seconds, 0.0)


class ConsumerMissing(RuntimeError):
    """A service's durable consumer does not exist, and the service may not create it."""


class ConsumerError(RuntimeError):
    """JetStream refused a consumer or a pull; the message names the consumer."""


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How one durable consumer takes its messages.

    `backoff[i]` is the wait before a handler that failed on attempt i+1 is
    tried again (in place, holding its app's lane); `backoff[0]` is also the
    ack deadline after which a message whose holder died is redelivered,
    whatever its delivery count. After `len(backoff) + 1` attempts the
    message is rejected.
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

    @property
    def max_ack_pending(self) -> int:
        return max(self.batch * 4, self.concurrency * 2, 256)


@dataclass(frozen=True, slots=True)
class Placement:
    """Which share of a consumer's work this replica takes.

    `partitions` must be the same for every replica of a service (it names the
    durable consumers); `slot` of `replicas` says which partitions this one
    pulls at once, the others only as a standby.
    """

    partitions: int = 1
    slot: int = 0
    replicas: int = 1

    def names(self, consumer: str) -> list[str]:
        return partition_names(consumer, self.partitions)

    def preferred(self, partition: int) -> bool:
        if self.replicas <= 1:
            return True
        # No slot (more replicas than slots): a standby for every partition.
        return self.slot >= 0 and partition % self.replicas == self.slot % self.replicas


def partition_of(app: str, partitions: int) -> int:
    """The partition an app's messages belong to: stable across processes and versions."""
    return zlib.crc32(app.encode()) % partitions if partitions > 1 else 0


def _app_of(subject: str) -> str:
    parsed = names.parse_subject(subject)
    return parsed[0] if parsed is not None else subject


def _config(settings: ConsumerSettings, name: str) -> dict:
    config = api.ConsumerConfig(
        durable_name=name,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=settings.deliver_policy,
        max_deliver=settings.max_deliver,
        # One flat ack deadline, no JetStream `backoff`: every message held
        # here is kept alive (`_Lanes.keep_alive`) and a failing handler is
        # retried in place with `settings.backoff`, so a delivery times out
        # only when its holder died (or froze). With a JetStream backoff list
        # the deadline grows with the delivery count -- which every dead holder
        # raises -- and the third holder's death left an approval (and its
        # apply in flight, and its app's later messages behind it) unserved
        # for 1, then 3, then 5 minutes.
        ack_wait=settings.backoff[0],
        max_ack_pending=settings.max_ack_pending,
    )
    if len(settings.subjects) == 1:
        config.filter_subject = settings.subjects[0]
    else:
        config.filter_subjects = list(settings.subjects)
    raw = config.as_dict()
    # nats-py 2.16 knows no priority groups; the server (>= 2.11) does.
    raw["priority_groups"] = [PRIORITY_GROUP]
    raw["priority_policy"] = "pinned_client"
    raw["priority_timeout"] = int(PIN_TIMEOUT * 1e9)
    return raw


async def _api(event_log: EventLog, subject: str, body: dict | None) -> dict:
    payload = json.dumps(body).encode() if body is not None else b""
    reply = await event_log.nc.request(subject, payload, timeout=10.0)
    return json.loads(reply.data)


async def ensure_consumer(
    event_log: EventLog, settings: ConsumerSettings, placement: Placement | None = None
) -> None:
    """Create the durable consumer(s) of `placement`, or update them to `settings`.

    A layout that does not exist yet (the first start with another partition
    count) starts where the service's previous layout had got to -- its lowest
    acknowledged position -- and the previous layout's consumers are removed.
    """
    placement = placement or Placement()
    wanted = placement.names(settings.name)
    if not event_log.manages:
        # Only the admin manages consumers (`EventLog.manages`): it provisions
        # every service's (`wake up`, `wake infra up`, `wake infra provision`),
        # and a service connected as itself only checks that its own exist.
        for name in wanted:
            await require_consumer(event_log, name)
        return
    others = [n for n in await _consumer_names(event_log) if _of_service(settings.name, n)]
    previous = [n for n in others if n not in wanted]
    start_seq = None
    if previous and not any(n in others for n in wanted):
        floors = []
        for name in previous:
            info = await event_log.js.consumer_info(names.STREAM, name)
            floors.append(info.ack_floor.stream_seq if info.ack_floor else 0)
        start_seq = min(floors) + 1
    for name in wanted:
        config = _config(settings, name)
        if start_seq is not None:
            config["deliver_policy"] = api.DeliverPolicy.BY_START_SEQUENCE.value
            config["opt_start_seq"] = start_seq
        answer = await _api(
            event_log,
            f"$JS.API.CONSUMER.CREATE.{names.STREAM}.{name}",
            {"stream_name": names.STREAM, "config": config},
        )
        if "error" in answer:
            # The consumer exists with other settings; some (deliver policy)
            # cannot change, the rest converge.
            existing = await event_log.js.consumer_info(names.STREAM, name)
            config["deliver_policy"] = existing.config.deliver_policy.value
            if existing.config.opt_start_seq:
                config["opt_start_seq"] = existing.config.opt_start_seq
            else:
                config.pop("opt_start_seq", None)
            answer = await _api(
                event_log,
                f"$JS.API.CONSUMER.CREATE.{names.STREAM}.{name}",
                {"stream_name": names.STREAM, "config": config},
            )
            if "error" in answer:
                raise ConsumerError(f"consumer {name}: {answer['error'].get('description')}")
    for name in previous:
        log.info("consumer %s replaced by %s", name, ", ".join(wanted))
        with contextlib.suppress(Exception):
            await event_log.js.delete_consumer(names.STREAM, name)


def _of_service(consumer: str, name: str) -> bool:
    if name == consumer:
        return True
    rest = name.removeprefix(f"{consumer}-p")
    index, _, count = rest.partition("-of-")
    return rest != name and index.isdigit() and count.isdigit()


async def _consumer_names(event_log: EventLog) -> list[str]:
    found: list[str] = []
    offset = 0
    while True:
        answer = await _api(event_log, f"$JS.API.CONSUMER.NAMES.{names.STREAM}", {"offset": offset})
        batch = answer.get("consumers") or []
        found.extend(batch)
        offset += len(batch)
        if not batch or offset >= answer.get("total", 0):
            return found


async def serve_consumer(
    ctx: ServiceContext,
    settings: ConsumerSettings,
    handler: Handler,
    *,
    concurrency: int | None = None,
    ready: Callable[[], None] | None = None,
    wants: Callable[[str], bool] | None = None,
) -> None:
    """Every service's bootstrap: its consumers, then ready, then handling until ctx.stop.

    The consumers exist before `ready` (default `ctx.ready`) is called, so a
    service announced ready misses no event appended from then on. Splits the
    work across the service's replicas as `ctx.settings` says (`partitions`,
    `replica_slot`, `replicas`). `concurrency` defaults to the settings'.
    `wants`, if given, says by event type which messages to handle: the others
    are acknowledged unread (not decoded, not verified).
    """
    placement = placement_of(ctx)
    if concurrency is None:
        concurrency = ctx.settings.concurrency if settings.concurrency == 1 else None
    await consume(
        ctx.log,
        settings,
        handler,
        stop=ctx.stop,
        concurrency=concurrency,
        placement=placement,
        ready=ready or ctx.ready,
        wants=wants,
    )


def placement_of(ctx: ServiceContext) -> Placement:
    s = ctx.settings
    return Placement(partitions=max(s.partitions, 1), slot=s.replica_slot, replicas=s.replicas)


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
    placement: Placement | None = None,
    ready: Callable[[], None] | None = None,
    wants: Callable[[str], bool] | None = None,
) -> None:
    """Feed every message of the durable consumer(s) to `handler`, in order, until `stop`.

    `concurrency` (default: the settings') is how many apps are handled at once.

    The handler is called once per delivery; it must be idempotent (derive
    its events' ids from the input's, so JetStream drops a re-append). A
    handler that returns has its message acked; one that raises is retried
    with backoff, holding its app's later messages back, and on the last
    delivery it is rejected.
    """
    stop = stop or asyncio.Event()
    placement = placement or Placement()
    if concurrency is not None:
        settings = dataclasses.replace(settings, concurrency=concurrency)
    await ensure_consumer(event_log, settings, placement)
    if ready is not None:
        ready()
    lanes = _Lanes(event_log, settings, handler, wants)
    pullers = [
        _Puller(event_log, settings, lanes, name, index, placement)
        for index, name in enumerate(placement.names(settings.name))
    ]
    tasks = [asyncio.create_task(p.run(stop), name=f"pull {p.name}") for p in pullers]
    heartbeat = asyncio.create_task(lanes.keep_alive(), name=f"{settings.name} heartbeat")
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopping and task.exception() is not None:
                raise task.exception()
    finally:
        stop.set()
        stopping.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await lanes.drain()
        heartbeat.cancel()
        await asyncio.gather(heartbeat, stopping, return_exceptions=True)
        for puller in pullers:
            await puller.close()


class _Away(Exception):
    """A pull answered by 503: no JetStream server is there to answer it now."""


class _Puller:
    """Pulls one partition consumer as a member of its pinned priority group."""

    def __init__(
        self,
        event_log: EventLog,
        settings: ConsumerSettings,
        lanes: _Lanes,
        name: str,
        partition: int,
        placement: Placement,
    ) -> None:
        self.event_log = event_log
        self.settings = settings
        self.lanes = lanes
        self.name = name
        self.partition = partition
        self.placement = placement
        self.pin: str | None = None
        self._sub = None
        self._away = False
        # What the server delivered to our inbox and `_receive` has not taken yet.
        self._arrived: collections.deque[Msg] = collections.deque()
        self._wake = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        nc = self.event_log.nc
        inbox = nc.new_inbox()
        self._sub = await nc.subscribe(inbox, cb=self._deliver)
        if not self.placement.preferred(self.partition):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STANDBY_AFTER)
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{names.STREAM}.{self.name}"
        while not stop.is_set():
            room = self.settings.max_ack_pending - self.lanes.held_from(self.name)
            request = {
                "batch": max(1, min(self.settings.batch, room)),
                "expires": int(PULL_EXPIRES * 1e9),
                "group": PRIORITY_GROUP,
            }
            if self.pin:
                request["id"] = self.pin
            try:
                await nc.publish(subject, json.dumps(request).encode(), reply=inbox)
                await self._receive(request["batch"])
            except (*_LOG_AWAY, nats.errors.ConnectionClosedError, _Away) as exc:
                # NATS is away, or a cluster elects a new leader for the consumer:
                # it is durable, so wait and ask again (nats-py reconnects).
                if not self._away:
                    log.warning(
                        "%s: the log is unavailable (%s); asking again every %.1fs",
                        self.name,
                        exc,
                        _RETRY_FETCH,
                    )
                    self._away = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _RETRY_FETCH)
                continue
            if self._away and nc.is_connected:
                log.info("%s: the log is available again", self.name)
                self._away = False

    async def _deliver(self, message: Msg) -> None:
        self._arrived.append(message)
        self._wake.set()

    async def _receive(self, batch: int) -> None:
        """Take the pull's messages until it is fulfilled or expires.

        Everything that has arrived is taken at once, without yielding between
        messages: their handlers then run in one go, and their acks leave in
        one write to the server, not one each (a write per message was most
        of the notifier's time in a fan-out, and of the server's).
        """
        deadline = time.monotonic() + PULL_EXPIRES + 2.0
        received = 0
        while received < batch:
            if not self._arrived:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return  # the answer got lost (a reconnect): pull again
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    return
                continue
            message = self._arrived.popleft()
            status = (message.headers or {}).get("Status")
            if status is None:
                received += 1
                self.pin = (message.headers or {}).get("Nats-Pin-Id", self.pin)
                await self._take(message)
                continue
            if status in ("404", "408"):
                return  # nothing (more) now
            if status == "423":
                # Another replica holds this partition now: what we were given
                # and have not started goes back to it, in order, at once.
                log.warning("%s: partition taken over by another replica", self.name)
                self.pin = None
                await self.lanes.give_up(self.name)
                return
            if status == "503":
                raise _Away("no JetStream responder (503)")
            description = (message.headers or {}).get("Description", "")
            if status == "409" and "deleted" in description.lower():
                # Replaced by another layout (WAKE_PARTITIONS changed under us):
                # the restarted process takes the new one.
                raise ConsumerError(f"consumer {self.name}: {description}")
            if status in ("409", "100"):
                # Too many pulls waiting, a leadership change, a heartbeat: ask again.
                await asyncio.sleep(0.2)
                return
            raise ConsumerError(f"pull from consumer {self.name}: {status} {description}")

    async def _take(self, message: Msg) -> None:
        app = _app_of(message.subject)
        if partition_of(app, self.placement.partitions) != self.partition:
            # Another partition's app: its own partition consumer handles it.
            await message.ack()
            return
        await self.lanes.offer(message, consumer=self.name)

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._sub.unsubscribe()


@dataclass(eq=False)
class _Held:
    message: Msg
    consumer: str
    seq: int
    started: bool = False
    # Handler failures of this delivery so far (retried in place).
    retries: int = 0
    # When JetStream last heard of this message from us (its delivery, or our
    # last `in_progress`): its ack deadline runs from then.
    alive_at: float = field(default_factory=time.monotonic)


class _Lanes:
    """Up to `concurrency` handlers at once, one lane per app keeping its order.

    Everything fetched and not yet settled is held here and kept alive, so
    JetStream redelivers none of it while this process lives.
    """

    def __init__(
        self,
        event_log: EventLog,
        settings: ConsumerSettings,
        handler: Handler,
        wants: Callable[[str], bool] | None = None,
    ) -> None:
        self._event_log = event_log
        self._settings = settings
        self._handler = handler
        self._wants = wants
        self._slots = asyncio.Semaphore(max(settings.concurrency, 1))
        self._queues: dict[str, collections.deque[_Held]] = {}
        self._held: dict[int, _Held] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        # Set when an earlier message of a lane arrives while its head waits to retry.
        self._earlier: dict[str, asyncio.Event] = {}
        self._closing = False
        self._closed = asyncio.Event()
        self._settled: collections.OrderedDict[int, None] = collections.OrderedDict()

    def held_from(self, consumer: str) -> int:
        return sum(1 for h in self._held.values() if h.consumer == consumer)

    async def offer(self, message: Msg, *, consumer: str) -> None:
        seq = message.metadata.sequence.stream
        if seq in self._held:
            # A redelivery of a message still held (a heartbeat got lost while
            # NATS was away): the held copy settles it.
            return
        if seq in self._settled:
            # Redelivered while (or just before) we settled it: done already.
            with contextlib.suppress(nats.errors.Error):
                await message.ack()
            return
        if self._wants is not None:
            parsed = names.parse_subject(message.subject)
            if parsed is not None and not self._wants(parsed[1]):
                # Of a type this handler never acts on: settled unread. (A subject
                # that names no type goes on, to be rejected with its reason.)
                metrics.EVENTS_HANDLED.labels(self._settings.name, parsed[1], "skipped").inc()
                with contextlib.suppress(nats.errors.Error):
                    await message.ack()
                return
        held = _Held(message, consumer, seq)
        self._held[seq] = held
        # With concurrency 1 the whole consumer is one lane: log order across apps.
        key = _app_of(message.subject) if self._settings.concurrency > 1 else ""
        queue = self._queues.setdefault(key, collections.deque())
        # A lane is in log order, not in order of arrival: a dead replica's
        # message comes back (after its ack deadline) behind the app's later
        # ones its partition's new holder was given at once, and it may be the
        # one they wait for (the approval whose apply is in flight).
        at = len(queue)
        while at > 0 and queue[at - 1].seq > seq:
            at -= 1
        queue.insert(at, held)
        if at == 0 and len(queue) > 1:
            self._earlier.setdefault(key, asyncio.Event()).set()
        if key not in self._workers:
            task = asyncio.create_task(self._work(key), name=f"lane {key}")
            self._workers[key] = task

    async def _work(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue and not self._closing:
                held = queue[0]
                held.started = True
                earlier = self._earlier.setdefault(key, asyncio.Event())
                earlier.clear()
                preempted = False
                while True:
                    async with self._slots:
                        outcome = await _handle(
                            self._event_log,
                            self._settings,
                            self._handler,
                            held.message,
                            attempt=held.message.metadata.num_delivered + held.retries,
                        )
                    if outcome is None:
                        self._settled[held.seq] = None
                        while len(self._settled) > _SETTLED_MEMORY:
                            self._settled.popitem(last=False)
                        break
                    if outcome == DEFERRED:
                        break
                    # A failure keeps the lane: the app's later messages wait
                    # for this one (kept alive meanwhile).
                    held.retries += 1
                    await _first(outcome, self._closed.wait(), earlier.wait())
                    if queue[0] is not held and not self._closing:
                        # An earlier message of the app arrived: it goes first,
                        # this one is retried after it (still kept alive).
                        held.started = False
                        preempted = True
                        break
                    if self._closing:
                        # Stopping: JetStream redelivers it (here or to another replica).
                        with contextlib.suppress(nats.errors.Error):
                            await held.message.nak()
                        break
                if preempted:
                    continue
                if held in queue:
                    queue.remove(held)
                self._held.pop(held.seq, None)
        except Exception:
            log.exception("%s: lane %s failed", self._settings.name, key or "*")
        finally:
            self._workers.pop(key, None)
            if not queue:
                self._queues.pop(key, None)
                self._earlier.pop(key, None)

    async def keep_alive(self) -> None:
        # Waiting messages as well as running ones: a message waiting for its
        # app's lane must not reach its ack deadline and be redelivered (to
        # this replica or another) ahead of the one in progress.
        # Only a message half way to its deadline is kept alive: most are
        # settled long before, and each `in_progress` is a request the server
        # serves (a third of what the planner sent it in a fan-out).
        ack_wait = self._settings.backoff[0]
        interval = max(ack_wait / 6, 0.01)
        while True:
            await asyncio.sleep(interval)
            due = time.monotonic() - ack_wait / 2
            for held in list(self._held.values()):
                if held.alive_at > due:
                    continue
                with contextlib.suppress(nats.errors.Error):
                    await held.message.in_progress()
                    held.alive_at = time.monotonic()

    async def give_up(self, consumer: str) -> None:
        """Hand back what `consumer` gave us and was not started: another replica owns it now."""
        for queue in list(self._queues.values()):
            keep = collections.deque(h for h in queue if h.consumer != consumer or h.started)
            for held in queue:
                if held not in keep:
                    self._held.pop(held.seq, None)
                    with contextlib.suppress(nats.errors.Error):
                        await held.message.nak()
            queue.clear()
            queue.extend(keep)

    async def drain(self) -> None:
        """Let the handlers under way finish; hand back what was not started."""
        self._closing = True
        self._closed.set()
        for queue in self._queues.values():
            for held in list(queue):
                if not held.started:
                    self._held.pop(held.seq, None)
                    with contextlib.suppress(nats.errors.Error):
                        await held.message.nak()
        workers = list(self._workers.values())
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)


async def _first(timeout: float, *waits: Awaitable[object]) -> None:
    """Return after `timeout` seconds or once any of `waits` is done."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# What `_handle` returns for a message handed back to come again later.
DEFERRED = -1.0
# Sequences acknowledged or terminated lately, remembered to drop a stale
# redelivery that was already on its way when the message was settled.
_SETTLED_MEMORY = 4096


async def _handle(
    event_log: EventLog,
    settings: ConsumerSettings,
    handler: Handler,
    message: Msg,
    *,
    attempt: int,
) -> float | None:
    """One delivery: None once settled for good (acked or rejected), DEFERRED once
    nakked to come again, else the seconds to retry it in."""
    metadata = message.metadata
    seq = metadata.sequence.stream
    try:
        event = await event_log.open(message.data, seq=seq, subject=message.subject)
    except InvalidEvent as exc:
        await reject(
            event_log,
            consumer=settings.name,
            seq=seq,
            subject=message.subject,
            data=message.data,
            error=str(exc),
            event_id=exc.event_id,
            deliveries=attempt,
        )
        await message.ack()
        return None
    except (TimeoutError, nats.errors.Error) as exc:
        # Verifying needed the key registrations and NATS is away (restarting, a
        # leader election): nothing is wrong with the message. Again, as after a
        # failed handler, without a traceback.
        delay = settings.backoff[min(attempt - 1, len(settings.backoff) - 1)]
        log.warning(
            "%s: cannot verify seq %d yet (%r); again in %.0fs", settings.name, seq, exc, delay
        )
        return delay
    stored = StoredEvent(
        seq=seq, subject=message.subject, event=event, stored_at=metadata.timestamp
    )
    try:
        with (
            metrics.handling(settings.name, event.type) as outcome,
            logs.handling_event(event.app, event.event_id),
            telemetry.consuming(
                event,
                settings.name,
                headers=message.headers,
                subject=message.subject,
                seq=seq,
                delivery=attempt,
            ),
        ):
            try:
                await handler(stored)
            except Deferred:
                outcome[0] = "deferred"
                raise
            except Exception:
                outcome[0] = "rejected" if attempt >= settings.max_deliver else "retry"
                raise
    except Deferred as deferred:
        if attempt < settings.max_deliver:
            await message.nak(delay=deferred.seconds)
            return DEFERRED
        await reject(
            event_log,
            consumer=settings.name,
            seq=seq,
            subject=message.subject,
            data=message.data,
            error=f"still deferred ({deferred}) after {attempt} deliveries",
            event_id=event.event_id,
            deliveries=attempt,
        )
        await message.term()
        return None
    except Exception as exc:
        if attempt >= settings.max_deliver:
            log.exception(
                "%s: giving up on seq %d after %d deliveries", settings.name, seq, attempt
            )
            await reject(
                event_log,
                consumer=settings.name,
                seq=seq,
                subject=message.subject,
                data=message.data,
                error=f"handler failed on all {attempt} deliveries: {exc!r}",
                event_id=event.event_id,
                deliveries=attempt,
            )
            await message.term()
            return None
        delay = settings.backoff[min(attempt - 1, len(settings.backoff) - 1)]
        log.warning(
            "%s: handler failed on seq %d (delivery %d), retrying in %.0fs: %r",
            settings.name,
            seq,
            attempt,
            delay,
            exc,
        )
        return delay
    await message.ack()
    return None


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
    await event_log.reject(
        reader=consumer,
        seq=seq,
        subject=subject,
        data=data,
        error=error,
        event_id=event_id,
        deliveries=deliveries,
    )
    log.error("%s: rejected seq %d on %s: %s", consumer, seq, subject, error)
