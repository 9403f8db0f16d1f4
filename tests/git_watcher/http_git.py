"""A private git server for tests: `git http-backend` (CGI) behind aiohttp, Basic auth required
(over HTTPS with `tls=True`).

Real smart-HTTP git over a socket, so libgit2's credential handshake is the
one a forge sees: 401 with `WWW-Authenticate`, then the retry with the token.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
from pathlib import Path

from aiohttp import web

from tests.git_watcher.repos import GIT_ENV
from tests.git_watcher.tls import local_pki


class PrivateGitServer:
    """Serves every repository under `root` at `<url>/<name>`; user:token must match."""

    def __init__(self, root: Path, *, username: str, token: str, tls: bool = False) -> None:
        self.root = root
        # HTTPS with the test authority's certificate (`tls.py`), as a forge serves.
        self.tls = tls
        self.username = username
        self.token = token
        self.requests: list[tuple[str, str, str]] = []  # (method, path, user or "")
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> PrivateGitServer:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        context = local_pki().server_context() if self.tls else None
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"{'https' if self.tls else 'http'}://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _user(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        good = hmac.compare_digest(user, self.username) and hmac.compare_digest(
            password, self.token
        )
        return user if good else None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        user = self._user(request)
        self.requests.append((request.method, request.path, user or ""))
        if user is None:
            return web.Response(
                status=401, headers={"WWW-Authenticate": 'Basic realm="private git"'}
            )
        body = await request.read()
        env = {
            **os.environ,
            **GIT_ENV,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": request.remote or "",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }
        process = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, _ = await process.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = out.partition(b"\n\n")
        status = 200
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        return web.Response(status=status, body=payload, headers=headers)
