"""Delivering one message: an HTTP POST, retried with backoff and jitter.

The decisions (what an answer means, how long to wait) are in `attempts`;
this module only talks HTTP and sleeps.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping

import aiohttp

from events import names
from services.notifier.attempts import (
    Answer,
    Outcome,
    Verdict,
    delay_before,
    describe_status,
    parse_retry_after,
    verdict,
)
from services.notifier.routing import Message
from services.wiring import telemetry

log = logging.getLogger(__name__)

# Seconds one attempt may take, connect to last byte of the answer. A
# receiver that needs longer should accept first and work afterwards.
REQUEST_TIMEOUT = 10.0

# Bytes of a receiver's answer read for the error message; the rest is dropped.
_ANSWER_READ = 512


class DeliveryInterrupted(Exception):
    """The service was told to stop between two attempts.

    Nothing is recorded: the consumer does not ack, and the event is
    delivered again, to this process after a restart or to another replica.
    """


async def deliver(
    session: aiohttp.ClientSession,
    message: Message,
    *,
    attempts: int,
    backoff: float,
    timeout: float = REQUEST_TIMEOUT,
    stop: asyncio.Event | None = None,
    jitter: Callable[[], float] = random.random,
    extra_headers: Mapping[str, str] | None = None,
) -> Outcome:
    """POST `message` up to `attempts` times (at least once) until the receiver takes it.

    Returns how it ended: sent on a 2xx; failed at once on a 4xx other than
    408/429 or on a redirect; failed after the last attempt on 5xx, 408,
    429, a timeout or a connection error. Raises DeliveryInterrupted if
    `stop` is set while waiting to retry.
    """
    attempts = max(1, attempts)
    headers = {**message.headers, **(extra_headers or {})}
    answer = Answer(error="not attempted")
    for attempt in range(1, attempts + 1):
        answer = await _attempt(session, message, headers, timeout)
        judged = verdict(answer)
        if judged is Verdict.SENT:
            return Outcome(sent=True, attempts=attempt, status_code=answer.status_code)
        if judged is Verdict.PERMANENT or attempt == attempts:
            return Outcome(
                sent=False, attempts=attempt, status_code=answer.status_code, error=answer.error
            )
        delay = delay_before(attempt, base=backoff, jitter=jitter(), retry_after=answer.retry_after)
        log.warning(
            "%s (%s): attempt %d/%d for %s %s failed (%s); retrying in %.2fs",
            message.channel,
            message.where,
            attempt,
            attempts,
            message.about_type,
            message.about_event_id,
            answer.error,
            delay,
        )
        if stop is None:
            await asyncio.sleep(delay)
        elif await _stopped_within(stop, delay):
            raise DeliveryInterrupted(
                f"stopping before attempt {attempt + 1} of {message.channel} "
                f"for {message.about_type} {message.about_event_id}"
            )
    return Outcome(sent=False, attempts=attempts, error=answer.error)


async def _attempt(
    session: aiohttp.ClientSession, message: Message, headers: dict[str, str], timeout: float
) -> Answer:
    with telemetry.http_client_span(
        "POST", message.where, {"wake.notify.channel": message.channel}
    ) as span:
        if names.TRACEPARENT_HEADER in headers:
            # The receiver's spans go under this request's span.
            headers = {**headers, names.TRACEPARENT_HEADER: telemetry.traceparent()}
        answer = await _attempt_once(session, message, headers, timeout)
        if answer.status_code:
            telemetry.record_status(span, answer.status_code)
        elif answer.error:
            telemetry.mark_failed(span, answer.error)
        return answer


async def _attempt_once(
    session: aiohttp.ClientSession, message: Message, headers: dict[str, str], timeout: float
) -> Answer:
    try:
        async with session.post(
            message.url,
            data=message.body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            excerpt = (await response.content.read(_ANSWER_READ)).decode("utf-8", "replace")
            status = response.status
            error = ""
            if not 200 <= status < 300:
                error = describe_status(status, excerpt)
                if 300 <= status < 400:
                    error += " (redirects are not followed: set the final URL)"
            return Answer(
                status_code=status,
                error=error,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
    except TimeoutError:
        return Answer(error=f"no answer within {timeout:g}s")
    except aiohttp.ClientError as exc:
        return Answer(error=_scrubbed(f"{type(exc).__name__}: {exc}", message))


def _scrubbed(text: str, message: Message) -> str:
    # Some client errors quote the URL, whose path may be a credential.
    return text.replace(message.url, message.where)


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
