"""What an answer means, how long to wait, what is recorded (pure)."""

from __future__ import annotations

import pytest

from events.payloads import NotificationFailed, NotificationSent
from services.notifier.attempts import (
    MAX_DELAY,
    Answer,
    Outcome,
    Verdict,
    delay_before,
    describe_status,
    parse_retry_after,
    record_of,
    verdict,
)
from services.notifier.routing import Message


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Verdict.SENT),
        (202, Verdict.SENT),
        (204, Verdict.SENT),
        (301, Verdict.PERMANENT),
        (303, Verdict.PERMANENT),
        (400, Verdict.PERMANENT),
        (401, Verdict.PERMANENT),
        (404, Verdict.PERMANENT),
        (413, Verdict.PERMANENT),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (599, Verdict.RETRY),
    ],
)
def test_verdict_by_status(status, expected):
    assert verdict(Answer(status_code=status)) is expected


def test_no_answer_at_all_is_retried():
    assert verdict(Answer(error="no answer within 10s")) is Verdict.RETRY


def test_delays_double_within_their_jitter_band():
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)]:
        low = delay_before(attempt, base=1.0, jitter=0.0, retry_after=None)
        high = delay_before(attempt, base=1.0, jitter=1.0, retry_after=None)
        middle = delay_before(attempt, base=1.0, jitter=0.5, retry_after=None)
        assert (low, middle, high) == (step / 2, step * 3 / 4, step)


def test_delays_are_capped():
    assert delay_before(30, base=1.0, jitter=1.0, retry_after=None) == MAX_DELAY
    assert delay_before(1, base=1.0, jitter=0.0, retry_after=3600) == MAX_DELAY


def test_a_longer_retry_after_wins_a_shorter_one_does_not():
    assert delay_before(1, base=1.0, jitter=1.0, retry_after=7) == 7
    assert delay_before(3, base=1.0, jitter=1.0, retry_after=1) == 4.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("-1", None),
    ],
)
def test_retry_after(value, seconds):
    assert parse_retry_after(value) == seconds


def test_a_status_is_described_with_its_phrase_and_the_receivers_words():
    assert describe_status(503) == "HTTP 503 Service Unavailable"
    assert describe_status(400, "bad\n  payload") == "HTTP 400 Bad Request: bad payload"
    assert describe_status(599) == "HTTP 599"
    long = describe_status(500, "x" * 1000)
    assert len(long) < 260 and long.endswith("\u2026")


MESSAGE = Message(
    channel="webhook",
    url="https://hooks.example.com/secret-path",
    where="https://hooks.example.com",
    about_event_id="0190c0de-0000-7000-8000-000000000001",
    about_type="ApplySucceeded",
    body=b"{}",
    headers={},
)


def test_a_sent_outcome_is_recorded_as_notification_sent():
    assert record_of(MESSAGE, Outcome(sent=True, attempts=3, status_code=200)) == (
        NotificationSent(
            channel="webhook",
            about_event_id=MESSAGE.about_event_id,
            about_type="ApplySucceeded",
            attempts=3,
            status_code=200,
        )
    )


def test_a_failed_outcome_is_recorded_as_notification_failed():
    outcome = Outcome(sent=False, attempts=1, status_code=400, error="HTTP 400 Bad Request")
    assert record_of(MESSAGE, outcome) == NotificationFailed(
        channel="webhook",
        about_event_id=MESSAGE.about_event_id,
        about_type="ApplySucceeded",
        attempts=1,
        error="HTTP 400 Bad Request",
    )


def test_a_message_does_not_show_its_url():
    assert "secret-path" not in repr(MESSAGE)
