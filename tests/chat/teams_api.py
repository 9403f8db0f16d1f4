"""A local HTTP server playing a Teams Workflows webhook ("Post to a channel when a webhook
request is received"): it records each message and checks it is one the flow can post, a
`message` with an Adaptive Card attachment (learn.microsoft.com, "Create incoming webhooks
with Workflows for Microsoft Teams"; adaptivecards.io schema 1.4), and answers 202."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.wiring.ports import free_port

ELEMENTS = {"TextBlock", "FactSet", "ColumnSet", "Container", "Image", "ActionSet", "RichTextBlock"}


@dataclass
class TeamsWorkflow:
    signature: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    messages: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/workflows/wake/triggers/manual/paths/invoke", self._on_post)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = (
            f"http://127.0.0.1:{port}/workflows/wake/triggers/manual/paths/invoke"
            f"?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={self.signature}"
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def texts(self) -> list[str]:
        return [
            " ".join(e.get("text", "") for e in m["attachments"][0]["content"]["body"])
            for m in self.messages
        ]

    async def _on_post(self, request: web.Request) -> web.Response:
        if request.query.get("sig") != self.signature:
            return web.Response(status=401)
        body = await request.json()
        self.violations.extend(self._check(body))
        self.messages.append(body)
        return web.Response(status=202)

    def _check(self, body: dict[str, Any]) -> list[str]:
        if body.get("type") != "message" or not body.get("attachments"):
            return [f"not a message with attachments: {body}"]
        problems = []
        for attachment in body["attachments"]:
            if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
                problems.append(f"attachment is not an Adaptive Card: {attachment}")
                continue
            content = attachment.get("content") or {}
            if content.get("type") != "AdaptiveCard" or content.get("version") not in (
                "1.0", "1.2", "1.3", "1.4", "1.5",
            ):  # fmt: skip
                problems.append(f"card type/version: {content}")
            for element in content.get("body", []):
                if element.get("type") not in ELEMENTS:
                    problems.append(f"card element {element.get('type')!r}")
        return problems
