"""Leases: which replica does work that no message drives (git-watcher's polling).

Messages are split across replicas by pinned partition consumers
(`consumers.py`); a timer is not a message, so the poller takes a lease on
each partition instead, in the NATS KV bucket `WAKE_LEASES` whose entries
live `LEASE_TTL` seconds (the bucket's max age). The holder renews its lease
every third of that with a compare-and-set on the revision it holds; another
replica can only `create` the key once it has aged out, so a replica's death
hands its partitions over within `LEASE_TTL`. A replica that finds its
renewal refused (it stalled past the TTL and someone took over) stops
treating the partition as its own at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import nats.errors
import nats.js.errors as js_errors

from services.wiring.consumers import STANDBY_AFTER, Placement
from services.wiring.eventlog import LEASE_TTL, LEASES_BUCKET, EventLog, leases_config

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a new replica retries its first look at the bucket: on a fresh
# cluster the bucket provision just created may not answer at once.
_FIRST_TRY_SECONDS = 15.0


class Leases:
    """This replica's leases on the partitions of one piece of work (`name`)."""

    def __init__(
        self,
        event_log: EventLog,
        name: str,
        placement: Placement,
        *,
        holder: str,
        on_acquired: Callable[[int], None] | None = None,
    ) -> None:
        self._log = event_log
        self._name = name
        self._placement = placement
        self._holder = holder.encode()
        self._on_acquired = on_acquired
        self._held: dict[int, int] = {}  # partition -> revision of our entry
        self._kv = None

    def holds(self, partition: int) -> bool:
        return partition in self._held

    async def start(self) -> None:
        """The bucket, and a first try at this replica's preferred partitions."""
        self._kv = await _first_try(lambda: _bucket(self._log))
        await _first_try(lambda: self._round(preferred_only=True, announce=False))

    async def run(self, stop: asyncio.Event) -> None:
        """Renew and take leases until `stop`; then give them up for others to take at once."""
        started = asyncio.get_running_loop().time()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), LEASE_TTL / 3)
                if stop.is_set():
                    break
                standby = asyncio.get_running_loop().time() - started >= STANDBY_AFTER
                with contextlib.suppress(nats.errors.Error, js_errors.Error):
                    await self._round(preferred_only=not standby)
        finally:
            for partition in list(self._held):
                with contextlib.suppress(Exception):
                    await self._kv.delete(self._key(partition), last=self._held[partition])
            self._held.clear()

    def _key(self, partition: int) -> str:
        return f"{self._name}.p{partition}-of-{self._placement.partitions}"

    async def _round(self, *, preferred_only: bool, announce: bool = True) -> None:
        for partition in range(self._placement.partitions):
            key = self._key(partition)
            if partition in self._held:
                try:
                    self._held[partition] = await self._kv.update(
                        key, self._holder, last=self._held[partition]
                    )
                except js_errors.KeyWrongLastSequenceError:
                    log.warning("lease %s lost to another replica", key)
                    del self._held[partition]
                continue
            if preferred_only and not self._placement.preferred(partition):
                continue
            try:
                self._held[partition] = await self._kv.create(key, self._holder)
            except js_errors.KeyWrongLastSequenceError:
                continue  # another replica holds it
            log.info("lease %s taken", key)
            if announce and self._on_acquired is not None:
                self._on_acquired(partition)


async def _bucket(event_log: EventLog):
    # `provision` makes it (replicated as the stream); this is for a log
    # provisioned before leases existed.
    js = event_log.js
    try:
        return await js.key_value(LEASES_BUCKET)
    except js_errors.BucketNotFoundError:
        return await js.create_key_value(leases_config())


async def _first_try(attempt: Callable[[], Awaitable[T]]) -> T:
    deadline = asyncio.get_running_loop().time() + _FIRST_TRY_SECONDS
    while True:
        try:
            return await attempt()
        except (nats.errors.Error, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


class SlotLease:
    """A replica's slot (which partitions it prefers) when nothing gave it one.

    Replicas started alike (a Deployment scaled to N with `WAKE_REPLICAS=N`)
    each claim the lowest free slot of their service, held as a lease: a
    replacement pod gets the slot of the one it replaces once that lease has
    aged out. The slot only decides which partitions a replica pulls first, so
    losing it is never unsafe, only less even.
    """

    def __init__(self, event_log: EventLog, service: str, replicas: int, *, holder: str) -> None:
        self._log = event_log
        self._service = service
        self._replicas = replicas
        self._holder = holder.encode()
        self._kv = None
        self.slot: int | None = None
        self._revision = 0

    def _key(self, slot: int) -> str:
        return f"slot.{self._service}.{slot}-of-{self._replicas}"

    async def claim(self) -> int | None:
        """The lowest free slot, now held; None if every slot is held by a live replica."""
        self._kv = await _first_try(lambda: _bucket(self._log))
        return await _first_try(self._claim)

    async def _claim(self) -> int | None:
        for slot in range(self._replicas):
            try:
                self._revision = await self._kv.create(self._key(slot), self._holder)
            except js_errors.KeyWrongLastSequenceError:
                continue
            self.slot = slot
            return slot
        return None

    async def keep(self, stop: asyncio.Event) -> None:
        """Renew the slot until `stop`, then free it for a replacement at once."""
        if self.slot is None:
            return
        key = self._key(self.slot)
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), LEASE_TTL / 3)
                if stop.is_set():
                    break
                try:
                    self._revision = await self._kv.update(key, self._holder, last=self._revision)
                except js_errors.KeyWrongLastSequenceError:
                    log.warning("slot %s taken by another replica; keeping its preferences", key)
                    return
                except (nats.errors.Error, js_errors.Error):
                    continue  # NATS away: renew on the next round
        finally:
            with contextlib.suppress(Exception):
                await self._kv.delete(key, last=self._revision)


@contextlib.asynccontextmanager
async def leading(
    event_log: EventLog,
    name: str,
    *,
    holder: str,
    stop: asyncio.Event,
    standing_by: Callable[[], None] | None = None,
) -> AsyncIterator[bool]:
    """Hold the one lease of a whole job (`name`) while inside; wait for it first.

    Yields True once this replica leads, False if `stop` came first. A replica
    that has to wait calls `standing_by` once (it is up, as a standby). The
    lease is renewed meanwhile and freed on the way out, so a standby takes
    over within a renewal round (or `LEASE_TTL` if this process dies).
    """
    leases = Leases(event_log, name, Placement(), holder=holder)
    await leases.start()
    renewing = asyncio.create_task(leases.run(stop))
    try:
        if not leases.holds(0):
            log.info("%s: standing by while another replica leads", name)
            if standing_by is not None:
                standing_by()
        while not leases.holds(0) and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        yield leases.holds(0) and not stop.is_set()
    finally:
        stop.set()
        await asyncio.gather(renewing, return_exceptions=True)
