"""One call to a chat platform's HTTP API, tried again while the platform asks for it.

Every platform (Slack, Mattermost, Discord, Teams, Matrix) makes its request and
reads its answer its own way; what happens between attempts is the same for all:
a network error or a request the platform asks to repeat (429 after its
Retry-After, a 5xx) waits and tries again, up to ATTEMPTS times, unless the
notifier is stopping; anything else is refused at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp

from services.notifier.attempts import MAX_DELAY, parse_retry_after
from services.notifier.channel import ChannelError

log = logging.getLogger(__name__)

ATTEMPTS = 5
REQUEST_TIMEOUT = 10.0
NETWORK_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)

T = TypeVar("T")


class Again(Exception):
    """Raised by one attempt the platform asked to repeat: why, and after how long."""

    def __init__(self, error: str, wait: float) -> None:
        super().__init__(error)
        self.error = error
        self.wait = wait


def backoff(attempt: int) -> float:
    """The wait after failed attempt `attempt` (1-based) when the platform named none."""
    return min(MAX_DELAY, 0.5 * 2 ** (attempt - 1))


def again_after(status: int, headers: Mapping[str, str], attempt: int, error: str) -> Again | None:
    """A 429 (after its Retry-After, else 1 s) or a 5xx (backoff) to repeat; None for
    any other status, which the platform will refuse again."""
    if status == 429:
        retry = parse_retry_after(headers.get("Retry-After"))
        return Again(error, min(MAX_DELAY, retry if retry is not None else 1.0))
    if status >= 500:
        return Again(error, backoff(attempt))
    return None


async def with_retries(
    attempt_once: Callable[[int], Awaitable[T]],
    *,
    label: str,
    stop: asyncio.Event,
    failure: type[ChannelError] = ChannelError,
    network: tuple[type[BaseException], ...] = NETWORK_ERRORS,
    scrub: Callable[[str], str] = lambda text: text,
) -> T:
    """`attempt_once(attempt)`'s answer, trying again after Again or a `network` error.

    `label` names the call in logs and errors (never a credential); `scrub` takes
    one out of an exception's text (some client errors quote the URL). Raises
    `failure` when stopping, or after ATTEMPTS attempts.
    """
    error = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await attempt_once(attempt)
        except Again as again:
            error, wait = again.error, again.wait
        except network as exc:
            error = scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            wait = backoff(attempt)
        if attempt == ATTEMPTS:
            break
        log.warning("%s: %s; retrying in %.2fs", label, error, wait)
        try:
            await asyncio.wait_for(stop.wait(), timeout=wait)
        except TimeoutError:
            continue
        raise failure(f"{label}: stopping ({error})")
    raise failure(f"{label}: {error} (after {ATTEMPTS} attempts)")


async def json_call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Mapping[str, Any] | None,
    *,
    label: str,
    stop: asyncio.Event,
    headers: Mapping[str, str] | None = None,
    network: tuple[type[BaseException], ...] = NETWORK_ERRORS,
    scrub: Callable[[str], str] = lambda text: text,
) -> dict[str, Any]:
    """A JSON request and its JSON answer ({} for none), through `with_retries`: a 2xx
    is the answer, a 429 or 5xx is tried again, any other status is refused."""

    async def once(attempt: int) -> dict[str, Any]:
        async with session.request(
            method,
            url,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
        ) as response:
            text = await response.text()
            if 200 <= response.status < 300:
                return json.loads(text) if text else {}
            error = f"HTTP {response.status}: {text[:200]}"
            raise again_after(response.status, response.headers, attempt, error) or (
                ChannelError(f"{label}: {error}")
            )

    return await with_retries(once, label=label, stop=stop, network=network, scrub=scrub)
