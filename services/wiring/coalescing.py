"""Many callers, one run: requests that arrive while a run is under way share the next one.

A fan-out asks the same question a thousand times at once ("fetch this
repository", "where does the log end?"). Each caller needs an answer from a
run that started after it asked -- an answer read before the call could miss
what the caller just did -- but not a run of its own. So: while a run is
under way, every new caller waits for the one run queued after it, which
starts when the current one ends. A burst of any size costs at most two
runs, and no caller gets an answer older than its call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class NextRound(Generic[T]):
    """Calls `work` on behalf of everyone who asks; see the module docstring.

    A run's error goes to every caller that shared it; the next caller starts
    a new run. A caller cancelled while waiting does not cancel the run others
    share.
    """

    def __init__(self, work: Callable[[], Awaitable[T]]) -> None:
        self._work = work
        self._running: asyncio.Task[T] | None = None
        self._queued: asyncio.Task[T] | None = None

    async def __call__(self) -> T:
        if self._queued is None:
            self._queued = asyncio.create_task(self._run_after(self._running))
            # Its callers may all have been cancelled: the error is theirs, not the loop's.
            self._queued.add_done_callback(_observe)
        return await asyncio.shield(self._queued)

    async def _run_after(self, before: asyncio.Task[T] | None) -> T:
        if before is not None and not before.done():
            await asyncio.wait([before])
        # From here on the run is under way: whoever asks now queues the next one.
        self._running, self._queued = self._queued, None
        return await self._work()


def _observe(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
