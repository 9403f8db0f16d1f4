"""Rebuilding the read models from the log, and Wake's log next to `eventsourcing`'s recorder.

    python bench/replay.py [--n 1000000] [--one-by-one-n 20000] [--batched-n 200000]

Starts its own embedded NATS (sync_interval: always) and PostgreSQL (fsync on,
synchronous_commit on) in a temporary directory, then:

1. appends `--n` events of realistic size (events.samples, one journey of
   every type after another, over 50 apps, each journey with its own plan and
   apply ids) and times `wake replay` rebuilding every read model from them
   (`replaying.rebuild`, the function the command runs) into a fresh schema;
2. at equal durability (every acknowledged append on disk), appends the same
   events to `eventsourcing`'s PostgresApplicationRecorder and to a fresh
   WAKE_EVENTS, one at a time (`--one-by-one-n`) and in batches of 500
   (`--batched-n`), then reads each back in order; prints every rate and
   Wake's ratio to `eventsourcing`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import msgspec

from events import encode, new_event
from events.envelope import Envelope
from events.samples import sample_payloads
from events.signing import KEY_TYPES
from services.projector import replaying, store
from services.wiring.embedded_nats import start_nats
from services.wiring.embedded_postgres import start_postgres
from services.wiring.eventlog import EventLog, provision
from services.wiring.infra import bus_security
from services.wiring.signing import sign_with_new_admin

APPS = 50
BATCH = 500
# `wake replay` of 1M events on this machine before events were signed (README).
UNSIGNED_REPLAY_SECONDS = 26.1


def make_events(n: int) -> list[Envelope]:
    """`n` events: journeys of every sample type in turn, each with ids of its own."""
    # The key events are the admin's, on the system app: not part of an app's traffic.
    samples = [p for p in sample_payloads() if p.event_type not in KEY_TYPES]
    events: list[Envelope] = []
    journey = 0
    while len(events) < n:
        app = f"app-{journey % APPS}"
        cause = None
        for payload in samples:
            if len(events) == n:
                break
            changes = {}
            if hasattr(payload, "plan_id"):
                changes["plan_id"] = f"plan-{journey}"
            if hasattr(payload, "apply_id"):
                changes["apply_id"] = f"apply-{journey}"
            if changes:
                payload = msgspec.structs.replace(payload, **changes)
            event = new_event(payload, app=app, actor="bench", cause=cause)
            events.append(event)
            cause = event
        journey += 1
    return events


async def fresh_log(root: Path, name: str) -> tuple[object, EventLog]:
    # Secured as `wake up` secures it, so the figures include authentication.
    credentials, security = bus_security(root / name)
    server = await start_nats(root / name, security=security)
    log = await EventLog.connect(server.url, name="bench", credentials=credentials.kwargs("admin"))
    await provision(log.nc)
    # Signed as every append is (events/signing.py): the figures include signing and,
    # for reads, verifying every event.
    sign_with_new_admin(log)
    return server, log


async def append_batched(log: EventLog, events: list[Envelope]) -> None:
    for start in range(0, len(events), BATCH):
        await log.append_many(events[start : start + BATCH])


async def bench_rebuild(root: Path, database_url: str, events: list[Envelope]) -> None:
    server, log = await fresh_log(root, "rebuild")
    started = time.perf_counter()
    await append_batched(log, events)
    print(
        f"wrote {len(events):,} events to the log in {time.perf_counter() - started:.1f} s "
        "(batches of 500)"
    )
    conn = await asyncpg.connect(database_url)
    try:
        load = os.getloadavg()[0]
        cpu = time.process_time()
        rebuilt = await replaying.rebuild(log, database_url, store.schema_name("bench_replay"))
        cpu = time.process_time() - cpu
        counts = {
            table: await conn.fetchval(f"SELECT count(*) FROM bench_replay.{table}")
            for table in store.READ_MODELS
        }
        await store.drop_schema(conn, store.schema_name("bench_replay"))
    finally:
        await conn.close()
    print(
        f"wake replay: rebuilt every read model from {rebuilt.events:,} events in "
        f"{rebuilt.seconds:.1f} s = {rebuilt.rate:,.0f} events/s (target: 1M in <= 30 s; "
        f"unsigned before: 1M in {UNSIGNED_REPLAY_SECONDS} s)"
    )
    checks = rebuilt.checks
    print(
        f"  every signature checked (as `wake replay --verify` reports): {checks.events:,} "
        f"events in {checks.seconds:.1f} s of it = {checks.rate:,.0f} events/s, "
        f"{checks.signatures:,} Ed25519 verifications; {len(rebuilt.refused)} refused"
    )
    print(
        f"  this process's CPU time in it: {cpu:.1f} s; load average before it: {load:.2f} "
        f"on {os.cpu_count()} cores (NATS and PostgreSQL share them)"
    )
    print("  rows: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))
    await log.close()
    await server.stop()


def es_recorder(database_url: str, schema: str):
    from urllib.parse import urlsplit

    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    # The same role and password as Wake's own (scram-sha-256: no passwordless login).
    url = urlsplit(database_url)
    datastore = PostgresDatastore(
        dbname="wake",
        host="127.0.0.1",
        port=url.port,
        user=url.username,
        password=url.password or "",
        schema=schema,
        pool_size=2,
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()
    return datastore, recorder


def stored_events(events: list[Envelope]):
    from eventsourcing.persistence import StoredEvent

    # One aggregate per journey's first event id, versions in order: each
    # append inserts new versions, as an application saving aggregates does.
    versions: dict[str, int] = {}
    result = []
    for event in events:
        origin = event.correlation_id
        version = versions.get(origin, 0) + 1
        versions[origin] = version
        result.append(
            StoredEvent(
                originator_id=uuid.UUID(origin),
                originator_version=version,
                topic=event.type,
                state=encode(event),
            )
        )
    return result


def es_append_one(recorder, items) -> float:
    started = time.perf_counter()
    for item in items:
        recorder.insert_events([item])
    return len(items) / (time.perf_counter() - started)


def es_append_batched(recorder, items) -> float:
    started = time.perf_counter()
    for start in range(0, len(items), BATCH):
        recorder.insert_events(items[start : start + BATCH])
    return len(items) / (time.perf_counter() - started)


def es_read_all(recorder, expected: int) -> float:
    started = time.perf_counter()
    seen = 0
    position = None
    while True:
        page = recorder.select_notifications(position, 1000, inclusive_of_start=position is None)
        if not page:
            break
        seen += len(page)
        position = page[-1].id
    assert seen == expected, (seen, expected)
    return seen / (time.perf_counter() - started)


async def wake_read_all(log: EventLog, expected: int) -> float:
    started = time.perf_counter()
    seen = 0
    async for _ in log.read():
        seen += 1
    assert seen == expected, (seen, expected)
    return seen / (time.perf_counter() - started)


async def bench_compare(
    root: Path,
    database_url: str,
    postgres_port: int,
    events: list[Envelope],
    one_n: int,
    batched_n: int,
) -> None:
    rates: dict[str, tuple[float, float]] = {}
    one = events[:one_n]
    batched = events[:batched_n]

    # eventsourcing's recorder, its PostgreSQL fsyncing every commit.
    conn = await asyncpg.connect(database_url)
    for schema in ("es_one", "es_batched"):
        await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.close()
    datastore, recorder = es_recorder(database_url, "es_one")
    es_one = await asyncio.to_thread(es_append_one, recorder, stored_events(one))
    es_read_one = await asyncio.to_thread(es_read_all, recorder, len(one))
    datastore.close()
    datastore, recorder = es_recorder(database_url, "es_batched")
    es_batch = await asyncio.to_thread(es_append_batched, recorder, stored_events(batched))
    es_read = await asyncio.to_thread(es_read_all, recorder, len(batched))
    datastore.close()

    # Wake's log, NATS fsyncing every write before its ack.
    server, log = await fresh_log(root, "one")
    started = time.perf_counter()
    for event in one:
        await log.append(event)
    wake_one = len(one) / (time.perf_counter() - started)
    await log.close()
    await server.stop()
    server, log = await fresh_log(root, "batched")
    started = time.perf_counter()
    await append_batched(log, batched)
    wake_batch = len(batched) / (time.perf_counter() - started)
    wake_read = await wake_read_all(log, len(batched))
    await log.close()
    await server.stop()

    rates[f"append one at a time ({len(one):,} events)"] = (wake_one, es_one)
    rates[f"append in batches of {BATCH} ({len(batched):,} events)"] = (wake_batch, es_batch)
    rates[f"read all in order ({len(batched):,} events)"] = (wake_read, es_read)
    print()
    print(f"{'events/s':<44} {'Wake log':>12} {'eventsourcing':>14} {'ratio':>7}")
    for label, (wake, es) in rates.items():
        print(f"{label:<44} {wake:>12,.0f} {es:>14,.0f} {wake / es:>6.1f}x")
    print(f"(eventsourcing read-back of the one-at-a-time table: {es_read_one:,.0f} events/s)")


async def run(n: int, one_n: int, batched_n: int) -> None:
    events = make_events(max(n, batched_n, one_n))
    size = sum(len(encode(e)) for e in events[:2200]) / 2200
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    es_version = importlib.metadata.version("eventsourcing")
    print(
        f"python {platform.python_version()}; eventsourcing {es_version}; "
        f"mean event size {size:.0f} bytes"
    )
    print(
        "durability: nats-server sync_interval always; PostgreSQL fsync=on, "
        "synchronous_commit=on (every acknowledged append is on disk)"
    )
    with tempfile.TemporaryDirectory(prefix="wake-bench-") as tmp:
        root = Path(tmp)
        postgres = await start_postgres(root / "pg")
        try:
            if n:
                await bench_rebuild(root, postgres.url, events[:n])
            await bench_compare(root, postgres.url, postgres.port, events, one_n, batched_n)
        finally:
            await postgres.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="events for the rebuild")
    parser.add_argument("--one-by-one-n", type=int, default=20_000)
    parser.add_argument("--batched-n", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(run(args.n, args.one_by_one_n, args.batched_n))


if __name__ == "__main__":
    main()
