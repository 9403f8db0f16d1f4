"""Fixtures of the projector's tests: a database of each test's own, the CLI as a process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from events.envelope import Envelope
from services.projector import store
from services.wiring.embedded_nats import EmbeddedNats
from services.wiring.eventlog import EventLog
from tests.signing import cli_env
from tests.waiting import eventually

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def database_url(postgres_url: str, postgres_admin_url: str) -> AsyncIterator[str]:
    """A fresh database on the session's PostgreSQL, dropped after the test.

    Created by the superuser with what provisioning grants database `wake`, and
    used as the service role: the projector and `wake replay` run as it.
    """
    name = f"projector_{uuid.uuid4().hex[:12]}"
    await _admin(postgres_admin_url, f"CREATE DATABASE {name}")
    await _admin(postgres_admin_url, f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {name} TO wake")
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    await _admin(postgres_admin_url, f"DROP DATABASE {name} WITH (FORCE)")


async def _admin(postgres_url: str, sql: str) -> None:
    # A connection per statement: the test in between may take a while, and
    # one idle connection held across it is one more thing that can break.
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


@dataclass
class Cli:
    """`wake` commands and services as processes, pointed at this test's NATS and PostgreSQL."""

    nats_url: str
    database_url: str
    data_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "WAKE_NATS_URL": self.nats_url,
            "WAKE_DATABASE_URL": self.database_url,
            "WAKE_DATA_DIR": str(self.data_dir),
            **cli_env(self.data_dir / "keys"),
        }

    async def command(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """Run `wake NAME ARGS...` as a user would."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            name,
            *args,
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await process.communicate()
        return subprocess.CompletedProcess(
            [name, *args], process.returncode or 0, out.decode(), err.decode()
        )

    async def start_projector(self, log_path: Path) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "run",
            "projector",
            cwd=REPO,
            env=self.env,
            stdout=log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def cli(nats_server: EmbeddedNats, database_url: str, tmp_path: Path) -> Cli:
    return Cli(nats_server.url, database_url, tmp_path / "wake")


async def append_all(event_log: EventLog, events: Sequence[Envelope]) -> int:
    """Append `events` in batches; return the last sequence."""
    last = 0
    for start in range(0, len(events), 500):
        appended = await event_log.append_many(events[start : start + 500])
        last = appended[-1].seq
    return last


async def live_position(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        schema = store.schema_name(store.LIVE_SCHEMA)
        if not await store.is_read_model_schema(conn, schema):
            return 0
        return await store.position(conn, schema)
    finally:
        await conn.close()


async def caught_up(database_url: str, seq: int, timeout: float = 30.0) -> None:
    async def reached() -> bool:
        return await live_position(database_url) >= seq

    await eventually(reached, timeout=timeout, what=f"the projector reached seq {seq}")
