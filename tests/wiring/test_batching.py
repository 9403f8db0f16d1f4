"""publish_atomic_batch against a real nats-server with fsync on every write."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig

from services.wiring.batching import (
    DEFAULT_MAX_BATCH_MSGS,
    ERR_BATCH_DUPLICATE_MSG_ID,
    ERR_BATCH_INCOMPLETE,
    BatchDuplicate,
    BatchRejected,
    BatchTooLarge,
    publish_atomic_batch,
)
from services.wiring.ports import free_port

NATS_SERVER = Path(sys.executable).parent / "nats-server"
PAYLOAD = b"p" * 600


@pytest.fixture(scope="module")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("nats")
    conf = tmp / "server.conf"
    conf.write_text("jetstream { sync_interval: always }\n")
    port = free_port()
    proc = subprocess.Popen(
        [str(NATS_SERVER), "-c", str(conf), "-js", "-sd", str(tmp / "js"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
async def nc(nats_url: str) -> AsyncIterator[Client]:
    # Readiness = a successful connect; retry until the server listens.
    last: Exception | None = None
    for _ in range(200):
        try:
            conn = await nats.connect(nats_url, allow_reconnect=False, connect_timeout=1)
            break
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            last = exc
            await asyncio.sleep(0.05)  # back-off between attempts, not a readiness guess
    else:
        raise RuntimeError(f"nats-server did not come up: {last!r}")
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def stream(nc: Client) -> str:
    """A fresh WAKE_EVENTS-like stream; returns its subject prefix."""
    name = "T" + uuid.uuid4().hex[:8].upper()
    prefix = f"t{name.lower()}"
    await nc.jetstream().add_stream(
        StreamConfig(
            name=name,
            subjects=[f"{prefix}.>"],
            storage=StorageType.FILE,
            deny_delete=True,
            deny_purge=True,
            allow_atomic=True,
        )
    )
    return prefix


def _events(prefix: str, n: int, app: str = "myapp") -> list[tuple[str, bytes, dict[str, str]]]:
    return [
        (f"{prefix}.{app}.Ev{i}", PAYLOAD + str(i).encode(), {"Nats-Msg-Id": uuid.uuid4().hex})
        for i in range(n)
    ]


async def _last_seq(nc: Client, prefix: str) -> int:
    info = await nc.jetstream().find_stream_name_by_subject(f"{prefix}.x")
    return (await nc.jetstream().stream_info(info)).state.last_seq


async def _stored(nc: Client, prefix: str) -> list[tuple[int, str, bytes]]:
    js = nc.jetstream()
    name = await js.find_stream_name_by_subject(f"{prefix}.x")
    last = (await js.stream_info(name)).state.last_seq
    out = []
    for seq in range(1, last + 1):
        m = await js.get_msg(name, seq)
        out.append((m.seq, m.subject, m.data))
    return out


async def test_batch_lands_atomically_in_order(nc: Client, stream: str) -> None:
    await nc.jetstream().publish(f"{stream}.other.Ev", b"before")
    msgs = _events(stream, 250)
    ack = await publish_atomic_batch(nc, msgs)
    assert ack.count == 250 and len(ack.chunks) == 1
    assert (ack.first_seq, ack.last_seq) == (2, 251)
    assert ack.seqs == tuple(range(2, 252))
    assert ack.duplicates == (False,) * 250
    stored = await _stored(nc, stream)
    assert [(s, subj, data) for s, subj, data in stored[1:]] == [
        (seq, subj, data) for seq, (subj, data, _h) in zip(ack.seqs, msgs, strict=True)
    ]


async def test_replayed_batch_is_rejected_whole_then_resolved(nc: Client, stream: str) -> None:
    msgs = _events(stream, 20)
    first = await publish_atomic_batch(nc, msgs)

    # Server behaviour: any known Nats-Msg-Id rejects the whole batch (10201),
    # nothing stored, no hint which message was the duplicate.
    fresh = _events(stream, 5)
    mixed = [*fresh[:2], msgs[7], *fresh[2:]]
    with pytest.raises(BatchDuplicate) as exc_info:
        await publish_atomic_batch(nc, mixed, on_duplicate="raise")
    assert exc_info.value.err_code == ERR_BATCH_DUPLICATE_MSG_ID
    assert exc_info.value.code == 400
    assert exc_info.value.stored_count == 0
    assert await _last_seq(nc, stream) == first.last_seq

    # A repeated id inside one batch is rejected the same way.
    dup_inside = _events(stream, 3)
    dup_inside.append((dup_inside[0][0], b"again", dict(dup_inside[0][2])))
    with pytest.raises(BatchDuplicate):
        await publish_atomic_batch(nc, dup_inside, on_duplicate="raise")
    assert await _last_seq(nc, stream) == first.last_seq

    # Retry after a lost commit ack: every message is a duplicate, the fallback
    # reports the original sequences and stores nothing new.
    again = await publish_atomic_batch(nc, msgs)
    assert again.seqs == first.seqs
    assert all(again.duplicates)
    assert await _last_seq(nc, stream) == first.last_seq

    # Partial overlap: only the new messages are stored (one by one, in order).
    resolved = await publish_atomic_batch(nc, mixed)
    assert resolved.duplicates == (False, False, True, False, False, False)
    assert resolved.seqs[2] == first.seqs[7]
    new = [s for s, d in zip(resolved.seqs, resolved.duplicates, strict=True) if not d]
    assert new == list(range(first.last_seq + 1, first.last_seq + 6))


async def test_conditional_duplicate_is_not_resolved(nc: Client, stream: str) -> None:
    cond = {
        "Nats-Expected-Last-Subject-Sequence": "0",
        "Nats-Expected-Last-Subject-Sequence-Subject": f"{stream}.myapp.>",
    }
    msgs = _events(stream, 3)
    msgs[0] = (msgs[0][0], msgs[0][1], {**msgs[0][2], **cond})
    first = await publish_atomic_batch(nc, msgs)
    assert first.seqs == (1, 2, 3)
    # Replay: dedupe is checked before the (now stale) expected sequence.
    with pytest.raises(BatchDuplicate):
        await publish_atomic_batch(nc, msgs)
    assert await _last_seq(nc, stream) == 3


async def test_over_limit_is_split_into_atomic_chunks(nc: Client, stream: str) -> None:
    n = 2 * DEFAULT_MAX_BATCH_MSGS + 500
    msgs = _events(stream, n)
    ack = await publish_atomic_batch(nc, msgs)
    assert [c.count for c in ack.chunks] == [1000, 1000, 500]
    assert ack.seqs == tuple(range(1, n + 1))
    assert len({c.batch_id for c in ack.chunks}) == 3


async def test_server_limit_is_enforced(nc: Client, stream: str) -> None:
    # Pretending the server allows more surfaces the server's own refusal.
    msgs = _events(stream, DEFAULT_MAX_BATCH_MSGS + 1)
    with pytest.raises(BatchRejected) as exc_info:
        await publish_atomic_batch(nc, msgs, max_msgs=DEFAULT_MAX_BATCH_MSGS + 1)
    assert exc_info.value.err_code == 10199
    assert await _last_seq(nc, stream) == 0


async def test_conditional_batch_over_limit_is_refused(nc: Client, stream: str) -> None:
    msgs = _events(stream, 11)
    msgs[0] = (msgs[0][0], msgs[0][1], {"Nats-Expected-Last-Subject-Sequence": "0"})
    with pytest.raises(BatchTooLarge):
        await publish_atomic_batch(nc, msgs, max_msgs=10)
    assert await _last_seq(nc, stream) == 0


async def test_failure_mid_batch_stores_nothing(nc: Client, stream: str) -> None:
    await publish_atomic_batch(nc, _events(stream, 4))

    # A conditional check on a middle message fails at commit: whole batch dropped.
    msgs = _events(stream, 10)
    msgs[5] = (
        msgs[5][0],
        msgs[5][1],
        {
            **msgs[5][2],
            "Nats-Expected-Last-Subject-Sequence": "1",
            "Nats-Expected-Last-Subject-Sequence-Subject": f"{stream}.myapp.>",
        },
    )
    with pytest.raises(BatchRejected) as exc_info:
        await publish_atomic_batch(nc, msgs)
    assert exc_info.value.err_code == 10071
    assert await _last_seq(nc, stream) == 4

    # A message lost in transit (here: sent to a subject no stream captures)
    # leaves a sequence gap; the server refuses the commit, nothing stored.
    msgs = _events(stream, 10)
    msgs[3] = ("nowhere.at.all", b"lost", {})
    with pytest.raises(BatchRejected) as exc_info:
        await publish_atomic_batch(nc, msgs)
    assert exc_info.value.err_code == ERR_BATCH_INCOMPLETE
    assert await _last_seq(nc, stream) == 4

    # Later chunks of a split call are not sent after a failed chunk.
    msgs = _events(stream, 25)
    msgs[15] = (msgs[15][0], msgs[15][1], {"Nats-Expected-Last-Sequence": "1"})
    with pytest.raises(BatchTooLarge):
        await publish_atomic_batch(nc, msgs, max_msgs=10)
    msgs[15] = ("nowhere.at.all", b"lost", {})
    with pytest.raises(BatchRejected) as exc_info:
        await publish_atomic_batch(nc, msgs, max_msgs=10)
    assert exc_info.value.stored_count == 10
    assert await _last_seq(nc, stream) == 14


async def test_stream_without_allow_atomic(nc: Client) -> None:
    await nc.jetstream().add_stream(
        StreamConfig(name="PLAIN" + os.urandom(3).hex().upper(), subjects=["plainx.>"])
    )
    with pytest.raises(BatchRejected) as exc_info:
        await publish_atomic_batch(nc, [("plainx.a", b"x", {})])
    assert exc_info.value.err_code == 10174
