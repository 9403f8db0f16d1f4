"""Per-app state folded once from the log, then kept current by following it.

A service names the event types its decisions need and a pure fold; the
`Follower` reads those types from sequence 1 once (one ordered push consumer,
`EventLog.read(follow=True)`), then keeps reading as events are appended. So
handling an event costs the same with ten events of history as with a
million: nothing is re-read per handled event (DESIGN §2).

The race this closes: a handler that just received event N must not decide on
state that has not yet seen everything before N (its own cause, or a plan a
replica appended a moment ago). `at_least(N, app)` waits until the follower
has folded past N. That needs N's type among the followed ones -- a service
follows the types it handles, too (`passing`: not decoded, they only move
the position) -- or N to be a position read from the log
(`EventLog.position`) on followed subjects, as after a lost conditional append.

A message that is not a valid event is skipped, and recorded once as an
EventRejected naming its sequence (`EventLog.skip`): every reader skips it
(DESIGN §2).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from events import names
from events.envelope import Envelope, InvalidEvent
from services.wiring.eventlog import EventLog

log = logging.getLogger(__name__)

S = TypeVar("S")

Fold = Callable[[S, int, Envelope], None]

# How long a handler waits for the follower to reach its event before giving up
# (the handler fails and its message is redelivered): the follower is behind by
# far more than one event's worth, or its reading broke.
CATCH_UP_SECONDS = 15.0


# The event loop keeps only weak references to tasks: a follower whose owner
# was dropped without `close` (a handler made for one call) would be collected
# mid-read. Held here until its reading ends.
_RUNNING: set[asyncio.Task[None]] = set()


class FollowerBehind(Exception):
    """The follower did not reach a sequence in time: the caller's message is retried."""


class Follower(Generic[S]):
    """Per-app states of type S, folded from the events of `types` in log order."""

    def __init__(
        self,
        log: EventLog,
        types: Iterable[str],
        *,
        new_state: Callable[[], S],
        fold: Fold[S],
        name: str = "follower",
        passing: Iterable[str] = (),
        wanted: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        self._log = log
        # Says from an event's type and raw bytes whether its fold could change
        # anything; one that could not is not even decoded (decoding is most of
        # what a fold costs).
        self._wanted = wanted
        folded = dict.fromkeys(types)
        # Types followed only so that `at_least` can wait for them (a service's
        # inputs): they move `reached` and are not decoded nor folded.
        self._passing = {t for t in passing if t not in folded}
        self._subjects = [names.type_subjects(t) for t in [*folded, *self._passing]]
        self._new_state = new_state
        self._fold = fold
        self._name = name
        self._states: dict[str, S] = {}
        self._reached = 0
        self._advanced = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def reached(self) -> int:
        """The stream sequence folded up to (every followed event at or before it is in)."""
        return self._reached

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name=self._name)
            _RUNNING.add(self._task)
            self._task.add_done_callback(_RUNNING.discard)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> Follower[S]:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def state(self, app: str) -> S:
        """The app's state as folded so far (a fresh one for an app never seen)."""
        state = self._states.get(app)
        if state is None:
            state = self._states[app] = self._new_state()
        return state

    def apps(self) -> list[str]:
        return list(self._states)

    async def at_least(self, seq: int, app: str, *, timeout: float = CATCH_UP_SECONDS) -> S:
        """The app's state once every followed event up to `seq` is folded into it."""
        self.start()
        if self._reached < seq:
            try:
                async with asyncio.timeout(timeout):
                    async with self._advanced:
                        await self._advanced.wait_for(
                            lambda: self._reached >= seq or self._failure is not None
                        )
            except TimeoutError:
                # Its push consumer may be gone (a NATS server restarted and lost
                # it): read again from where the fold stopped, then let the
                # caller's message be redelivered.
                await self._restart()
                raise FollowerBehind(
                    f"{self._name}: still at sequence {self._reached}, not {seq}, "
                    f"after {timeout:.0f}s"
                ) from None
            if self._reached < seq:
                raise FollowerBehind(f"{self._name} stopped: {self._failure!r}")
        return self.state(app)

    async def until(
        self, app: str, ready: Callable[[S], bool], *, timeout: float = CATCH_UP_SECONDS
    ) -> S | None:
        """The app's state once `ready` holds of it; None if it did not within `timeout`."""
        self.start()
        try:
            async with asyncio.timeout(timeout):
                async with self._advanced:
                    await self._advanced.wait_for(
                        lambda: ready(self.state(app)) or self._failure is not None
                    )
        except TimeoutError:
            return None
        state = self.state(app)
        return state if ready(state) else None

    async def _fold_one(self, seq: int, subject: str, data: bytes) -> None:
        try:
            event = await self._log.open(data, seq=seq, subject=subject)
        except InvalidEvent as exc:
            await self._log.skip(seq, subject, data, exc)
            return
        self._fold(self.state(event.app), seq, event)

    async def _restart(self) -> None:
        await self.close()
        self._failure = None
        self.start()

    async def _follow(self) -> None:
        backoff = 0.1
        while True:
            try:
                async for seq, subject, data in self._log.read_raw(
                    from_seq=self._reached + 1, subjects=self._subjects, follow=True
                ):
                    parsed = names.parse_subject(subject)
                    if parsed is None or (
                        parsed[1] not in self._passing
                        and (self._wanted is None or self._wanted(parsed[1], data))
                    ):
                        await self._fold_one(seq, subject, data)
                    async with self._advanced:
                        self._reached = seq
                        self._advanced.notify_all()
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._log.nc.is_closed:
                    # The service is shutting down: nothing more will be folded.
                    async with self._advanced:
                        self._failure = exc
                        self._advanced.notify_all()
                    return
                # The connection dropped, or the server restarted: read on from
                # where the fold stopped, so nothing is folded twice.
                log.warning(
                    "%s: reading the log failed (%s); again in %.1fs", self._name, exc, backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
