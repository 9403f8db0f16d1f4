"""Leases on real JetStream KV: one holder per partition, handed over when it stops renewing."""

from __future__ import annotations

import asyncio

from services.wiring.consumers import Placement
from services.wiring.eventlog import EventLog
from services.wiring.leases import LEASE_TTL, Leases, SlotLease
from tests.waiting import eventually


async def test_each_partition_has_one_holder_and_a_dead_holders_partitions_move(
    event_log: EventLog, nats_server
):
    # Given two replicas, each preferring one of two partitions
    logs = [await EventLog.connect(nats_server.url, name=f"lease-{i}") for i in (0, 1)]
    taken: list[tuple[str, int]] = []
    leases = [
        Leases(
            logs[i],
            "poll-test",
            Placement(partitions=2, slot=i, replicas=2),
            holder=f"r{i}",
            on_acquired=lambda p, i=i: taken.append((f"r{i}", p)),
        )
        for i in (0, 1)
    ]
    stops = [asyncio.Event(), asyncio.Event()]
    for lease in leases:
        await lease.start()
    tasks = [asyncio.create_task(leases[i].run(stops[i])) for i in (0, 1)]
    try:
        # Then each holds its own partition, and only that
        assert [leases[0].holds(p) for p in (0, 1)] == [True, False]
        assert [leases[1].holds(p) for p in (0, 1)] == [False, True]
        # When replica 0's process dies: its connection goes first, so it can
        # neither renew nor give up its lease
        await logs[0].nc.close()
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
        # Then replica 1 takes partition 0 once the lease has aged out
        await eventually(
            lambda: leases[1].holds(0), timeout=LEASE_TTL * 4, what="partition 0 taken over"
        )
        assert taken == [("r1", 0)]
        assert leases[1].holds(1)
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await logs[1].close()


async def test_replicas_started_alike_claim_distinct_slots_and_a_dead_ones_slot_is_reused(
    event_log: EventLog, nats_server
):
    # Given three processes of a service meant to run as two replicas
    logs = [await EventLog.connect(nats_server.url, name=f"slot-{i}") for i in (0, 1, 2)]
    claims = [SlotLease(logs[i], "planner", 2, holder=f"p{i}") for i in (0, 1, 2)]
    stop = asyncio.Event()
    try:
        # Then the first two get slots 0 and 1, the third none (it is a standby)
        assert [await claim.claim() for claim in claims] == [0, 1, None]
        keeping = asyncio.create_task(claims[1].keep(stop))
        # When the first dies without freeing its slot
        await logs[0].nc.close()
        # Then a replacement gets slot 0 once it has aged out, not slot 1
        replacement = SlotLease(logs[2], "planner", 2, holder="p3")

        async def claimed() -> bool:
            return await replacement.claim() == 0

        await eventually(claimed, timeout=LEASE_TTL * 4, what="slot 0 free again")
        stop.set()
        await keeping
    finally:
        stop.set()
        for log in logs[1:]:
            await log.close()
