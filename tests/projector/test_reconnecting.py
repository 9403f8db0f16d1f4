"""The projector reconnects, rather than exits, whatever state PostgreSQL's death leaves
its connection in."""

from __future__ import annotations

import asyncio

import asyncpg

from services.projector import service


class _Context:
    def __init__(self) -> None:
        self.stop = asyncio.Event()

    async def wait_stop(self, seconds: float) -> bool:
        return self.stop.is_set()


async def test_a_connection_left_mid_operation_is_replaced(monkeypatch, database_url: str):
    # A server SIGKILLed under a statement can leave asyncpg's connection with that
    # operation "in progress"; its next use raises InternalClientError (seen in CI).
    # The connections are real; only that error, which a kill cannot be timed to
    # produce, is raised in the projector's place.
    used: list[asyncpg.Connection] = []
    ctx = _Context()

    async def project(ctx_, conn: asyncpg.Connection, progress) -> None:
        await conn.fetchval("SELECT 1")
        used.append(conn)
        if len(used) == 1:
            raise asyncpg.exceptions.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            )
        ctx.stop.set()  # the second connection works: done

    monkeypatch.setattr(service, "_project_until_stopped", project)
    progress = service._Progress()
    await asyncio.wait_for(service._fold_until_stopped(ctx, database_url, progress), 30)
    first, second = used
    assert first.get_server_pid() != second.get_server_pid()
    assert first.is_closed()
