"""The console while PostgreSQL or NATS is away: a 503 problem, not a crash or a 500."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.api.service import unavailable


async def test_a_store_away_is_a_503_problem_over_a_real_socket():
    async def refused(request: web.Request) -> web.Response:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    app = web.Application(middlewares=[unavailable])
    app.router.add_get("/api/v1/apps", refused)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/api/v1/apps") as response:
                body = await response.json(content_type=None)
                assert response.status == 503
                assert response.content_type == "application/problem+json"
                assert body["status"] == 503 and "5432" not in body["detail"]
    finally:
        await server.close()
