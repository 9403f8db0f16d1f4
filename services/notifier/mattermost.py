"""A Mattermost channel: a bot account's posts (threads by `root_id`), message attachments
with Approve / Reject buttons (interactive message actions), and the `/wake` slash command.

Mattermost signs neither requests, so each carries a token: a button's request
the token Wake put in the button's context -- HMAC-SHA256 of its action and plan
under the channel's `action_token`, so the secret itself is in no message and a
token opens only its own button -- and the slash command's request the token
Mattermost gave the command. Both are compared in constant time; a request with a trigger id seen
before (a replay) is refused. A refused request gets a bare 401.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
from aiohttp import web

from events.envelope import Envelope
from events.payloads import ApprovalRequested
from services.notifier.calling import (
    NETWORK_ERRORS,
    json_call,
)
from services.notifier.channel import ChannelError, Posted
from services.notifier.chatops import ChatOps, Reply, Request
from services.notifier.journeys import ChatText, Threads, commit_of, event_text, root_text
from services.notifier.notifyfile import ChannelSpec

log = logging.getLogger(__name__)

PLATFORM = "mattermost"
WINDOW = 5 * 60


def attachment(text: ChatText, *, colour: str = "#99AAB5") -> dict[str, Any]:
    return {"fallback": text.plain, "color": colour, "text": text.plain}


def button_token(secret: str, action: str, plan: str) -> str:
    """What a button's context carries to prove Wake made it: HMAC(secret, action:plan)."""
    return hmac.new(secret.encode(), f"{action}:{plan}".encode(), hashlib.sha256).hexdigest()


def buttons(plan: str, *, url: str, secret: str) -> list[dict[str, Any]]:
    """The approval request's buttons: Mattermost POSTs their `context` to `url` on a click."""
    return [
        {
            "id": f"wake{verb}",
            "name": verb.capitalize(),
            "style": style,
            "integration": {
                "url": url,
                "context": {
                    "action": verb,
                    "plan": plan,
                    "token": button_token(secret, verb, plan),
                },
            },
        }
        for verb, style in (("approve", "good"), ("reject", "danger"))
    ]


