"""A Discord channel: a webhook's messages with embeds, and the application's interactions.

The webhook URL is a credential (it carries the webhook's token): only its
scheme and host are ever logged. Interactions (button clicks, `/wake`) arrive
at `<chat_url>/discord` and are carried out only if signed with the
application's Ed25519 key (PyNaCl verifies `X-Signature-Ed25519` over the
`X-Signature-Timestamp` and the body), fresh (within 5 minutes) and never
seen before; PING is answered PONG, as Discord checks the endpoint with it.
A 429 is waited out as its Retry-After says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from events.envelope import Envelope
from services.notifier.calling import json_call
from services.notifier.channel import ChannelError, Posted
from services.notifier.chatops import ChatOps, Request
from services.notifier.discord_messages import (
    PING,
    PONG,
    DiscordCommand,
    NotACommand,
    answer,
    discord_command,
    edit_body,
    event_body,
    first_body,
    test_body,
)
from services.notifier.journeys import ChatText, Threads, commit_of
from services.notifier.notifyfile import ChannelSpec

log = logging.getLogger(__name__)

PLATFORM = "discord"
WINDOW = 5 * 60


class DiscordChannel:
    def __init__(
        self,
        spec: ChannelSpec,
        session: aiohttp.ClientSession,
        *,
        webhook_url: str,
        threads: Threads,
        chatops: ChatOps | None,
        stop: asyncio.Event,
    ) -> None:
        self.name = spec.name
        self._url = webhook_url.rstrip("/")
        parts = urlsplit(self._url)
        self.where = f"{parts.scheme}://{parts.netloc}"
        public_key = spec.options.get("public_key", "")
        self._key = VerifyKey(bytes.fromhex(public_key)) if public_key else None
        self._session = session
        self._threads = threads
        self._chatops = chatops
        self._stop = stop
        self._seen: dict[str, float] = {}

    @property
    def takes_requests(self) -> bool:
        return self._key is not None and self._chatops is not None

    async def notify(self, event: Envelope, *, txn: str) -> Posted:
        thread = self._threads.get(self.name, event.correlation_id)
        if thread is None:
            sent = await self._call("POST", "?wait=true", first_body(event))
            self._threads.opened(self.name, event, str(sent["id"]))
            return Posted(message_id=str(sent["id"]), thread_id=str(sent["id"]))
        if not thread.commit:
            thread.commit = commit_of(event)
        sent = await self._call(
            "POST", "?wait=true", event_body(event, thread, buttons=self.takes_requests)
        )
        try:
            await self._call("PATCH", f"/messages/{thread.root_id}", edit_body(event, thread))
        except ChannelError as exc:
            log.warning("%s: could not update the journey's first message: %s", self.name, exc)
        return Posted(message_id=str(sent["id"]), thread_id=thread.root_id)

    async def send_test(self, text: ChatText) -> str:
        sent = await self._call("POST", "?wait=true", test_body(text))
        return json.dumps({k: sent[k] for k in ("id", "channel_id", "timestamp") if k in sent})

    async def listen(self) -> None:
        """Discord pushes its interactions to `<chat_url>/discord`: nothing to follow."""

    # --- interactions ---------------------------------------------------------------

    def verified(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether `body` is signed with the application's key, and fresh."""
        if self._key is None:
            return False
        signature = headers.get("X-Signature-Ed25519", "")
        stamp = headers.get("X-Signature-Timestamp", "")
        try:
            if abs(time.time() - int(stamp)) > WINDOW:
                return False
            self._key.verify(stamp.encode() + body, bytes.fromhex(signature))
        except (ValueError, BadSignatureError):
            return False
        return True

    def first_time(self, headers: Mapping[str, str]) -> bool:
        now = time.monotonic()
        for signature, at in list(self._seen.items()):
            if now - at > 2 * WINDOW:
                del self._seen[signature]
        signature = headers.get("X-Signature-Ed25519", "")
        if signature in self._seen:
            return False
        self._seen[signature] = now
        return True

    async def answer(self, body: bytes) -> web.Response:
        try:
            interaction = json.loads(body)
        except ValueError:
            return web.Response(status=400)
        if not isinstance(interaction, dict):
            return web.Response(status=400)
        if interaction.get("type") == PING:
            return web.json_response({"type": PONG})
        try:
            asked = discord_command(interaction)
        except NotACommand as exc:
            log.info("%s: interaction ignored: %s", self.name, exc)
            return web.json_response(answer(f"not a command of Wake's ({exc})"))
        if self._chatops is None:
            return web.Response(status=401)
        reply = await self._chatops.handle(self._request_of(asked))
        sign = "\u2705" if reply.done else "\u26d4"
        return web.json_response(answer(f"{sign} {reply.text}"))

    async def refuse_replay(self, body: bytes) -> None:
        """A verified interaction taken before: on the record, never carried out again."""
        try:
            asked = discord_command(json.loads(body))
        except (ValueError, NotACommand, AttributeError):
            return
        if self._chatops is not None:
            await self._chatops.refuse_replay(self._request_of(asked))

    def _request_of(self, asked: DiscordCommand) -> Request:
        return Request(
            channel=self.name,
            requester=f"{PLATFORM}:{asked.user_id}",
            text=asked.text,
            message_ref=f"{PLATFORM}:{asked.message_ref}",
            display_name=asked.user_name,
        )

    # --- the webhook --------------------------------------------------------------

    async def _call(self, method: str, tail: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await json_call(
            self._session,
            method,
            f"{self._url}{tail}",
            body,
            label=f"discord {method} {self.where}",
            stop=self._stop,
            # Some client errors quote the URL, which holds the webhook's token.
            scrub=lambda text: text.replace(self._url, self.where),
        )
