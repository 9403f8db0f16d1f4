"""A local HTTP server playing Mattermost's REST API v4 for a bot account: it records posts
and patches and checks them against the documented shapes (api.mattermost.com: Create a
post, Patch a post; developers.mattermost.com: message attachments, interactive messages)."""

from __future__ import annotations

import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.wiring.ports import free_port


@dataclass
class MattermostApi:
    token: str = field(default_factory=lambda: secrets.token_hex(13))
    channel_id: str = "mmchannel0000000000000000a"
    users: dict[str, str] = field(default_factory=lambda: {"uana0000000000000000000001": "ana"})
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    url: str = ""
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v4/posts", self._on_create)
        app.router.add_put("/api/v4/posts/{post_id}/patch", self._on_patch)
        app.router.add_get("/api/v4/users/{user_id}", self._on_user)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def texts(self) -> list[tuple[str, str]]:
        """(root_id, text) of every post, in order."""
        return [
            (p.get("root_id", ""), " ".join(a.get("text", "") for a in p["props"]["attachments"]))
            for p in self.posts.values()
        ]

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def _on_create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"id": "api.context.session_expired.app_error"}, status=401)
        body = await request.json()
        if body.get("channel_id") != self.channel_id:
            self.violations.append(f"post to channel {body.get('channel_id')!r}")
        if "root_id" in body and body["root_id"] not in self.posts:
            self.violations.append(f"root_id {body['root_id']!r} is no post")
        self.violations.extend(self._check_props(body.get("props") or {}))
        post_id = f"mmpost{next(self._ids):020d}"
        post = {**body, "id": post_id, "create_at": int(time.time() * 1000)}
        self.posts[post_id] = post
        return web.json_response(post, status=201)

    async def _on_patch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        post_id = request.match_info["post_id"]
        body = await request.json()
        if post_id not in self.posts:
            return web.json_response({"id": "app.post.get.app_error"}, status=404)
        self.violations.extend(self._check_props(body.get("props") or {}))
        self.patches.append((post_id, body))
        return web.json_response({**self.posts[post_id], **body})

    async def _on_user(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        user_id = request.match_info["user_id"]
        if user_id not in self.users:
            return web.Response(status=404)
        return web.json_response({"id": user_id, "username": self.users[user_id]})

    def _check_props(self, props: dict[str, Any]) -> list[str]:
        problems = []
        for attachment in props.get("attachments", []):
            if not attachment.get("fallback") or not isinstance(attachment.get("text"), str):
                problems.append(f"attachment without fallback/text: {attachment}")
            for action in attachment.get("actions", []):
                integration = action.get("integration") or {}
                if not action.get("id", "").isalnum() or not action.get("name"):
                    problems.append(f"action id must be alphanumeric, with a name: {action}")
                if not str(integration.get("url", "")).startswith("http"):
                    problems.append(f"action without an integration url: {action}")
                if action.get("style") not in (
                    None,
                    "default",
                    "primary",
                    "success",
                    "good",
                    "warning",
                    "danger",
                ):
                    problems.append(f"action style: {action}")
        return problems
