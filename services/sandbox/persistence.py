"""Keeping the sandbox's objects in a file, so `wake up --sandbox` restarted finds them again.

A real cluster outlives Wake; a sandbox that forgot its objects on every
restart would leave apps saying `synced` over an empty cluster. The whole
store is written as one JSON document, atomically (write, fsync, rename),
shortly after a change: changes arriving together are written once. Killed
with SIGKILL, the sandbox loses at most the changes of that last moment,
as a real API server loses what etcd had not committed.

Writing the whole store costs time in proportion to its size, on the loop
that answers requests: a write waits at least `COST_RATIO` times as long as
the last one took, so writing never takes more than a small share of the
emulator's time (10,000 apps' 40,000 objects rewritten every 0.1 s had it
serializing JSON most of the time, and every request waiting behind it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path

import msgspec

from services.sandbox.store import ObjectStore

log = logging.getLogger(__name__)

# How long after a change the file is written: changes within it are written once.
WRITE_DELAY = 0.1
# ... and at least this many times the last write's duration: at most ~1/20 of
# the emulator's time goes to writing its state, however large the store.
COST_RATIO = 20.0


class StateFile:
    """The file one store is loaded from at start and written to after changes."""

    def __init__(self, path: Path, store: ObjectStore, *, delay: float = WRITE_DELAY) -> None:
        self.path = Path(path)
        self.store = store
        self._delay = delay
        self._pending: asyncio.TimerHandle | None = None
        self._last_cost = 0.0

    def load(self) -> bool:
        """Restore the store from the file if there is one; True if there was.

        Raises ValueError naming the file if it is not a sandbox state.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return False
        try:
            self.store.restore(json.loads(raw))
        except ValueError as exc:
            raise ValueError(f"{self.path}: {exc}") from None
        return True

    def attach(self) -> None:
        """Write the file after every change of the store from now on (call on the loop)."""
        loop = asyncio.get_running_loop()

        def changed() -> None:
            if self._pending is None:
                delay = max(self._delay, self._last_cost * COST_RATIO)
                self._pending = loop.call_later(delay, self.flush)

        self.store.on_change = changed

    def flush(self) -> None:
        """Write the store now (a change pending or not)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        started = time.monotonic()
        data = msgspec.json.encode(self.store.dump())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        try:
            with temporary.open("wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            # The emulator keeps serving from memory; the next change tries again.
            log.error("cannot write the sandbox state to %s: %s", self.path, exc)
        finally:
            self._last_cost = time.monotonic() - started
