"""A local HTTP server playing a Discord webhook: it records every call and checks it against
the documented shapes of Execute Webhook and Edit Webhook Message
(discord.com/developers/docs/resources/webhook, .../message#embed-object, components)."""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.wiring.ports import free_port


@dataclass
class DiscordWebhook:
    webhook_id: str = "1180000000000000001"
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1190000000000000001))
    url: str = ""

    async def start(self) -> None:
        app = web.Application()
        base = f"/api/webhooks/{self.webhook_id}/{self.token}"
        app.router.add_post(base, self._on_execute)
        app.router.add_patch(base + "/messages/{message_id}", self._on_edit)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}{base}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def executed(self) -> list[dict[str, Any]]:
        return [body for method, _, body in self.calls if method == "POST"]

    def edited(self, message_id: str) -> list[dict[str, Any]]:
        return [body for method, mid, body in self.calls if method == "PATCH" and mid == message_id]

    async def _on_execute(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.query.get("wait") != "true":
            self.violations.append("execute without ?wait=true: no message id to keep")
        self.violations.extend(self._check(body))
        message_id = str(next(self._ids))
        self.calls.append(("POST", message_id, body))
        return web.json_response({"id": message_id, "channel_id": "1170000000000000001", **body})

    async def _on_edit(self, request: web.Request) -> web.Response:
        body = await request.json()
        message_id = request.match_info["message_id"]
        if message_id not in {mid for method, mid, _ in self.calls if method == "POST"}:
            self.violations.append(f"edit of message {message_id} this webhook never sent")
        self.violations.extend(self._check(body))
        self.calls.append(("PATCH", message_id, body))
        return web.json_response({"id": message_id, **body})

    def _check(self, body: dict[str, Any]) -> list[str]:
        problems = []
        embeds = body.get("embeds", [])
        if not body.get("content") and not embeds:
            problems.append("a message needs content or embeds")
        if len(embeds) > 10:
            problems.append("more than 10 embeds")
        for embed in embeds:
            if len(embed.get("title", "")) > 256 or len(embed.get("description", "")) > 4096:
                problems.append(f"embed too long: {embed}")
            if not isinstance(embed.get("color", 0), int):
                problems.append(f"embed color not an integer: {embed}")
        for row in body.get("components", []):
            if row.get("type") != 1 or len(row.get("components", [])) > 5:
                problems.append(f"not an action row of at most 5: {row}")
            for button in row.get("components", []):
                if button.get("type") != 2 or button.get("style") not in range(1, 6):
                    problems.append(f"not a button: {button}")
                if (
                    not 0 < len(button.get("custom_id", "")) <= 100
                    or len(button.get("label", "")) > 80
                ):
                    problems.append(f"button custom_id/label: {button}")
        return problems
