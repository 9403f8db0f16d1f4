"""A webhook receiver for the tests: a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers the n-th POST with `statuses[n]`, then with `default`; records every POST.

    `stall` is how many of the first POSTs get no answer for `stall_seconds`
    (to make the sender time out).
    """

    statuses: Sequence[int] = ()
    default: int = 200
    stall: int = 0
    stall_seconds: float = 5.0
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        n = len(self.received)
        self.received.append(Received(headers=dict(request.headers), body=body))
        if n < self.stall:
            await asyncio.sleep(self.stall_seconds)
        status = self.statuses[n] if n < len(self.statuses) else self.default
        return web.Response(status=status, text=f"answer {n + 1}: {status}")

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hooks/wake", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self.url = f"http://127.0.0.1:{port}/hooks/wake"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
