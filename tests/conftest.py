"""Shared fixtures: real servers, started from the same code `wake` uses (DESIGN §6)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.wiring.embedded_nats import EmbeddedNats, start_nats
from services.wiring.eventlog import EventLog, provision

pytest_plugins = ["tests.fixtures_postgres"]


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A NATS server of this test's own: each test sees an empty log.

    Without `security`, the one explicit way to a server that accepts anyone:
    `wake up` and `wake infra up` always start theirs with authentication
    (tests/security/ covers that server).
    """
    server = await start_nats(tmp_path / "data")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def event_log(nats_server: EmbeddedNats) -> AsyncIterator[EventLog]:
    log = await EventLog.connect(nats_server.url, name="tests")
    await provision(log.nc)
    try:
        yield log
    finally:
        await log.close()
