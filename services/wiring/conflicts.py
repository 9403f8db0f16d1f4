"""Waiting after a lost conditional append: jittered exponential backoff.

Two writers that lost the same race and retry at once lose it again; a random
wait spreads them ("full jitter", as in AWS's architecture blog on backoff).
"""

from __future__ import annotations

import asyncio
import random

# The first wait is at most BASE seconds; each loss doubles it, up to CAP.
BASE = 0.005
CAP = 0.5


def conflict_delay(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after losing conditional append number `attempt` (0-based)."""
    ceiling = min(CAP, BASE * 2**attempt)
    return (rng or random).uniform(0, ceiling)


async def after_conflict(attempt: int) -> None:
    await asyncio.sleep(conflict_delay(attempt))
