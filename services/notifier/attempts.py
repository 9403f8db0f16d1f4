"""What one delivery attempt's answer means, how long to wait before the next,
and what the log records in the end. Pure.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from http import HTTPStatus

from events.payloads import NotificationFailed, NotificationSent
from services.notifier.routing import Message

# No wait between attempts grows past this: a receiver down for longer is
# better served by the next notification than by a retry an hour late.
MAX_DELAY = 60.0

# A receiver's error page is quoted in NotificationFailed this far, no further.
EXCERPT_LIMIT = 200

# 408 Request Timeout and 429 Too Many Requests are the receiver asking us to
# come back later; every other 4xx says the request itself is wrong, and the
# same bytes sent again would be refused again.
_RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})


class Verdict(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one attempt got: a status code, or an error before any status."""

    status_code: int | None = None
    error: str = ""
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a message's delivery ended, after `attempts` attempts."""

    sent: bool
    attempts: int
    status_code: int | None = None
    error: str = ""


def verdict(answer: Answer) -> Verdict:
    """2xx: sent. 408, 429, 5xx and no answer at all: try again. Anything else: give up.

    Redirects are not followed (a POST turned into a GET by a 303 would lose
    its body) and count as a setting to fix, not as a passing fault.
    """
    code = answer.status_code
    if code is None:
        return Verdict.RETRY
    if 200 <= code < 300:
        return Verdict.SENT
    if code >= 500 or code in _RETRYABLE_CLIENT_ERRORS:
        return Verdict.RETRY
    return Verdict.PERMANENT


def delay_before(attempt: int, *, base: float, jitter: float, retry_after: float | None) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    Exponential (`base`, 2*base, 4*base, ...) with "equal jitter": the wait
    is drawn from the upper half of that step by `jitter` in [0, 1], so
    notifiers that failed together do not retry together. A receiver's
    Retry-After is honoured if longer. Never more than MAX_DELAY.
    """
    step = min(MAX_DELAY, base * 2 ** (attempt - 1))
    delay = step / 2 + step / 2 * min(max(jitter, 0.0), 1.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(MAX_DELAY, max(delay, 0.0))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; None if absent or an HTTP date (not worth a clock skew)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def describe_status(status_code: int, excerpt: str = "") -> str:
    """'HTTP 503 Service Unavailable: <the start of what the receiver said>'."""
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = ""
    text = f"HTTP {status_code} {phrase}".rstrip()
    excerpt = " ".join(excerpt.split())
    if excerpt:
        if len(excerpt) > EXCERPT_LIMIT:
            excerpt = excerpt[: EXCERPT_LIMIT - 1] + "\u2026"
        text += f": {excerpt}"
    return text


def record_of(message: Message, outcome: Outcome) -> NotificationSent | NotificationFailed:
    """The event that records how the notification of `message` ended."""
    if outcome.sent:
        return NotificationSent(
            channel=message.channel,
            about_event_id=message.about_event_id,
            about_type=message.about_type,
            attempts=outcome.attempts,
            status_code=outcome.status_code,
        )
    return NotificationFailed(
        channel=message.channel,
        about_event_id=message.about_event_id,
        about_type=message.about_type,
        attempts=outcome.attempts,
        error=outcome.error or "failed",
    )


RECORD_TYPES = (NotificationSent.event_type, NotificationFailed.event_type)
"""The types a record of one notification can have; its id is derived with the channel as key."""
