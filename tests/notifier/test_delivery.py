"""POSTs and retries against a real HTTP receiver on 127.0.0.1 (no NATS here)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from events import new_event
from events.samples import sample_payloads
from services.notifier.delivery import DeliveryInterrupted, deliver
from services.notifier.routing import Message, route, routes_from_settings
from services.notifier.signing import SIGNATURE_HEADER, verify
from services.wiring.ports import free_port
from services.wiring.settings import Settings
from tests.notifier.receiver import Receiver
from tests.waiting import eventually

SECRET = "delivery-secret"
APPLIED = next(p for p in sample_payloads() if type(p).__name__ == "ApplySucceeded")


def message_to(url: str) -> Message:
    routes = routes_from_settings(
        Settings(notify_url=url, notify_secret=SECRET, notify_events="ApplySucceeded")
    )
    [message] = route(new_event(APPLIED, app="shop", actor="t"), seq=1, routes=routes)
    return message


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_the_first_2xx_ends_delivery(session):
    async with Receiver(statuses=[204]) as receiver:
        message = message_to(receiver.url)
        outcome = await deliver(session, message, attempts=3, backoff=0.01)
    assert (outcome.sent, outcome.attempts, outcome.status_code) == (True, 1, 204)
    [received] = receiver.received
    assert received.body == message.body
    assert verify(received.body, received.headers[SIGNATURE_HEADER], SECRET)


async def test_a_timeout_is_retried(session):
    async with Receiver(stall=1, stall_seconds=2.0) as receiver:
        outcome = await deliver(
            session, message_to(receiver.url), attempts=3, backoff=0.01, timeout=0.3
        )
    assert (outcome.sent, outcome.attempts, outcome.status_code) == (True, 2, 200)


async def test_a_receiver_that_is_not_there_fails_after_every_attempt(session):
    url = f"http://127.0.0.1:{free_port()}/hooks/wake"
    outcome = await deliver(session, message_to(url), attempts=3, backoff=0.01)
    assert (outcome.sent, outcome.attempts, outcome.status_code) == (False, 3, None)
    assert "ClientConnectorError" in outcome.error
    assert "/hooks/wake" not in outcome.error


async def test_a_redirect_is_not_followed_and_not_retried(session):
    async with Receiver(default=308) as receiver:
        outcome = await deliver(session, message_to(receiver.url), attempts=3, backoff=0.01)
    assert (outcome.sent, outcome.attempts, outcome.status_code) == (False, 1, 308)
    assert "redirects are not followed" in outcome.error
    assert len(receiver.received) == 1


async def test_waits_grow_between_attempts(session):
    async with Receiver(statuses=[503, 503]) as receiver:
        started = time.monotonic()
        outcome = await deliver(
            session, message_to(receiver.url), attempts=3, backoff=0.1, jitter=lambda: 1.0
        )
        elapsed = time.monotonic() - started
    assert (outcome.sent, outcome.attempts) == (True, 3)
    # 0.1 s after the first failure, 0.2 s after the second
    assert elapsed >= 0.3


async def test_stop_between_attempts_interrupts_without_an_outcome(session):
    stop = asyncio.Event()
    async with Receiver(default=503) as receiver:
        delivering = asyncio.create_task(
            deliver(session, message_to(receiver.url), attempts=5, backoff=30.0, stop=stop)
        )
        await eventually(lambda: bool(receiver.received), what="the first POST")
        stop.set()
        with pytest.raises(DeliveryInterrupted):
            await asyncio.wait_for(delivering, timeout=5)
    assert len(receiver.received) == 1
