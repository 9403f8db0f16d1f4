"""Waiting on state, never sleeping and hoping: poll a predicate until a deadline."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import psutil


async def eventually(
    predicate: Callable[[], Awaitable[bool] | bool], *, timeout: float = 15.0, what: str = ""
) -> None:
    """Return once `predicate()` is true; fail the test after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not true within {timeout}s: {what or predicate}") from None


def process_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie nobody reaped counts as exited)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
