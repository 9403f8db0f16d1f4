"""Group commit for JetStream appends: atomic batch publish (ADR-50) over plain nats-py.

Why this exists: with ``jetstream { sync_interval: always }`` every stored message
is fsynced before its PubAck, so one-by-one publishing is bounded by fsync latency
(~1.4k msg/s measured, ~3.4k msg/s with 500 publishes in flight).  An atomic
batch is staged in server memory, written on commit and fsynced once per batch
(strace: one ``pwrite`` per message, a constant 4 ``fsync`` per commit, PubAck
sent after the fsync), which gives ~15k msg/s with 100-message batches and
~30-36k msg/s with 500-1000-message batches of 600-byte payloads on 2 cores.

Wire protocol (nats-server 2.12+, verified against 2.15.1), stream needs
``allow_atomic: true``:

* every message carries ``Nats-Batch-Id`` (<= 64 chars) and
  ``Nats-Batch-Sequence`` (1, 2, ... without gaps);
* the last one also carries ``Nats-Batch-Commit: 1`` (store it and commit) or
  ``Nats-Batch-Commit: eob`` (commit *without* storing that message, API level 3,
  2.14+).  Any other value is rejected (10200);
* a reply subject is optional on every message but the commit.  A message sent
  as a request gets an empty (zero-byte) reply if accepted, or an error PubAck;
  the commit gets ``{"stream", "seq": <last seq>, "batch": <id>, "count": n}``;
* the server keeps the batch-control headers on the stored messages (readers
  must tolerate them);
* errors are PubAcks shaped ``{"error": {"code", "err_code", "description"}}``,
  and the whole batch is discarded: 10174 atomic publish disabled, 10175
  sequence missing, 10176 incomplete (gap, unknown/abandoned batch), 10179
  invalid batch id, 10199 batch too large, 10200 invalid commit, 10201 batch
  contains a duplicate message id, 10177 unsupported header
  (``Nats-Expected-Last-Msg-Id``), 10210 (code 429) too many batches in flight,
  10071/10164 a ``Nats-Expected-*`` check failed;
* server limits (defaults; ``jetstream { limits { batch { max_msgs,
  max_inflight_per_stream, max_inflight_total, timeout } } }``): 1000 messages per
  batch, 50 open batches per stream, 1000 per server, a batch idle for 10 s is
  abandoned silently (an advisory is raised, the commit then fails with 10176).

Deduplication inside a batch (measured, this is what makes retries idempotent):
``Nats-Msg-Id`` is allowed, but if *any* message of the batch has an id already
in the stream's duplicate window, or two messages of the batch share an id, the
server rejects the **whole** batch at commit with 10201 ("atomic publish batch
contains duplicate message id") and stores nothing.  It does not skip the
duplicate and does not say which message was the duplicate; intermediate
replies are empty even for the duplicate message.  Dedupe is checked before the
``Nats-Expected-*`` checks, so a replayed conditional batch reports 10201, not a
wrong-sequence error.  Plain (non-batch) publishes behave differently: the
expected-sequence check runs first, and a duplicate gets a success PubAck with
``duplicate: true`` and the original sequence.

Conditional appends inside a batch: ``Nats-Expected-Last-Subject-Sequence`` (with
or without ``-Subject``, e.g. ``wake.evt.myapp.>``) is accepted on any message and
is evaluated at commit against the stream as it was *before* the batch (staged
messages of the same batch are not visible to it); without ``-Subject`` it is
rejected (10164) when an earlier message of the batch wrote the same subject.
``Nats-Expected-Last-Sequence`` is only allowed on the first message.  Put the
optimistic-concurrency check on the first message.

Fast batches (``allow_batched``, ADR-50 part 2, 2.14+) were measured too: they
store and fsync each message as it arrives (one fsync per message, ~4k msg/s)
and are not atomic, so they do not help under ``sync_interval: always``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import nats.errors
from nats.aio.client import Client

__all__ = [
    "DEFAULT_MAX_BATCH_MSGS",
    "ERR_BATCH_DUPLICATE_MSG_ID",
    "ERR_BATCH_INCOMPLETE",
    "ERR_BATCH_TOO_LARGE",
    "ERR_TOO_MANY_INFLIGHT",
    "BatchAck",
    "BatchDuplicate",
    "BatchError",
    "BatchOutcomeUnknown",
    "BatchRejected",
    "BatchTooLarge",
    "ChunkAck",
    "publish_atomic_batch",
]

# nats-server default for jetstream.limits.batch.max_msgs (stream_max_batch_size).
DEFAULT_MAX_BATCH_MSGS = 1000
# Server error codes (err_code) worth branching on.
ERR_BATCH_INCOMPLETE = 10176
ERR_BATCH_TOO_LARGE = 10199
ERR_BATCH_DUPLICATE_MSG_ID = 10201
ERR_TOO_MANY_INFLIGHT = 10210  # code 429: retryable once other batches finish

_HDR_BATCH_ID = "Nats-Batch-Id"
_HDR_BATCH_SEQ = "Nats-Batch-Sequence"
_HDR_BATCH_COMMIT = "Nats-Batch-Commit"
_HDR_MSG_ID = "Nats-Msg-Id"
_RESERVED = frozenset(h.lower() for h in (_HDR_BATCH_ID, _HDR_BATCH_SEQ, _HDR_BATCH_COMMIT))
_EXPECTED_PREFIX = "nats-expected-"

Message = tuple[str, bytes, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class ChunkAck:
    """One committed server batch: messages ``first_seq..last_seq`` are stored
    contiguously (or were already stored, if ``duplicate``).

    ``duplicate`` is only set by the ``on_duplicate="resolve"`` fallback; then the
    chunk was published message by message and ``seqs`` may not be contiguous.
    """

    batch_id: str
    seqs: tuple[int, ...]
    duplicates: tuple[bool, ...]

    @property
    def first_seq(self) -> int:
        return self.seqs[0]

    @property
    def last_seq(self) -> int:
        return self.seqs[-1]

    @property
    def count(self) -> int:
        return len(self.seqs)


@dataclass(frozen=True, slots=True)
class BatchAck:
    """Result of :func:`publish_atomic_batch`.

    ``seqs[i]`` is the stream sequence of ``messages[i]`` (for a duplicate
    resolved by the fallback: the sequence of the original message).
    ``first_seq``/``last_seq`` bound the whole call; the range is contiguous only
    when ``len(chunks) == 1`` and nothing was a duplicate, since another writer
    can append between two chunks.
    """

    stream: str
    chunks: tuple[ChunkAck, ...]

    @property
    def seqs(self) -> tuple[int, ...]:
        return tuple(s for c in self.chunks for s in c.seqs)

    @property
    def duplicates(self) -> tuple[bool, ...]:
        return tuple(d for c in self.chunks for d in c.duplicates)

    @property
    def first_seq(self) -> int:
        return self.chunks[0].first_seq

    @property
    def last_seq(self) -> int:
        return self.chunks[-1].last_seq

    @property
    def count(self) -> int:
        return sum(c.count for c in self.chunks)


class BatchError(Exception):
    """Base class.  ``committed`` lists the chunks that *are* durably stored
    (always a prefix of the input); every message after them was not stored by
    this call (except for :class:`BatchOutcomeUnknown`, see there)."""

    def __init__(self, message: str, *, committed: tuple[ChunkAck, ...] = ()) -> None:
        super().__init__(message)
        self.committed = committed

    @property
    def stored_count(self) -> int:
        """How many leading input messages are known to be stored."""
        return sum(c.count for c in self.committed)


class BatchRejected(BatchError):
    """The server refused the batch (chunk); nothing of that chunk was stored."""

    def __init__(
        self,
        code: int,
        err_code: int,
        description: str,
        *,
        batch_id: str,
        committed: tuple[ChunkAck, ...] = (),
    ) -> None:
        super().__init__(
            f"batch {batch_id} rejected: {description} (code={code}, err_code={err_code})",
            committed=committed,
        )
        self.code = code
        self.err_code = err_code
        self.description = description
        self.batch_id = batch_id


class BatchDuplicate(BatchRejected):
    """err_code 10201: some ``Nats-Msg-Id`` of the chunk is already in the stream
    (or repeated inside the chunk).  Nothing of the chunk was stored; the server
    does not say which message was the duplicate."""


class BatchOutcomeUnknown(BatchError):
    """No reply to the commit (timeout / connection loss): the chunk ``batch_id``
    may or may not be stored.  Retry the same messages with the same
    ``Nats-Msg-Id``s (within the stream's duplicate window) to find out."""

    def __init__(self, batch_id: str, *, committed: tuple[ChunkAck, ...] = ()) -> None:
        super().__init__(f"batch {batch_id}: outcome unknown", committed=committed)
        self.batch_id = batch_id


class BatchTooLarge(ValueError):
    """A conditional batch (``Nats-Expected-*`` headers) does not fit one server
    batch; splitting it would silently drop the atomicity of the check."""


async def publish_atomic_batch(
    nc: Client,
    messages: Sequence[tuple[str, bytes, Mapping[str, str]]],
    *,
    timeout: float = 10.0,
    max_msgs: int = DEFAULT_MAX_BATCH_MSGS,
    ack_first: bool = True,
    on_duplicate: Literal["raise", "resolve"] = "resolve",
) -> BatchAck:
    """Append ``messages`` (subject, payload, headers) to one stream, in order,
    as atomic batches of at most ``max_msgs`` messages.

    Promises, per chunk of ``max_msgs`` consecutive messages: either all of it is
    stored, in input order, at consecutive sequences and fsynced before this
    returns, or none of it is.  Chunks are committed one after the other and the
    first failure stops the call, so on error a prefix of whole chunks is stored
    (``exc.committed``) and nothing after it.  A single chunk (the normal case,
    ``len(messages) <= max_msgs``) is therefore all-or-nothing.

    All subjects must belong to the same stream, which must have
    ``allow_atomic: true``.  ``max_msgs`` must not exceed the server's
    ``jetstream.limits.batch.max_msgs`` (default 1000) or every chunk fails with
    10199.  Messages with ``Nats-Expected-*`` headers are never split: if they do
    not fit one chunk, :class:`BatchTooLarge` is raised before anything is sent.

    ``ack_first`` sends the first message as a request so refusals that happen
    before staging (atomic publish disabled, 10210 too many batches in flight,
    no stream for the subject) are reported as such instead of as a generic
    "incomplete batch" at commit; it costs one round trip per chunk (~10% at 100
    messages per chunk).

    ``on_duplicate``: the server rejects a chunk containing any known
    ``Nats-Msg-Id`` as a whole (10201).  With ``"raise"`` that surfaces as
    :class:`BatchDuplicate`.  With ``"resolve"`` (default) an *unconditional*
    chunk is re-published one message at a time as ordinary JetStream publishes
    with the same ids: duplicates are then acknowledged with their original
    sequence (``ChunkAck.duplicates``) and the others are stored.  That keeps
    retries idempotent, e.g. re-sending a chunk whose commit ack was lost (all
    messages are duplicates then), but the non-duplicate part of a partially
    overlapping chunk is stored without batch atomicity.  Conditional chunks are
    never resolved this way (a plain publish runs the expected-sequence check
    before dedupe, so it cannot tell "already stored" from "conflict"): they raise
    :class:`BatchDuplicate`.

    Raises :class:`BatchRejected` (or its subclass :class:`BatchDuplicate`) with
    the server's code/err_code/description, :class:`BatchOutcomeUnknown` if the
    commit got no reply within ``timeout``, :class:`BatchTooLarge` or
    :class:`ValueError` for invalid input.  Safe to call concurrently (each chunk
    gets its own batch id); the server admits 50 open batches per stream.
    """
    if not messages:
        raise ValueError("publish_atomic_batch: no messages")
    if max_msgs < 1:
        raise ValueError("max_msgs must be >= 1")
    conditional = False
    for _subject, _payload, headers in messages:
        for name in headers:
            low = name.lower()
            if low in _RESERVED:
                raise ValueError(f"header {name!r} is set by publish_atomic_batch")
            if low.startswith(_EXPECTED_PREFIX):
                conditional = True
    if conditional and len(messages) > max_msgs:
        raise BatchTooLarge(
            f"{len(messages)} messages with Nats-Expected-* headers exceed one "
            f"atomic batch ({max_msgs}); split them at a point where a new "
            "expected-sequence check is valid"
        )

    committed: list[ChunkAck] = []
    stream = ""
    for start in range(0, len(messages), max_msgs):
        chunk = messages[start : start + max_msgs]
        try:
            stream, ack = await _publish_chunk(nc, chunk, timeout=timeout, ack_first=ack_first)
        except BatchDuplicate as exc:
            if on_duplicate == "raise" or _is_conditional(chunk):
                raise BatchDuplicate(
                    exc.code,
                    exc.err_code,
                    exc.description,
                    batch_id=exc.batch_id,
                    committed=tuple(committed),
                ) from None
            stream, ack = await _resolve_one_by_one(
                nc, chunk, batch_id=exc.batch_id, timeout=timeout, committed=committed
            )
        except BatchRejected as exc:
            raise BatchRejected(
                exc.code,
                exc.err_code,
                exc.description,
                batch_id=exc.batch_id,
                committed=tuple(committed),
            ) from None
        except BatchOutcomeUnknown as exc:
            raise BatchOutcomeUnknown(exc.batch_id, committed=tuple(committed)) from None
        committed.append(ack)
    return BatchAck(stream=stream, chunks=tuple(committed))


def _is_conditional(chunk: Sequence[Message]) -> bool:
    return any(name.lower().startswith(_EXPECTED_PREFIX) for _s, _p, h in chunk for name in h)


async def _publish_chunk(
    nc: Client, chunk: Sequence[Message], *, timeout: float, ack_first: bool
) -> tuple[str, ChunkAck]:
    """Send one server batch (len(chunk) <= server limit) and wait for its commit."""
    # uuid4 hex: 32 chars, well under the 64-char limit; unique so concurrent
    # callers never collide into one server-side batch.
    batch_id = uuid.uuid4().hex
    last = len(chunk)
    for i, (subject, payload, headers) in enumerate(chunk, start=1):
        hdrs = {**headers, _HDR_BATCH_ID: batch_id, _HDR_BATCH_SEQ: str(i)}
        if i == last:
            # "1" stores the commit message itself; "eob" (2.14+) would not, and
            # every message here carries a payload we want stored.
            hdrs[_HDR_BATCH_COMMIT] = "1"
            try:
                reply = await nc.request(subject, payload, timeout=timeout, headers=hdrs)
            except nats.errors.NoRespondersError:
                raise BatchRejected(
                    503, 0, f"no stream listens on {subject!r}", batch_id=batch_id
                ) from None
            except (TimeoutError, nats.errors.TimeoutError, nats.errors.Error):
                # The commit may have been applied and only its reply lost.
                raise BatchOutcomeUnknown(batch_id) from None
            resp = _parse_reply(reply.data, batch_id)
            count = int(resp.get("count", 0))
            last_seq = int(resp["seq"])
            if count != last:
                raise BatchRejected(
                    0,
                    0,
                    f"commit acknowledged {count} messages, sent {last}",
                    batch_id=batch_id,
                )
            seqs = tuple(range(last_seq - count + 1, last_seq + 1))
            return str(resp["stream"]), ChunkAck(batch_id, seqs, (False,) * count)
        if i == 1 and ack_first:
            try:
                reply = await nc.request(subject, payload, timeout=timeout, headers=hdrs)
            except nats.errors.NoRespondersError:
                raise BatchRejected(
                    503, 0, f"no stream listens on {subject!r}", batch_id=batch_id
                ) from None
            except (TimeoutError, nats.errors.TimeoutError):
                # Nothing is committed before the commit message, so a lost
                # first ack is a plain failure; the server drops the half batch
                # after its batch timeout (10 s).
                raise BatchRejected(
                    408, 0, "no reply to first batch message", batch_id=batch_id
                ) from None
            if reply.data:  # empty reply = staged; anything else is an error PubAck
                _parse_reply(reply.data, batch_id)
        else:
            # Fire-and-forget is safe: a message lost in transit shows up as a
            # sequence gap at commit and the server discards the whole batch.
            try:
                await nc.publish(subject, payload, headers=hdrs)
            except nats.errors.Error as exc:
                # No commit was sent, so nothing of this chunk can be stored.
                raise BatchRejected(0, 0, f"publish failed: {exc!r}", batch_id=batch_id) from exc
    raise AssertionError("unreachable")


def _parse_reply(data: bytes, batch_id: str) -> dict[str, Any]:
    """Decode a PubAck; raise BatchRejected/BatchDuplicate if it is an error."""
    try:
        resp = json.loads(data)
    except ValueError:
        raise BatchRejected(0, 0, f"unparsable reply {data[:200]!r}", batch_id=batch_id) from None
    err = resp.get("error")
    if err:
        cls = BatchDuplicate if err.get("err_code") == ERR_BATCH_DUPLICATE_MSG_ID else BatchRejected
        raise cls(
            int(err.get("code", 0)),
            int(err.get("err_code", 0)),
            str(err.get("description", "")),
            batch_id=batch_id,
        )
    return resp


async def _resolve_one_by_one(
    nc: Client,
    chunk: Sequence[Message],
    *,
    batch_id: str,
    timeout: float,
    committed: list[ChunkAck],
) -> tuple[str, ChunkAck]:
    """Fallback after 10201: publish each message singly so the server's normal
    dedupe tells us, per message, whether it was already stored (and where).

    Sequential on purpose: it preserves input order among the newly stored
    messages.  A failure here leaves an unknown prefix of the chunk stored, which
    is reported as BatchOutcomeUnknown (retrying is safe: ids dedupe).
    """
    seqs: list[int] = []
    dups: list[bool] = []
    stream = ""
    for subject, payload, headers in chunk:
        try:
            reply = await nc.request(subject, payload, timeout=timeout, headers=dict(headers))
            resp = _parse_reply(reply.data, batch_id)
        except (TimeoutError, BatchRejected, nats.errors.Error):
            raise BatchOutcomeUnknown(batch_id, committed=tuple(committed)) from None
        stream = str(resp["stream"])
        seqs.append(int(resp["seq"]))
        dups.append(bool(resp.get("duplicate", False)))
    return stream, ChunkAck(batch_id, tuple(seqs), tuple(dups))
