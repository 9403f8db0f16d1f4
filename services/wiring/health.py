"""`/metrics`, `/healthz` and `/readyz` of a Wake process, on one port (aiohttp).

- `/healthz`: the process is alive (its event loop answers): 200 "ok".
- `/readyz`: it can do its job: every readiness check passes (connected to
  NATS, its consumers bound, PostgreSQL reachable where used). 200 with one
  line per check, or 503 naming the checks that fail.
- `/metrics`: Prometheus text format (prometheus-client's registry).

Used by the compose file's healthchecks and as Kubernetes probes; `wake up`
gives every service a port and writes `http://HOST:PORT/metrics` to
endpoints.json's `metrics`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)

# A check answers (ok, detail); it may be a coroutine function.
Check = Callable[[], tuple[bool, str] | Awaitable[tuple[bool, str]]]

_CHECK_TIMEOUT = 2.0


@dataclass
class HealthServer:
    """The endpoints of one process; add checks before or after `start`."""

    host: str = "127.0.0.1"
    port: int = 0
    checks: dict[str, Check] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    bound_port: int = 0

    def add_check(self, name: str, check: Check) -> None:
        self.checks[name] = check

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.bound_port}"

    async def readiness(self) -> tuple[bool, list[str]]:
        lines = []
        ready = True
        for name, check in list(self.checks.items()):
            try:
                result = check()
                if inspect.isawaitable(result):
                    result = await asyncio.wait_for(result, _CHECK_TIMEOUT)
                ok, detail = result
            except Exception as exc:
                ok, detail = False, repr(exc)
            ready = ready and ok
            lines.append(f"{name}: {'ok' if ok else 'FAIL'} ({detail})")
        return ready, lines

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, lines = await self.readiness()
        return web.Response(
            status=200 if ready else 503,
            text=("ready\n" if ready else "not ready\n") + "\n".join(lines) + "\n",
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(REGISTRY)
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []
        self.bound_port = sockets[0].getsockname()[1] if sockets else self.port
        log.info("metrics and health on %s (/metrics, /healthz, /readyz)", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
