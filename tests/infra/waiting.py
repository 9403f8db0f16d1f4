"""Waiting on other processes: conditions with deadlines, never sleep-and-hope."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psutil


async def wait_until(condition: Callable[[], bool], *, within: float, what: str) -> None:
    """Return as soon as `condition()` holds; fail the test naming `what` after `within` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.02)


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie nobody reaped counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
