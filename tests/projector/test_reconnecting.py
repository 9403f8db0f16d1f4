"""The projector reconnects, rather than exits, whatever state PostgreSQL's death leaves
its connection in."""

from __future__ import annotations

import asyncio

import asyncpg

from services.projector import service


class _Connection:
    closed = False

    async def close(self) -> None:
        self.closed = True

    def terminate(self) -> None:
        self.closed = True


class _Context:
    def __init__(self) -> None:
        self.stop = asyncio.Event()

    async def wait_stop(self, seconds: float) -> bool:
        return self.stop.is_set()


async def test_a_connection_left_mid_operation_is_replaced(monkeypatch):
    # A server SIGKILLed under a statement can leave asyncpg's connection with that
    # operation "in progress"; its next use raises InternalClientError (seen in CI).
    connections: list[_Connection] = []
    ctx = _Context()

    async def connect(*args, **kwargs) -> _Connection:
        connections.append(_Connection())
        return connections[-1]

    async def project(ctx_, conn, progress) -> None:
        if len(connections) == 1:
            raise asyncpg.exceptions.InternalClientError(
                "cannot switch to state 12; another operation (2) is in progress"
            )
        ctx.stop.set()  # the second connection works: done

    monkeypatch.setattr(service.asyncpg, "connect", connect)
    monkeypatch.setattr(service, "_project_until_stopped", project)
    progress = service._Progress()
    await asyncio.wait_for(service._fold_until_stopped(ctx, "postgresql://x", progress), 10)
    assert len(connections) == 2 and connections[0].closed
