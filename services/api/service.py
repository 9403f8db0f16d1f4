"""The api service's shell: the console's HTTP server over the read models and the log.

`wake up` starts it as its own process (`wake run api`), with its own NATS
identity (it may append only the commands of `events/ownership.py`'s `api`)
and its own signing key, which vouches for `token:<name>` actors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
import nats.errors
import nats.js.errors
from aiohttp import web

from services.api import pages, registering, rest
from services.api.openapi import document
from services.api.queries import Reads
from services.projector.service import require_database
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)


@rest.needs("viewer")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document())


# PostgreSQL or NATS away (restarted, failed over): a request gets a 503 problem and
# the log one line, as the other services wait for them.
_AWAY = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.TimeoutError,
    nats.js.errors.ServiceUnavailableError,
)


@web.middleware
async def unavailable(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except _AWAY as exc:
        log.warning("%s %s: %r", request.method, request.path, exc)
        return rest.problem(503, "Service Unavailable", "the log or the read models are away")


def build_app(console: rest.Console) -> web.Application:
    app = web.Application(middlewares=[pages.security_headers, unavailable])
    app[rest.CONSOLE] = console
    app.add_routes(rest.routes())
    app.add_routes(registering.routes())
    app.add_routes([web.get(f"{rest.PREFIX}/openapi.json", openapi_json)])
    app.add_routes(pages.routes())
    return app


def _login_marker(settings) -> Path | None:
    """DATA_DIR/run/console-login.used: the one-time link stays used across restarts."""
    run_dir = settings.data_path / "run"
    return run_dir / "console-login.used" if run_dir.is_dir() else None


async def main(ctx: ServiceContext) -> None:
    settings = ctx.settings
    reads = await Reads.connect(require_database(settings.database_url))
    console = rest.Console(
        reads=reads,
        log=ctx.log,
        settings=settings,
        login_digest=settings.api_login_digest,
        login_marker=_login_marker(settings),
    )
    runner = web.AppRunner(build_app(console), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.api_host, settings.api_port)
        await site.start()
        if ctx.health is not None:
            ctx.health.add_check("postgres", reads.ready)
        log.info("console at http://%s:%d/", settings.api_host, settings.api_port)
        ctx.ready()
        await ctx.stop.wait()
    finally:
        await runner.cleanup()
        await reads.close()