class MattermostChannel:
    def __init__(
        self,
        spec: ChannelSpec,
        session: aiohttp.ClientSession,
        *,
        bot_token: str,
        action_token: str,
        slash_token: str,
        threads: Threads,
        chatops: ChatOps | None,
        stop: asyncio.Event,
    ) -> None:
        self.name = spec.name
        self._server = spec.options["url"].rstrip("/")
        parts = urlsplit(self._server)
        self.where = f"{parts.scheme}://{parts.netloc}"
        self._channel_id = spec.options["channel_id"]
        self._actions_url = spec.options.get("actions_url", "")
        self._headers = {"Authorization": f"Bearer {bot_token}"}
        self._action_token = action_token
        self._slash_token = slash_token
        self._session = session
        self._threads = threads
        self._chatops = chatops
        self._stop = stop
        self._seen: dict[str, float] = {}
        self._names: dict[str, str] = {}

    @property
    def takes_requests(self) -> bool:
        return self._chatops is not None and bool(self._action_token or self._slash_token)

    async def notify(self, event: Envelope, *, txn: str) -> Posted:
        thread = self._threads.get(self.name, event.correlation_id)
        if thread is None:
            post = await self._post(root_text(event, None))
            self._threads.opened(self.name, event, post["id"])
            return Posted(message_id=post["id"], thread_id=post["id"])
        if not thread.commit:
            thread.commit = commit_of(event)
        actions = []
        if (
            isinstance(event.payload, ApprovalRequested)
            and self._actions_url
            and self._action_token
        ):
            actions = buttons(
                event.payload.plan_id, url=self._actions_url, secret=self._action_token
            )
        post = await self._post(event_text(event), root_id=thread.root_id, actions=actions)
        try:
            text = root_text(event, thread)
            await self._call(
                "PUT",
                f"/posts/{quote(thread.root_id)}/patch",
                {"message": "", "props": {"attachments": [attachment(text)]}},
            )
        except ChannelError as exc:
            log.warning("%s: could not update the journey's first message: %s", self.name, exc)
        return Posted(message_id=post["id"], thread_id=thread.root_id)

    async def send_test(self, text: ChatText) -> str:
        post = await self._post(text)
        return json.dumps({k: post[k] for k in ("id", "channel_id", "create_at") if k in post})

    async def listen(self) -> None:
        """Mattermost pushes its requests to `<chat_url>/mattermost`: nothing to follow."""

    async def _post(
        self, text: ChatText, *, root_id: str = "", actions: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        note = attachment(text)
        if actions:
            note["actions"] = actions
        body: dict[str, Any] = {
            "channel_id": self._channel_id,
            "message": "",
            "props": {"attachments": [note]},
        }
        if root_id:
            body["root_id"] = root_id
        return await self._call("POST", "/posts", body)

    # --- requests from Mattermost -------------------------------------------------------

    def verified(self, body: bytes, content_type: str) -> bool:
        """Whether `body` carries this channel's action token (a click) or slash token."""
        given, expected = "", ""
        if content_type == "application/json":
            try:
                context = (json.loads(body) or {}).get("context") or {}
            except (ValueError, AttributeError):
                return False
            if not self._action_token:
                return False
            given = str(context.get("token", ""))
            expected = button_token(
                self._action_token, str(context.get("action", "")), str(context.get("plan", ""))
            )
        else:
            form = dict(parse_qsl(body.decode("utf-8", "replace")))
            given, expected = form.get("token", ""), self._slash_token
        return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())

    def first_time(self, trigger: str) -> bool:
        now = time.monotonic()
        for seen, at in list(self._seen.items()):
            if now - at > 2 * WINDOW:
                del self._seen[seen]
        if not trigger:
            return True
        if trigger in self._seen:
            return False
        self._seen[trigger] = now
        return True

    async def answer(self, body: bytes, content_type: str) -> web.Response:
        if self._chatops is None:
            return web.Response(status=401)
        if content_type == "application/json":
            click = json.loads(body)
            context = click.get("context") or {}
            user = await self._user_name(str(click.get("user_id", "")), click.get("user_name"))
            plan = str(context.get("plan", ""))
            text = (
                f"approve {plan}"
                if context.get("action") == "approve"
                else f"reject {plan} rejected in Mattermost by {user}"
            )
            post_id = str(click.get("post_id", ""))
            request = self._request_of(
                user, text, ref=f"{post_id}/{click.get('trigger_id', '')}", channel=click
            )
            if not self.first_time(str(click.get("trigger_id", ""))):
                await self._chatops.refuse_replay(request)
                return web.Response(status=401)
            reply = await self._chatops.handle(request)
            await self._reply_in_thread(reply)
            return web.json_response({"ephemeral_text": reply.text})
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        user = form.get("user_name") or await self._user_name(form.get("user_id", ""), None)
        request = self._request_of(
            user, form.get("text", ""), ref=form.get("trigger_id", ""), channel=form
        )
        if not self.first_time(form.get("trigger_id", "")):
            await self._chatops.refuse_replay(request)
            return web.Response(status=401)
        reply = await self._chatops.handle(request)
        await self._reply_in_thread(reply)
        return web.json_response({"response_type": "in_channel", "text": reply.text})

    def _request_of(self, user: str, text: str, *, ref: str, channel: Mapping[str, Any]) -> Request:
        where = str(channel.get("channel_id", ""))
        wrong = (
            f"a request from Mattermost channel {where}, not from {self._channel_id}"
            if where and where != self._channel_id
            else ""
        )
        return Request(
            channel=self.name,
            requester=f"{PLATFORM}:{user}",
            text=text,
            message_ref=f"{PLATFORM}:{ref}",
            display_name=user,
            wrong_place=wrong,
        )

    async def _reply_in_thread(self, reply: Reply) -> None:
        if reply.about is None:
            return
        thread = self._threads.get(self.name, reply.about.correlation_id)
        if thread is None:
            return
        sign = "\u2705" if reply.done else "\u26d4"
        try:
            await self._post(ChatText(f"{sign} {reply.text}", ""), root_id=thread.root_id)
        except ChannelError as exc:
            log.warning("%s: could not answer in the thread: %s", self.name, exc)

    async def _user_name(self, user_id: str, given: object) -> str:
        if isinstance(given, str) and given:
            return given
        if user_id not in self._names:
            try:
                user = await self._call("GET", f"/users/{quote(user_id)}", None)
                self._names[user_id] = str(user.get("username") or user_id)
            except ChannelError:
                return user_id
        return self._names[user_id]

    # --- the REST API -------------------------------------------------------------------

    async def _call(self, method: str, path: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        return await json_call(
            self._session,
            method,
            f"{self._server}/api/v4{path}",
            body,
            label=f"mattermost {method} {path}",
            stop=self._stop,
            headers=self._headers,
            network=(*NETWORK_ERRORS, ValueError),
        )
