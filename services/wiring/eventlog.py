"""The log: Wake's client for the WAKE_EVENTS stream and the WAKE_BUNDLES object store.

Sits beside `events/` (the contracts) and is the only module that turns
envelopes into JetStream messages and back. Every service appends and reads
through an `EventLog`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import secrets
import ssl
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats
import nats.errors
import nats.js.api as api
import nats.js.errors as js_errors
from nats.aio.client import Client as NatsClient

from events import names, ownership
from events.envelope import (
    Envelope,
    InvalidEvent,
    decode,
    derived_event_id,
    encode,
    new_event,
)
from events.payloads import EventRejected
from services.wiring import keys, metrics, telemetry
from services.wiring.batching import (
    DEFAULT_MAX_BATCH_MSGS,
    BatchOutcomeUnknown,
    BatchRejected,
    publish_atomic_batch,
)
from services.wiring.settings import env_name
from services.wiring.signing import Signer, Trust
from services.wiring.spanstore import span_store_config

log = logging.getLogger(__name__)

# JetStream keeps the Nats-Msg-Id of every message for this long and answers a
# second publish of one of them with `duplicate` instead of storing it again.
# It must outlast the longest time a consumer may take to re-derive an event
# from a redelivered input: bounded redelivery backs off for at most ~10 min in
# total (services.wiring.consumers.DEFAULT_BACKOFF) plus a supervised restart.
# One hour covers that with room; it is not longer because the server holds
# every id of the window in memory (~100 bytes each: 360k ids, ~40 MB, at a
# sustained 100 events/s).
DUPLICATE_WINDOW_SECONDS = 3600.0

# The server's error code for a failed Nats-Expected-Last-Subject-Sequence check.
log = logging.getLogger(__name__)

_WRONG_LAST_SEQUENCE = 10071

# A reader's consumer sends a heartbeat every 5 s when it has nothing to
# deliver. Silence for three of them means the consumer is gone -- a restarted
# server forgets memory-stored consumers, a failed-over cluster node may
# too -- and the reader makes a new one after the last event it yielded.
_HEARTBEAT = 5.0
_SILENCE_LIMIT = 3 * _HEARTBEAT
# While NATS is away a following reader retries making its consumer this often.
_RETRY_CONSUMER = 0.5
# How long a one-off read (not following) keeps asking while NATS is away or a
# cluster elects a new leader (a node died) before it gives up: an election
# takes a few seconds, a read made meanwhile should wait it out, not fail.
_READ_PATIENCE = 30.0
# Bytes kept free in a message for the headers of an append (msg id, trace, expected seq),
# and for the signature appended to an event's bytes (events/signing.py: size, index,
# root signature and a proof of up to 20 levels, base64: under 1 KiB).
_HEADER_ROOM = 4096 + 1024
# Chunk size of a bundle in the object store: nats-py's default, so its `get` reads them alike.
_CHUNK_BYTES = 128 * 1024
# What making a consumer fails with while NATS is away or electing a leader.
_NATS_AWAY = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionClosedError,
    js_errors.ServiceUnavailableError,
)


def nats_servers(url: str) -> list[str]:
    """The servers of a NATS URL setting: one URL, or several separated by commas.

    `WAKE_NATS_URL` and endpoints.json keep a single string for scripts and
    compose files; nats-py wants a list to fail over between a cluster's nodes.
    """
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError(f"no NATS server in {url!r}")
    return servers


def stream_config(*, replicas: int = 1) -> api.StreamConfig:
    """The WAKE_EVENTS settings of DESIGN §2."""
    return api.StreamConfig(
        name=names.STREAM,
        description="Wake's append-only event log",
        subjects=[names.ALL_SUBJECTS],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.NEW,
        max_age=0,
        max_msgs=-1,
        max_bytes=-1,
        max_msgs_per_subject=-1,
        max_msg_size=8 * 1024 * 1024,
        num_replicas=replicas,
        duplicate_window=DUPLICATE_WINDOW_SECONDS,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        allow_direct=True,
        allow_atomic=True,
    )


# Leases of replicas (services/wiring/leases.py): a KV bucket whose entries
# live LEASE_TTL seconds unless renewed. In memory: a lease outlives no server.
LEASES_BUCKET = "WAKE_LEASES"
LEASE_TTL = 5.0


def bundle_store_config(*, replicas: int = 1) -> api.StreamConfig:
    """The stream behind the WAKE_BUNDLES object store, as indelible as WAKE_EVENTS.

    nats-py's `create_object_store` makes this stream with roll-ups allowed
    and purge permitted, so any client could destroy a bundle that a rollback
    needs. Here deletes and purges are refused by the server, and with them
    roll-ups (the server ties those to the purge permission). `put_bundle`
    therefore writes objects itself, without the roll-up header.
    """
    return api.StreamConfig(
        name=names.BUNDLES_STREAM,
        description="Rendered manifests, content-addressed by sha256",
        subjects=[f"$O.{names.BUNDLES}.C.>", f"$O.{names.BUNDLES}.M.>"],
        max_age=0,
        max_bytes=-1,
        max_consumers=0,
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        discard=api.DiscardPolicy.NEW,
        allow_rollup_hdrs=False,
        allow_direct=True,
        deny_delete=True,
        deny_purge=True,
    )


async def provision(nc: NatsClient, *, replicas: int = 1) -> None:
    """Create the stream, the object store and the span store, or bring their
    settings up to date.

    Idempotent. Only the provisioning commands (`wake up`, `wake infra up`,
    `wake infra provision`) call it: a service that finds the log missing
    refuses to start (`require_provisioned`) rather than begin a new history.
    """
    js = nc.jetstream()
    configs = (
        stream_config(replicas=replicas),
        bundle_store_config(replicas=replicas),
        span_store_config(replicas=replicas),
    )
    for config in configs:
        await _placed(js, config)
    try:
        await js.key_value(LEASES_BUCKET)
    except js_errors.BucketNotFoundError:
        await js.create_key_value(leases_config(replicas))


# A cluster that has just formed may not count every peer as current yet and
# refuse to place a replicated stream (10005, "no suitable peers for placement")
# for a moment; provisioning waits that out rather than fail `wake up`.
_NO_PEERS = 10005
_PLACEMENT_WAIT = 15.0


async def _placed(js, config: api.StreamConfig) -> None:
    deadline = time.monotonic() + _PLACEMENT_WAIT
    while True:
        try:
            await js.add_stream(config)
            return
        except js_errors.BadRequestError as exc:
            if exc.err_code == 10058:
                # The stream exists with other settings: converge them.
                await js.update_stream(config)
                return
            if exc.err_code != _NO_PEERS or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def leases_config(replicas: int = 1) -> api.KeyValueConfig:
    return api.KeyValueConfig(
        bucket=LEASES_BUCKET,
        description="Which replica holds which partition (services/wiring/leases.py)",
        ttl=LEASE_TTL,
        history=1,
        # On file like the log: a memory bucket is gone after the server restarts
        # (`wake up` restarts a dead nats-server), and no service may create it again.
        storage=api.StorageType.FILE,
        replicas=replicas,
    )


class LogNotProvisioned(RuntimeError):
    """The event stream or the bundle store is missing: nothing here may recreate it."""


async def require_provisioned(nc: NatsClient) -> None:
    """Raise LogNotProvisioned unless WAKE_EVENTS and the WAKE_BUNDLES store both exist.

    A service that created a missing stream would start an empty history where
    one is expected -- after someone deleted it, or pointed Wake at the wrong
    server -- and every app would look new. It refuses instead, loudly.
    """
    js = nc.jetstream()
    for stream in (names.STREAM, names.BUNDLES_STREAM):
        try:
            await js.stream_info(stream)
        except js_errors.NotFoundError:
            raise LogNotProvisioned(
                f"the stream {stream} does not exist on this NATS server: Wake's log is "
                "provisioned once, by `wake up`, `wake infra up` or `wake infra provision`; "
                "run one of them (or restore the stream) -- no service creates an empty one"
            ) from None


_HEADER_NAME_WHITESPACE = re.compile(rb"\s")
# How a status-100 message (heartbeat, flow control) starts: `NATS/1.0 100`.
_STATUS_100 = b"NATS/1.0 100"


class _Client(NatsClient):
    """nats-py's client with a direct route for the log's reader (`route_raw`) and a
    faster header parser of the same semantics.

    An event stored by a batch carries four headers (Nats-Msg-Id and the
    atomic batch's three), and nats-py 2.16 checks each header name for
    whitespace with a generator over its characters: that check alone was
    half the CPU time of a replay. A regex does the same check in C.
    """

    def __init__(self) -> None:
        super().__init__()
        self._raw_routes: dict[int, Callable[[bytes, bytes, bytes, bytes], None]] = {}

    def route_raw(self, sid: int, handler: Callable[[bytes, bytes, bytes, bytes], None]) -> None:
        """Hand every message of subscription `sid` to `handler(subject, reply, data,
        headers)` as the server sent them (bytes), from the connection's reading task.

        The log's reader (`_PushReader`) needs neither parsed headers nor a Msg:
        nats-py building both, queueing the Msg and handing it to a task of its
        own cost a replay of a million events more than its signature checks.
        """
        self._raw_routes[sid] = handler

    def unroute_raw(self, sid: int) -> None:
        self._raw_routes.pop(sid, None)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        handler = self._raw_routes.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        self.stats["in_msgs"] += 1
        self.stats["in_bytes"] += len(data)
        handler(subject, reply, data, headers or b"")

    @staticmethod
    def _parse_header_lines(raw: bytes) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in raw.split(b"\r\n"):
            name, sep, value = line.partition(b":")
            if not sep:
                continue
            name = name.strip()
            if _HEADER_NAME_WHITESPACE.search(name):
                continue
            try:
                key = name.decode("ascii")
            except UnicodeDecodeError:
                continue
            out[key] = value.strip().decode("utf-8", "replace")
        return out


def identity_of(credentials: Mapping[str, object] | None) -> str | None:
    """Who connect kwargs authenticate as: the user, else the name of the NKey seed or
    `.creds` file (`renderer.nk` is the renderer); None without credentials."""
    if not credentials:
        return None
    if credentials.get("user"):
        return str(credentials["user"])
    for key in ("nkeys_seed", "user_credentials"):
        if isinstance(credentials.get(key), str):
            return Path(str(credentials[key])).stem
    return ""


class ConcurrencyConflict(Exception):
    """A conditional append lost: the app's log moved past the position it was decided on."""

    def __init__(self, event: Envelope, expected_seq: int, on_subjects: str) -> None:
        super().__init__(
            f"conflict appending {event.type} {event.event_id} for app {event.app}: "
            f"expected the last event on {on_subjects} at sequence {expected_seq}, "
            "but another was appended since"
        )
        self.event = event
        self.expected_seq = expected_seq
        self.on_subjects = on_subjects


class NotSigning(RuntimeError):
    """An append by an EventLog that holds no signing key: the log would refuse it."""


class BundleNotFound(LookupError):
    pass


class BundleCorrupt(ValueError):
    pass


class BundleSealed(BundleCorrupt):
    """A sealed bundle read by a process that holds no bundle keyring."""


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an event landed. `duplicate`: it was already there (same event id)."""

    event_id: str
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as read back from the log, with its place in the global order."""

    seq: int
    subject: str
    event: Envelope
    stored_at: datetime | None = None


def checked_bytes(event: Envelope) -> bytes:
    """The event's bytes, once they decode as its readers will decode them.

    Structs are not validated when built in code, so a writer could make an
    event its readers would reject (a commit id of the wrong length, a naive
    timestamp); refuse it here, naming the field, rather than log it.
    """
    data = encode(event)
    decode(data)
    return data


def headers_for(event: Envelope) -> dict[str, str]:
    # The subject already names the app and the type; every header costs each
    # reader a parse, so only what JetStream or tracing acts on goes here.
    headers = {names.MSG_ID: event.event_id}
    if event.traceparent:
        headers[names.TRACEPARENT_HEADER] = event.traceparent
    return headers


Message = tuple[str, bytes, dict[str, str]]

# Appends waiting together go out as one atomic batch from this many events on:
# a batch costs the stream a constant few fsyncs, a plain publish one each.
_MERGE_FROM = 3


# A conditional append's expected last sequence and the subjects it is checked on.
Condition = tuple[int, str]


@dataclass(eq=False, slots=True)
class _Pending:
    """One append call waiting for its group's commit."""

    events: list[Envelope]
    messages: list[Message]
    future: asyncio.Future[list[Appended]]
    condition: Condition | None
    apps: frozenset[str]


class EventLog:
    """Append to and read from WAKE_EVENTS; put and get bundles."""

    def __init__(
        self,
        nc: NatsClient,
        *,
        timeout: float = 10.0,
        identity: str | None = None,
        reader: str = "wake",
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout)
        self._timeout = timeout
        # Whether last-message reads may be direct gets (`_get_last`); asked once.
        self._direct: bool | None = None
        # Appends waiting for the commit in flight (`_grouped`).
        self._waiting: deque[_Pending] = deque()
        self._committer: asyncio.Task[None] | None = None
        # Stamped on every event this process appends that names no instance.
        self.instance = ""
        self.identity = identity
        """Who this connection authenticated as (events/ownership.py); None: no credentials."""
        # Set by the process from its settings (`keys.load_keyring`); None stores bundles plain.
        self.bundle_keys: keys.BundleKeyring | None = None
        self.reader = reader
        """Who is reading, as a rejection of a message this connection skipped names it."""
        # Sequences this process already recorded as skipped: once each, however
        # often a history read passes over them.
        self._skipped: set[int] = set()
        # Set by the process from its settings (`signing.use_signing`). Without a
        # signer nothing can be appended; without trust nothing read is accepted.
        self.signer: Signer | None = None
        self.trust: Trust | None = None

    @property
    def actor(self) -> str:
        """Who this log's appends are by: its signer's identity ("" without one)."""
        return self.signer.identity if self.signer is not None else ""

    def require_trust(self) -> Trust:
        if self.trust is None:
            raise NotSigning(
                "this connection to the log trusts no key (no admin public key configured)"
            )
        return self.trust

    @property
    def manages(self) -> bool:
        """Whether this connection may create and update streams and consumers.

        Only the admin may (and a server without authentication, as the test
        session's): a service checks that what it needs exists instead, since
        a request the server refuses is only known after its timeout.
        """
        return self.identity is None or self.identity == ownership.ADMIN

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        name: str = "wake",
        provision_log: bool = False,
        credentials: Mapping[str, object] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> EventLog:
        """Connect to the log at `url`; `credentials`: `nats.connect` kwargs of an identity."""
        nc = _Client()
        options: dict = {
            "name": name,
            # Forever: a service outlives a restart of NATS (or the loss of a
            # cluster node) and carries on once it is back.
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 0.5,
            # Room for a few 1000-event batches in the client's write buffer.
            "pending_size": 16 * 1024 * 1024,
        }
        # A credentials file may set any option of nats.connect (its own name too).
        options.update(credentials or {})
        if tls is not None:
            options["tls"] = tls
        await nc.connect(nats_servers(url), **options)
        if provision_log:
            await provision(nc)
        return cls(nc, identity=identity_of(credentials), reader=name)

    async def close(self, *, timeout: float = 3.0) -> None:
        """Drain and close the connection; promptly, even with the server gone.

        Draining lets subscriptions finish and flushes what is buffered. With no
        server there is nothing to flush to (nats-py refuses to drain while
        reconnecting, and a drain that lost its server waits out its timeout),
        so the connection is then just closed.
        """
        if self.nc.is_closed:
            return
        if self.nc.is_connected:
            with contextlib.suppress(TimeoutError, nats.errors.Error):
                await asyncio.wait_for(self.nc.drain(), timeout)
        if not self.nc.is_closed:
            await self.nc.close()

    def _stamped(self, event: Envelope) -> Envelope:
        if not self.instance or event.instance:
            return event
        return msgspec.structs.replace(event, instance=self.instance)

    async def _seal(self, events: Sequence[Envelope]) -> list[tuple[Envelope, bytes]]:
        """Each event as it will be stored (instance, actor and signer stamped) and its
        signed bytes; one signature for all of them (events/signing.py)."""
        if self.signer is None:
            raise NotSigning(
                f"cannot append {events[0].type} for {events[0].app}: this process has no "
                "signing key (WAKE_SIGNING_KEY, or the data dir's credentials/signing/), and "
                "every reader refuses an unsigned event"
            )
        return await self.signer.seal(self, [self._stamped(event) for event in events])

    async def open(self, data: bytes, *, seq: int, subject: str = "") -> Envelope:
        """The event stored at `seq`, once its signature makes it acceptable.

        Raises InvalidEvent -- UnverifiedEvent (events/signing.py) for an event
        unsigned, badly signed, or signed by a key unknown, revoked or not
        entitled to its type -- naming the sequence, the event id and the
        signer. Every reader of the log goes through here (or `verify_now`).
        """
        trust = self.trust
        if trust is None:
            raise InvalidEvent(
                f"stream sequence {seq} ({subject}): not verified: this connection trusts no "
                "key (set WAKE_ADMIN_PUBLIC_KEY or use the data dir of a running Wake)"
            )
        give_up_at = time.monotonic() + _READ_PATIENCE
        while seq > trust.as_of:
            # Reading the key registrations: NATS away or electing a leader is
            # waited out as a one-off read waits it out, then reported.
            try:
                await trust.catch_up(self, seq)
            except _NATS_AWAY as exc:
                if time.monotonic() >= give_up_at:
                    raise
                log.info("verifying seq %d: %r; asking again in %.1fs", seq, exc, _RETRY_CONSUMER)
                await asyncio.sleep(_RETRY_CONSUMER)
        return trust.verifier.verify(data, seq=seq, subject=subject)

    async def stream_end(self) -> int:
        """The sequence of the last message in WAKE_EVENTS now."""
        info = await self.js.stream_info(names.STREAM)
        return info.state.last_seq or 0

    # --- appending ---------------------------------------------------------------

    def message_limit(self) -> int:
        """The largest event this log accepts, in encoded bytes.

        The server's max_payload (from its INFO) or the stream's max_msg_size,
        whichever is smaller, less room for the headers an append adds.
        """
        stream_limit = stream_config().max_msg_size or 0
        limits = [n for n in (self.nc.max_payload, stream_limit) if n and n > 0]
        return min(limits) - _HEADER_ROOM if limits else 1024 * 1024 - _HEADER_ROOM

    async def append(
        self,
        event: Envelope,
        *,
        expected_last_seq: int | None = None,
        on_subjects: str | None = None,
    ) -> Appended:
        """Append one event, durably (acknowledged after fsync).

        Idempotent: appending an event id already in the log (within the
        duplicate window) stores nothing and returns `duplicate=True`.

        With `expected_last_seq`, the append is conditional: it succeeds only if
        the last event on `on_subjects` (default: every subject of the event's
        app) is at that sequence (0: there is none), else ConcurrencyConflict.
        """
        ((event, data),) = await self._seal([event])
        headers = headers_for(event)
        condition = None
        if expected_last_seq is not None:
            on_subjects = on_subjects or names.app_subjects(event.app)
            headers[names.EXPECTED_LAST_SUBJECT_SEQ] = str(expected_last_seq)
            headers[names.EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = on_subjects
            condition = (expected_last_seq, on_subjects)
        message = (names.subject(event.app, event.type), data, headers)
        with telemetry.producing([event], [headers]):
            while True:
                try:
                    (appended,) = await self._grouped([event], [message], condition)
                    break
                except ConcurrencyConflict:
                    moved = await self._moved(condition)
                    if moved is None:
                        raise
                    condition = moved
                    headers[names.EXPECTED_LAST_SUBJECT_SEQ] = str(moved[0])
        metrics.appended([event])
        return appended

    async def _moved(self, condition: Condition | None) -> Condition | None:
        """After a conditional append conflicted: the condition to try again with, if
        only what no reader takes for an event landed since (`_past_invalid`)."""
        if condition is None:
            return None
        expected, on_subjects = condition
        moved = await self._past_invalid(expected, on_subjects or "")
        return None if moved is None else (moved, on_subjects)

    async def _past_invalid(self, expected_last_seq: int, on_subjects: str) -> int | None:
        """After a conditional append failed: the position to expect instead, if only
        messages that are not events (skipped by every reader), and the records of
        their rejection, landed on `on_subjects` since `expected_last_seq`; None if
        an event that decides something did (a true conflict).

        Without this, garbage on a subject (it cannot be deleted) would make every
        later conditional append on it conflict: the app would be frozen.
        """
        position = expected_last_seq
        async for seq, subject, data in self.read_raw(
            from_seq=expected_last_seq + 1, subjects=[on_subjects]
        ):
            try:
                event = await self.open(data, seq=seq, subject=subject)
            except InvalidEvent as exc:
                await self.skip(seq, subject, data, exc)
                position = seq
                continue
            if event.type != EventRejected.event_type:
                return None
            position = seq
        return position if position != expected_last_seq else None

    async def append_many(
        self,
        events: Sequence[Envelope],
        *,
        expected_last_seq: int | None = None,
        on_subjects: str | None = None,
    ) -> list[Appended]:
        """Append events in order, with one fsync per batch (group commit).

        Atomic per batch of up to 1000 events: all of a batch is stored, at
        consecutive sequences, or none of it. Idempotent as `append`: events
        already in the log come back with `duplicate=True` (JetStream rejects a
        batch holding a known id; the batch is then re-sent event by event).

        With `expected_last_seq`, the whole call is one conditional batch (at
        most 1000 events), checked as in `append` against the log before it.
        """
        if not events:
            return []
        sealed = await self._seal(events)
        events = [event for event, _ in sealed]
        messages: list[Message] = [
            (names.subject(event.app, event.type), data, headers_for(event))
            for event, data in sealed
        ]
        condition = None
        if expected_last_seq is not None:
            on_subjects = on_subjects or names.app_subjects(events[0].app)
            messages[0][2][names.EXPECTED_LAST_SUBJECT_SEQ] = str(expected_last_seq)
            messages[0][2][names.EXPECTED_LAST_SUBJECT_SEQ_SUBJECT] = on_subjects
            condition = (expected_last_seq, on_subjects)
        with telemetry.producing(events, [headers for _, _, headers in messages]):
            while True:
                try:
                    if len(messages) <= DEFAULT_MAX_BATCH_MSGS:
                        appended = await self._grouped(events, messages, condition)
                    else:
                        # Too large to be one batch: refused as such if conditional
                        # (BatchTooLarge), else sent in batches.
                        appended = await self._publish_alone(events, messages, condition)
                    break
                except ConcurrencyConflict:
                    moved = await self._moved(condition)
                    if moved is None:
                        raise
                    condition = moved
                    messages[0][2][names.EXPECTED_LAST_SUBJECT_SEQ] = str(moved[0])
        metrics.appended(events)
        return appended

    # --- group commit ----------------------------------------------------------------

    async def _grouped(
        self, events: list[Envelope], messages: list[Message], condition: Condition | None
    ) -> list[Appended]:
        """Append, together with whatever else this process appends meanwhile.

        Group commit without a timer: an append made while none is in flight
        goes out at once, alone; appends made while one is in flight wait for
        it and then go out together as one atomic batch. Under
        `sync_interval: always` the stream's writes are serialized, each
        plain publish fsynced on its own and each atomic batch at a constant
        few fsyncs: sixteen handlers appending one event each cost the stream
        one commit, not sixteen (a fan-out's every stage waited on this).

        Each call keeps its own promises: its events are stored in order, all
        or none when it gave several, a duplicate comes back as such, and a
        conditional call's check holds (it is evaluated at the commit against
        the log before the batch, so a batch never holds two calls of one app
        when either is conditional). A merged batch refused as a whole (a
        duplicate id or a failed check in it, or no answer) is sent again call
        by call, as each would have been alone: every event carries its id, so
        nothing is stored twice.
        """
        future: asyncio.Future[list[Appended]] = asyncio.get_running_loop().create_future()
        apps = frozenset(event.app for event in events)
        self._waiting.append(_Pending(events, messages, future, condition, apps))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_waiting(), name="group commit")
        return await future

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                group: list[_Pending] = []
                size = 0
                guarded: set[str] = set()  # apps of conditional calls in the group
                seen: set[str] = set()  # apps of every call in the group
                while self._waiting:
                    pending = self._waiting[0]
                    if group and (
                        size + len(pending.messages) > DEFAULT_MAX_BATCH_MSGS
                        or pending.apps & guarded
                        or (pending.condition is not None and pending.apps & seen)
                    ):
                        break
                    self._waiting.popleft()
                    group.append(pending)
                    size += len(pending.messages)
                    seen |= pending.apps
                    if pending.condition is not None:
                        guarded |= pending.apps
                try:
                    await self._commit(group, size)
                except BaseException as exc:
                    for pending in group:
                        if not pending.future.done():
                            pending.future.set_exception(exc)
                    raise
        finally:
            self._committer = None
            if self._waiting:  # cancelled with appends waiting: they fail, not hang
                for pending in self._waiting:
                    if not pending.future.done():
                        pending.future.set_exception(ConnectionError("the log client closed"))
                self._waiting.clear()

    async def _commit(self, group: list[_Pending], size: int) -> None:
        if len(group) > 1 and size >= _MERGE_FROM:
            messages = [m for pending in group for m in pending.messages]
            try:
                ack = await publish_atomic_batch(
                    self.nc, messages, timeout=self._timeout, ack_first=False, on_duplicate="raise"
                )
            except (BatchRejected, BatchOutcomeUnknown):
                pass  # each call again on its own, below
            else:
                seqs = iter(ack.seqs)
                for pending in group:
                    appended = [Appended(e.event_id, next(seqs), False) for e in pending.events]
                    if not pending.future.done():
                        pending.future.set_result(appended)
                return

        async def alone(pending: _Pending) -> None:
            try:
                result = await self._publish_alone(
                    pending.events, pending.messages, pending.condition
                )
            except BaseException as exc:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            else:
                if not pending.future.done():
                    pending.future.set_result(result)

        await asyncio.gather(*(alone(pending) for pending in group))

    async def _publish_alone(
        self, events: list[Envelope], messages: list[Message], condition: Condition | None
    ) -> list[Appended]:
        """One call's events as it would go alone: a plain publish for one, a batch for more.

        ConcurrencyConflict if its `condition` (expected sequence, subjects) failed.
        """
        if len(messages) == 1:
            subject, data, headers = messages[0]
            try:
                ack = await self.js.publish(subject, data, headers=dict(headers))
            except js_errors.APIError as exc:
                if condition is not None and exc.err_code == _WRONG_LAST_SEQUENCE:
                    raise ConcurrencyConflict(events[0], *condition) from None
                raise
            return [Appended(events[0].event_id, ack.seq, bool(ack.duplicate))]
        try:
            # No first-message round trip (`ack_first`): what it would report
            # early (atomic publish off, too many batches in flight) the commit
            # reports too, as a refusal of the batch; a round trip saved on
            # every plan's and every apply's path.
            ack = await publish_atomic_batch(
                self.nc, messages, timeout=self._timeout, ack_first=False
            )
        except BatchRejected as exc:
            if condition is not None and exc.err_code == _WRONG_LAST_SEQUENCE:
                raise ConcurrencyConflict(events[0], *condition) from None
            raise
        return [
            Appended(event.event_id, seq, duplicate)
            for event, seq, duplicate in zip(events, ack.seqs, ack.duplicates, strict=True)
        ]

    async def position(self, on_subjects: str) -> int:
        """The sequence of the last event on `on_subjects` (a subject or filter); 0 if none."""
        try:
            message = await self._get_last(on_subjects)
        except js_errors.NotFoundError:
            return 0
        return message.seq or 0

    async def _get_last(self, on_subjects: str) -> api.RawStreamMsg:
        """The last message on `on_subjects`; NotFoundError if none.

        A direct get where that reads the latest state: every handled event
        costs a few of these, and the JetStream API path they take otherwise
        (one request queue for the whole server, JSON and base64 both ways) is
        what a fan-out waits on. Only on a one-replica stream: a replicated
        stream answers direct gets from any replica, which may lag behind an
        append just acknowledged. And only for a literal subject: a filter
        cannot be a token of the direct-get request subject.
        """
        direct = "*" not in on_subjects and ">" not in on_subjects and await self._direct_reads()
        return await self.js.get_last_msg(names.STREAM, on_subjects, direct=direct)

    async def _direct_reads(self) -> bool:
        if self._direct is None:
            config = (await self.js.stream_info(names.STREAM)).config
            self._direct = bool(config.allow_direct) and (config.num_replicas or 1) == 1
        return self._direct

    async def app_position(self, app: str) -> int:
        """The sequence of the app's last event; the base of a conditional append."""
        return await self.position(names.app_subjects(app))

    # --- reading -----------------------------------------------------------------

    async def last_event(self, app: str, event_type: str) -> StoredEvent | None:
        """The app's last event of `event_type`, or None."""
        return await self.last_on(names.subject(app, event_type))

    async def last_on(self, on_subjects: str) -> StoredEvent | None:
        """The last valid event on a subject or filter, or None.

        A last message that does not decode or verify is skipped, as every
        reader skips it: the one before it is read instead (by reading the
        subject up to it, which only a forged or garbage message costs).
        """
        try:
            message = await self._get_last(on_subjects)
        except js_errors.NotFoundError:
            return None
        seq, subject, data = message.seq or 0, message.subject or "", message.data or b""
        try:
            event = await self.open(data, seq=seq, subject=subject)
        except InvalidEvent as exc:
            await self.skip(seq, subject, data, exc)
            # The last valid one before it: rare, so a read of the subject's history.
            last = None
            async for stored in self.read(subjects=[on_subjects], until_seq=seq - 1):
                last = stored
            return last
        return StoredEvent(seq=seq, subject=subject, event=event, stored_at=message.time)

    async def read(
        self,
        *,
        from_seq: int = 1,
        since: datetime | None = None,
        subjects: Iterable[str] = (),
        until_seq: int | None = None,
        follow: bool = False,
        on_invalid: Callable[[int, InvalidEvent], None] | None = None,
    ) -> AsyncIterator[StoredEvent]:
        """Yield stored events in sequence order.

        Starts at `from_seq` or at the first event stored at or after `since`;
        `subjects` filters (default: every event); stops after `until_seq`, or
        at the end of the log as it was when reading began, unless `follow`.
        A message that is not a valid event (it does not decode or verify) is
        skipped (DESIGN §2), recorded once as an EventRejected (`skip`) and passed
        to `on_invalid` if given.
        """
        async for seq, subject, data in self.read_raw(
            from_seq=from_seq, since=since, subjects=subjects, until_seq=until_seq, follow=follow
        ):
            try:
                event = await self.open(data, seq=seq, subject=subject)
            except InvalidEvent as exc:
                await self.skip(seq, subject, data, exc)
                if on_invalid is not None:
                    on_invalid(seq, exc)
                continue
            yield StoredEvent(seq=seq, subject=subject, event=event)

    async def read_raw(
        self,
        *,
        from_seq: int = 1,
        since: datetime | None = None,
        subjects: Iterable[str] = (),
        until_seq: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[tuple[int, str, bytes]]:
        """Like `read`, without decoding: (seq, subject, data).

        An ordered push consumer of our own: JetStream pushes to an inbox with
        flow control, we answer a flow-control request only once the reader has
        consumed everything before it (so a slow reader slows the server, and
        memory stays bounded), and a gap in the consumer sequence (a reconnect
        lost a message) or a silent consumer (a restarted server forgot it)
        restarts the consumer after the last seq yielded; while following,
        NATS being away only delays the next event, and a one-off read waits
        up to `_READ_PATIENCE` for it (a cluster electing a new leader).
        nats-py's pull `fetch` tops out near 25k msgs/s here; this near 100k.
        """
        filters = list(subjects) or [names.ALL_SUBJECTS]
        give_up_at = time.monotonic() + _READ_PATIENCE
        if until_seq is None and not follow:
            while True:
                try:
                    info = await self.js.stream_info(names.STREAM)
                    break
                except _NATS_AWAY as exc:
                    if time.monotonic() >= give_up_at:
                        raise
                    log.info("reading the log: %r; asking again in %.1fs", exc, _RETRY_CONSUMER)
                    await asyncio.sleep(_RETRY_CONSUMER)
            until_seq = info.state.last_seq
        if until_seq is not None and until_seq < max(from_seq, 1):
            return
        next_seq = max(from_seq, 1)
        start_time = since
        while True:
            reader = _PushReader(self, filters, next_seq, start_time)
            try:
                try:
                    available = await reader.start()
                except _NATS_AWAY as exc:
                    # Away, or electing a leader: a follower waits as long as it
                    # takes; a one-off read for a bounded while (`_READ_PATIENCE`).
                    if not follow:
                        if time.monotonic() >= give_up_at:
                            raise
                        log.info("reading the log: %r; asking again in %.1fs", exc, _RETRY_CONSUMER)
                    await asyncio.sleep(_RETRY_CONSUMER)
                    continue
                if available == 0 and not follow:
                    return
                async for seq, subject, data, pending in reader:
                    if until_seq is not None and seq > until_seq:
                        return
                    next_seq = seq + 1
                    start_time = None
                    yield seq, subject, data
                    if not follow and (pending == 0 or seq == until_seq):
                        return
            except _ConsumerGap:
                continue
            finally:
                await reader.close()

    # --- what cannot be read ---------------------------------------------------------

    async def skip(self, seq: int, subject: str, data: bytes, error: InvalidEvent) -> None:
        """Pass over the message at `seq`, which is not a valid event, and say so once.

        Never raises: a reader goes on whatever happens to the record of what
        it skipped (a connection without the right to append one still logs it).
        """
        if seq in self._skipped:
            return
        self._skipped.add(seq)
        log.error("%s: skipping stream sequence %d (%s): %s", self.reader, seq, subject, error)
        try:
            await self.reject(
                reader=self.reader,
                seq=seq,
                subject=subject,
                data=data,
                error=str(error),
                event_id=error.event_id,
            )
        except Exception as exc:
            log.warning(
                "%s: could not record the rejection of sequence %d: %r", self.reader, seq, exc
            )

    async def reject(
        self,
        *,
        reader: str,
        seq: int,
        subject: str,
        data: bytes,
        error: str,
        event_id: str | None = None,
        deliveries: int = 1,
    ) -> Appended:
        """Record that `reader` skipped the message at `seq`: one EventRejected per
        reader and sequence, however often it is called (its id is derived from both)."""
        app = names.SYSTEM_APP
        parsed = names.parse_subject(subject)
        if parsed is not None:
            with contextlib.suppress(names.InvalidName):
                app = names.app_name(parsed[0])
        payload = EventRejected(
            stream_seq=seq,
            subject=subject,
            consumer=reader,
            error=error,
            deliveries=deliveries,
            rejected_event_id=event_id,
            size=len(data),
            excerpt=data[:256].decode("utf-8", errors="replace"),
        )
        cause_id = derived_event_id(f"{names.STREAM}/{seq}", "Delivery", reader)
        rejected = new_event(
            payload,
            app=app,
            actor=self.actor or f"consumer:{reader}",
            event_id=derived_event_id(cause_id, EventRejected.event_type),
            correlation_id=event_id or cause_id,
        )
        return await self.append(rejected)

    # --- bundles -------------------------------------------------------------------

    async def put_bundle(self, data: bytes) -> str:
        """Store a bundle under the sha256 of its bytes; return the digest. Idempotent.

        With a keyring (`bundle_keys`) the stored bytes are sealed (AES-256-GCM);
        the name stays the digest of the plaintext, so events name bundles the
        same way whether or not they are sealed.
        """
        digest = hashlib.sha256(data).hexdigest()
        meta_subject = f"$O.{names.BUNDLES}.M.{base64.urlsafe_b64encode(digest.encode()).decode()}"
        # A direct get only: a replica lagging behind a put of the same bundle
        # costs a second copy of it (harmless, see `_put_object`), not a
        # request through the JetStream API for every new bundle.
        info = await self._object_info(meta_subject, direct_only=True)
        if info is not None and not info.deleted and info.nuid:
            return digest
        stored = data if self.bundle_keys is None else self.bundle_keys.seal(data, name=digest)
        await self._put_object(digest, stored)
        return digest

    async def _put_object(self, name: str, data: bytes) -> None:
        """Write an object as nats-py's `ObjectStore.put` does, minus its roll-up and purge.

        The store's stream refuses both (deny_purge), and a content-addressed
        object never needs them: its name always means the same bytes. Two
        writers racing on one name each leave a complete copy, and the last
        meta message (read by `get`) points at one of them. A put cut short
        leaves chunks nothing points at; they cannot be purged, and cost only
        their bytes.
        """
        nuid = secrets.token_hex(11)
        chunk_subject = f"$O.{names.BUNDLES}.C.{nuid}"
        chunk_bytes = min(_CHUNK_BYTES, self.message_limit())
        chunks = 0
        for offset in range(0, len(data), chunk_bytes):
            await self.js.publish(
                chunk_subject, data[offset : offset + chunk_bytes], stream=names.BUNDLES_STREAM
            )
            chunks += 1
        info = api.ObjectInfo(
            name=name,
            bucket=names.BUNDLES,
            nuid=nuid,
            size=len(data),
            chunks=chunks,
            mtime=datetime.now(UTC).isoformat(),
            digest="SHA-256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode(),
            options=api.ObjectMetaOptions(max_chunk_size=chunk_bytes),
        )
        meta_subject = f"$O.{names.BUNDLES}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
        await self.js.publish(
            meta_subject, json.dumps(info.as_dict()).encode(), stream=names.BUNDLES_STREAM
        )

    async def get_bundle(self, digest: str) -> bytes:
        """The bundle stored under `digest`, opened if sealed, checked against it."""
        data = await self._get_object(digest)
        if keys.is_sealed(data):
            if self.bundle_keys is None:
                raise BundleSealed(
                    f"bundle {digest} in {names.BUNDLES} is sealed with key "
                    f"{keys.sealed_key_id(data)!r} and no bundle keyring is configured "
                    f"(set {env_name('bundle_keyring_file')} or use the data dir of `wake up`)"
                )
            try:
                data = self.bundle_keys.open(data, name=digest)
            except keys.BundleSealError as exc:
                raise BundleCorrupt(f"{exc} ({names.BUNDLES})") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise BundleCorrupt(f"bundle {digest} in {names.BUNDLES} does not match its digest")
        return data

    async def _get_object(self, name: str) -> bytes:
        """An object's bytes, read by direct gets of its meta and then its chunks.

        Not nats-py's `ObjectStore.get`, which creates and deletes an ordered
        consumer per object -- the server's costliest request, made by the
        planner and the applier once per app in a fan-out. BundleNotFound if
        there is no such object.
        """
        meta_subject = f"$O.{names.BUNDLES}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
        info = await self._object_info(meta_subject)
        if info is None or info.deleted or not info.nuid:
            raise BundleNotFound(f"no bundle {name} in {names.BUNDLES}")
        chunk_subject = f"$O.{names.BUNDLES}.C.{info.nuid}"
        parts = []
        seq = 0
        for _ in range(info.chunks or 0):
            try:
                chunk = await self._bundle_get(seq + 1, chunk_subject, next=True)
            except js_errors.NotFoundError:
                break  # fewer chunks than the meta says: the digest check below fails
            parts.append(chunk.data or b"")
            seq = chunk.seq or seq + 1
        return b"".join(parts)

    async def _object_info(
        self, meta_subject: str, *, direct_only: bool = False
    ) -> api.ObjectInfo | None:
        try:
            if direct_only:
                meta = await self.js.get_msg(
                    names.BUNDLES_STREAM, subject=meta_subject, direct=True
                )
            else:
                meta = await self._bundle_get(None, meta_subject)
        except js_errors.NotFoundError:
            return None
        return api.ObjectInfo.from_response(json.loads(meta.data or b"{}"))

    async def _bundle_get(
        self, seq: int | None, subject: str, *, next: bool = False
    ) -> api.RawStreamMsg:
        """A message of the bundle store, by a direct get where one can answer.

        Objects are content-addressed and never change: whichever replica
        answers a direct get has the same bytes, or none yet (it lags behind
        the put) -- then the stream's leader is asked, through the JetStream
        API (one request queue for the whole server, JSON and base64 both
        ways: what every plan and apply of a fan-out waited on).
        """
        try:
            return await self.js.get_msg(
                names.BUNDLES_STREAM, seq, subject=subject, direct=True, next=next
            )
        except js_errors.NotFoundError:
            return await self.js.get_msg(names.BUNDLES_STREAM, seq, subject=subject, next=next)


class _ConsumerGap(Exception):
    pass


_FLOW_CONTROL = object()


class _PushReader:
    """One ephemeral push consumer and the inbox it delivers to."""

    def __init__(
        self, log: EventLog, filters: list[str], from_seq: int, since: datetime | None
    ) -> None:
        self._log = log
        self._filters = filters
        self._from_seq = from_seq
        self._since = since
        self._buffer: deque[tuple[int, str, bytes, int] | tuple[object, str]] = deque()
        self._ready = asyncio.Event()
        self._consumer_seq = 0
        self._heard_at = time.monotonic()
        self._subscription = None
        self._consumer_name: str | None = None

    async def start(self) -> int:
        """Create the consumer; return how many events it will deliver for now."""
        nc = self._log.nc
        inbox = nc.new_inbox()
        self._subscription = await nc.subscribe(
            inbox, cb=self._receive, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        if isinstance(nc, _Client):
            nc.route_raw(self._subscription._id, self._receive_raw)
        config = api.ConsumerConfig(
            # Named: the unnamed create request may update an existing consumer
            # of the name in its body, so it is the admin's alone (see
            # services/wiring/permissions.py); readers create by name.
            name=f"wake-reader-{uuid.uuid4().hex}",
            deliver_subject=inbox,
            ack_policy=api.AckPolicy.NONE,
            flow_control=True,
            idle_heartbeat=_HEARTBEAT,
            inactive_threshold=30.0,
            mem_storage=True,
            num_replicas=1,
            max_ack_pending=-1,
        )
        if self._since is not None:
            config.deliver_policy = api.DeliverPolicy.BY_START_TIME
            config.opt_start_time = self._since.isoformat()
        else:
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self._from_seq
        if len(self._filters) == 1:
            config.filter_subject = self._filters[0]
        else:
            config.filter_subjects = self._filters
        info = await self._log.js.add_consumer(names.STREAM, config)
        self._consumer_name = info.name
        return info.num_pending or 0

    async def _receive(self, message) -> None:
        """A message handed over by nats-py (a client other than Wake's `_Client`)."""
        status = message.headers.get("Status") if message.headers else None
        self._take(message.subject, message.reply, message.data, status_100=status == "100")

    def _receive_raw(self, subject: bytes, reply: bytes, data: bytes, headers: bytes) -> None:
        """The same, on the bytes the server sent (`_Client.route_raw`)."""
        self._take(
            subject.decode(), reply.decode(), data, status_100=headers.startswith(_STATUS_100)
        )

    def _take(self, subject: str, reply: str, data: bytes, *, status_100: bool) -> None:
        self._heard_at = time.monotonic()
        if not data:
            # Status 100: an idle heartbeat (no reply) or a flow-control request (reply).
            if reply and status_100:
                self._buffer.append((_FLOW_CONTROL, reply))
                self._ready.set()
            return
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
        tokens = reply.rsplit(".", 5)
        self._buffer.append((int(tokens[-4]), subject, data, int(tokens[-1]), int(tokens[-3])))
        self._ready.set()

    def __aiter__(self) -> _PushReader:
        return self

    async def __anext__(self) -> tuple[int, str, bytes, int]:
        while True:
            while not self._buffer:
                self._ready.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), _SILENCE_LIMIT)
                if not self._buffer and time.monotonic() - self._heard_at > _SILENCE_LIMIT:
                    raise _ConsumerGap
            item = self._buffer.popleft()
            if item[0] is _FLOW_CONTROL:
                await self._log.nc.publish(item[1])
                continue
            seq, subject, data, pending, consumer_seq = item
            if consumer_seq != self._consumer_seq + 1:
                raise _ConsumerGap
            self._consumer_seq = consumer_seq
            return seq, subject, data, pending

    async def close(self) -> None:
        if self._subscription is not None:
            if isinstance(self._log.nc, _Client):
                self._log.nc.unroute_raw(self._subscription._id)
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()
        # Without a connection, deleting would wait out the request timeout; the
        # server drops the consumer itself once inactive (or has forgotten it).
        if self._consumer_name is not None and self._log.nc.is_connected:
            with contextlib.suppress(js_errors.NotFoundError, nats.errors.Error):
                await self._log.js.delete_consumer(names.STREAM, self._consumer_name)
