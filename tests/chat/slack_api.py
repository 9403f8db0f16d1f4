"""A local HTTP server playing Slack's Web API: it records every call and checks it against
the documented shapes of `chat.postMessage` and `chat.update`
(https://docs.slack.dev/reference/methods/chat.postMessage, .../chat.update)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.wiring.ports import free_port

# Block Kit: the layout blocks a message may hold, and the elements of an actions block.
BLOCK_TYPES = {"section", "actions", "context", "divider", "header", "image", "rich_text"}
TEXT_TYPES = {"mrkdwn", "plain_text"}


@dataclass
class Call:
    method: str
    body: dict[str, Any]
    at: float
    answer: int


@dataclass
class SlackApi:
    token: str
    channel_id: str = "C0WAKE"
    calls: list[Call] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    # Calls of chat.postMessage still to answer 429 (Retry-After: 1), to show it is honoured.
    throttle: int = 0
    _runner: web.AppRunner | None = None
    _ts: itertools.count = field(default_factory=lambda: itertools.count(1))
    url: str = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/{method}", self._on_call)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}/api"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def posted(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        return [c.body for c in self.calls if c.method == method and c.answer == 200]

    async def _on_call(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        body = await request.json()
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._record(
                method, body, web.json_response({"ok": False, "error": "invalid_auth"})
            )
        if not request.content_type == "application/json":
            self.violations.append(f"{method}: content type {request.content_type}")
        if method == "chat.postMessage" and self.throttle > 0:
            self.throttle -= 1
            return self._record(
                method, body, web.Response(status=429, headers={"Retry-After": "1"})
            )
        problems = self._check(method, body)
        if problems:
            self.violations.extend(problems)
            return self._record(
                method, body, web.json_response({"ok": False, "error": "invalid_arguments"})
            )
        ts = body.get("ts") or f"{int(time.time())}.{next(self._ts):06d}"
        return self._record(
            method, body, web.json_response({"ok": True, "channel": self.channel_id, "ts": ts})
        )

    def _record(self, method: str, body: dict[str, Any], response: web.Response) -> web.Response:
        self.calls.append(Call(method, body, time.monotonic(), response.status))
        return response

    def _check(self, method: str, body: dict[str, Any]) -> list[str]:
        problems = []
        if method not in ("chat.postMessage", "chat.update"):
            return [f"{method}: not a method Wake should call"]
        if not isinstance(body.get("channel"), str) or not body["channel"]:
            problems.append(f"{method}: no channel")
        if not isinstance(body.get("text"), str) or not body["text"]:
            problems.append(f"{method}: no text (the notification's fallback)")
        if "thread_ts" in body and not isinstance(body["thread_ts"], str):
            problems.append(f"{method}: thread_ts is not a string")
        if method == "chat.update" and not isinstance(body.get("ts"), str):
            problems.append("chat.update: no ts of the message to update")
        blocks = body.get("blocks", [])
        if not isinstance(blocks, list) or len(blocks) > 50:
            problems.append(f"{method}: blocks must be a list of at most 50")
            return problems
        for block in blocks:
            kind = block.get("type")
            if kind not in BLOCK_TYPES:
                problems.append(f"{method}: block type {kind!r}")
            if kind == "section":
                text = block.get("text") or {}
                if text.get("type") not in TEXT_TYPES or len(text.get("text", "")) > 3000:
                    problems.append(f"{method}: section text {text!r}")
            if kind == "actions":
                for element in block.get("elements", []):
                    if element.get("type") != "button" or not element.get("action_id"):
                        problems.append(f"{method}: action element {element!r}")
                    if (element.get("text") or {}).get("type") != "plain_text":
                        problems.append(f"{method}: a button's text must be plain_text")
                    if element.get("style") not in (None, "primary", "danger"):
                        problems.append(f"{method}: button style {element.get('style')!r}")
        return problems
