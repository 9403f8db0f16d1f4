"""NextRound: a burst of callers costs at most two runs, and nobody gets a stale answer."""

from __future__ import annotations

import asyncio

import pytest

from services.wiring.coalescing import NextRound


class Source:
    """Work whose runs are released by the test; each run returns the state it saw first."""

    def __init__(self) -> None:
        self.state = 0
        self.runs = 0
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def work(self) -> int:
        self.runs += 1
        seen = self.state
        self.started.set()
        await self.release.wait()
        self.release.clear()
        self.started.clear()
        return seen


async def test_a_burst_of_callers_shares_one_run():
    source = Source()
    shared = NextRound(source.work)
    callers = [asyncio.create_task(shared()) for _ in range(100)]
    await source.started.wait()
    source.release.set()
    assert await asyncio.gather(*callers) == [0] * 100
    assert source.runs == 1


async def test_callers_arriving_during_a_run_wait_for_the_next_one_which_sees_their_change():
    source = Source()
    shared = NextRound(source.work)
    first = asyncio.create_task(shared())
    await source.started.wait()
    # What a caller did before asking must be in its answer: the run under way
    # read the state before it, so these callers share the next run.
    source.state = 1
    later = [asyncio.create_task(shared()) for _ in range(50)]
    source.release.set()
    assert await first == 0
    await source.started.wait()
    source.release.set()
    assert await asyncio.gather(*later) == [1] * 50
    assert source.runs == 2


async def test_an_error_reaches_every_sharer_and_the_next_caller_runs_again():
    attempts = []

    async def failing() -> int:
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) == 1:
            raise OSError("fetch failed")
        return len(attempts)

    shared = NextRound(failing)
    results = await asyncio.gather(*(shared() for _ in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [OSError] * 3
    assert await shared() == 2


async def test_a_cancelled_caller_does_not_cancel_the_run_others_share():
    source = Source()
    shared = NextRound(source.work)
    leaving = asyncio.create_task(shared())
    staying = asyncio.create_task(shared())
    await source.started.wait()
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    source.release.set()
    assert await staying == 0
