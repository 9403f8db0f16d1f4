"""Appends and replay on WAKE_EVENTS, against a NATS server that fsyncs every write.

    python bench/log_throughput.py [--n 100000] [--one-by-one-n 10000]

Starts its own embedded NATS server (sync_interval: always) in a temporary
directory and prints, for events of realistic size (events.samples, one of
every type in turn, over 50 apps):

- appends/s one by one (each awaits its PubAck),
- appends/s pipelined (500 PubAcks outstanding, nats-py publish_async),
- appends/s group-committed (EventLog.append_many: JetStream atomic batches),
- events/s replayed in order, decoded and verified (EventLog.read).

Every event is signed (events/signing.py: a batch once, a single event alone) and
every read verified; each figure is printed next to the one measured before
events were signed (README, same machine).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

from events import encode, new_event
from events.names import subject
from events.samples import sample_payloads
from events.signing import KEY_TYPES
from services.wiring.embedded_nats import start_nats
from services.wiring.eventlog import EventLog, headers_for, provision
from services.wiring.infra import bus_security
from services.wiring.signing import seal_as, sign_with_new_admin

# Figures of this machine before events were signed (README), for comparison.
UNSIGNED = {"one": 1_628, "pipelined": 3_661, "group": 26_991, "replay": 63_358}


def versus(rate: float, key: str) -> str:
    before = UNSIGNED[key]
    return f"(unsigned before: {before:,}; {100 * (rate - before) / before:+.0f}%)"


def make_events(n: int, tag: str) -> list:
    # The key events are the admin's, on the system app: not part of an app's traffic.
    samples = [p for p in sample_payloads() if p.event_type not in KEY_TYPES]
    return [
        new_event(samples[i % len(samples)], app=f"{tag}-{i % 50}", actor="bench") for i in range(n)
    ]


async def fresh_log(root: Path, name: str):
    # Secured as `wake up` secures it, so the figures include authentication.
    credentials, security = bus_security(root / name)
    server = await start_nats(root / name, security=security)
    log = await EventLog.connect(server.url, name="bench", credentials=credentials.kwargs("admin"))
    await provision(log.nc)
    # Signed as every append is (events/signing.py): the figures include signing and,
    # for reads, verifying every event.
    sign_with_new_admin(log)
    return server, log


async def run(n: int, one_by_one_n: int) -> None:
    events = make_events(n, "app")
    size = sum(len(encode(e)) for e in events[:1000]) / 1000
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"python {platform.python_version()}; events: {n}, mean size {size:.0f} bytes")
    print("nats-server: sync_interval always (every write fsynced before its ack)")
    with tempfile.TemporaryDirectory(prefix="wake-bench-") as tmp:
        root = Path(tmp)

        server, log = await fresh_log(root, "one")
        subset = events[:one_by_one_n]
        started = time.perf_counter()
        for event in subset:
            await log.append(event)
        rate = len(subset) / (time.perf_counter() - started)
        print(
            f"append one by one:      {rate:>10,.0f} events/s  ({len(subset)} events) "
            + versus(rate, "one")
        )
        await log.close()
        await server.stop()

        server, log = await fresh_log(root, "pipelined")
        started = time.perf_counter()
        window: list[asyncio.Future] = []
        key = log.signer.key
        for event in events:
            # Each signed alone, as a writer without group commit signs.
            ((sealed, data),) = seal_as(key, [event], actor=key.identity)
            window.append(
                await log.js.publish_async(
                    subject(event.app, event.type), data, headers=headers_for(sealed)
                )
            )
            if len(window) >= 500:
                await asyncio.gather(*window)
                window = []
        await asyncio.gather(*window)
        rate = n / (time.perf_counter() - started)
        print(f"append pipelined (500): {rate:>10,.0f} events/s  " + versus(rate, "pipelined"))
        await log.close()
        await server.stop()

        server, log = await fresh_log(root, "batched")
        started = time.perf_counter()
        for i in range(0, n, 1000):
            await log.append_many(events[i : i + 1000])
        rate = n / (time.perf_counter() - started)
        print(
            f"append group commit:    {rate:>10,.0f} events/s  (atomic batches of 1000) "
            + versus(rate, "group")
        )

        started = time.perf_counter()
        count = 0
        async for _ in log.read():
            count += 1
        rate = count / (time.perf_counter() - started)
        assert count == n, (count, n)
        print(
            f"replay + decode + verify: {rate:>8,.0f} events/s  (in order, {count} events) "
            + versus(rate, "replay")
        )
        signatures = log.trust.verifier.signatures
        print(f"  ({signatures:,} Ed25519 verifications: one per signed batch)")
        await log.close()
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--one-by-one-n", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(run(args.n, min(args.one_by_one_n, args.n)))


if __name__ == "__main__":
    main()
