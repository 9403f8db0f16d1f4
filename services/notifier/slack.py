"""A Slack channel: a bot token's `chat.postMessage` / `chat.update`, and Slack's requests.

Journeys are threads (`thread_ts`), the first message updated in place. An
approval request has Approve / Reject buttons; their clicks (Slack's
interactivity requests) and the `/wake` slash command arrive at
`<chat_url>/slack` (`chatserver`), and are carried out only if signed with
the app's signing secret (`slack_sdk`'s SignatureVerifier: v0 HMAC-SHA256,
timestamp within 5 minutes, constant-time compare) and never seen before (a
replayed request, however well signed, is refused). A refused request gets a
bare 401; why goes to the log. A 429 from the Web API is waited out as its
Retry-After says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from events.envelope import Envelope
from services.notifier.calling import NETWORK_ERRORS, REQUEST_TIMEOUT, again_after, with_retries
from services.notifier.channel import ChannelError, Posted
from services.notifier.chatops import ChatOps, Reply, Request
from services.notifier.journeys import ChatText, Threads, commit_of
from services.notifier.notifyfile import ChannelSpec
from services.notifier.slack_messages import (
    NotACommand,
    SlackRequest,
    post_body,
    reply_body,
    section,
    slack_request,
    update_body,
)

log = logging.getLogger(__name__)

PLATFORM = "slack"
# Slack's own window: a request older (or newer) than this is refused.
WINDOW = 5 * 60


class SlackChannel:
    def __init__(
        self,
        spec: ChannelSpec,
        session: aiohttp.ClientSession,
        *,
        token: str,
        signing_secret: str,
        threads: Threads,
        chatops: ChatOps | None,
        stop: asyncio.Event,
    ) -> None:
        self.name = spec.name
        self._api = spec.options["api_url"].rstrip("/")
        parts = urlsplit(self._api)
        self.where = f"{parts.scheme}://{parts.netloc}"
        self._channel = spec.options["channel"]
        self._session = session
        self._headers = {"Authorization": f"Bearer {token}"}
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._threads = threads
        self._chatops = chatops
        self._stop = stop
        self._channel_id = self._channel if self._channel[:1] in ("C", "G") else ""
        # Signatures of the requests taken in the last window: a replay is refused.
        self._seen: dict[str, float] = {}
        self._replies: set[asyncio.Task[None]] = set()

    @property
    def takes_requests(self) -> bool:
        return self._verifier is not None and self._chatops is not None

    async def notify(self, event: Envelope, *, txn: str) -> Posted:
        thread = self._threads.get(self.name, event.correlation_id)
        if thread is None:
            answer = await self._call("chat.postMessage", post_body(event, channel=self._channel))
            self._threads.opened(self.name, event, answer["ts"])
            return Posted(message_id=answer["ts"], thread_id=answer["ts"])
        if not thread.commit:
            thread.commit = commit_of(event)
        answer = await self._call(
            "chat.postMessage",
            post_body(event, channel=self._channel, thread_ts=thread.root_id),
        )
        try:
            channel = self._channel_id or self._channel
            await self._call("chat.update", update_body(event, thread, channel=channel))
        except ChannelError as exc:
            log.warning("%s: could not update the journey's first message: %s", self.name, exc)
        return Posted(message_id=answer["ts"], thread_id=thread.root_id)

    async def send_test(self, text: ChatText) -> str:
        body = {"channel": self._channel, "text": text.plain, "blocks": [section(text.plain)]}
        return json.dumps(await self._call("chat.postMessage", body))

    async def listen(self) -> None:
        """Slack pushes its requests to `<chat_url>/slack`: nothing to follow."""

    async def close(self) -> None:
        if self._replies:
            await asyncio.gather(*self._replies, return_exceptions=True)

    # --- requests from Slack --------------------------------------------------------

    def verified(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether `body` is signed with this channel's signing secret within Slack's window."""
        if self._verifier is None:
            return False
        try:
            return self._verifier.is_valid_request(body, dict(headers))
        except ValueError:  # a timestamp that is not a number
            return False

    def first_time(self, headers: Mapping[str, str]) -> bool:
        """Remember a verified request; False if it was taken before (a replay)."""
        now = time.monotonic()
        for signature, at in list(self._seen.items()):
            if now - at > 2 * WINDOW:
                del self._seen[signature]
        signature = headers.get("X-Slack-Signature", "")
        if signature in self._seen:
            return False
        self._seen[signature] = now
        return True

    async def answer(self, body: bytes) -> web.Response:
        """Carry out the command of a verified, first-time request; answer Slack."""
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            asked = slack_request(form)
        except NotACommand as exc:
            log.info("%s: request ignored: %s", self.name, exc)
            return web.Response(status=200)
        if self._chatops is None:
            return web.Response(status=401)
        reply = await self._chatops.handle(self._request_of(asked))
        thread_ts = asked.thread_ts or self._thread_of(reply)
        if asked.slash:
            if thread_ts:
                self._reply_later(reply, thread_ts)
            return web.json_response({"response_type": "in_channel", "text": reply.text})
        self._reply_later(reply, thread_ts)
        return web.Response(status=200)

    async def refuse_replay(self, body: bytes) -> None:
        """A verified request taken before: on the record and in its thread, never again."""
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        try:
            asked = slack_request(form)
        except NotACommand:
            return
        if self._chatops is None:
            return
        reply = await self._chatops.refuse_replay(self._request_of(asked))
        if asked.thread_ts:
            self._reply_later(reply, asked.thread_ts)

    def _request_of(self, asked: SlackRequest) -> Request:
        return Request(
            channel=self.name,
            requester=f"{PLATFORM}:{asked.user_id}",
            text=asked.text,
            message_ref=f"{PLATFORM}:{asked.channel_id}/{asked.message_ref}",
            display_name=asked.user_name,
            thread_app=self._app_of_thread(asked.thread_ts),
            wrong_place=self._wrong_place(asked),
        )

    def _wrong_place(self, asked: SlackRequest) -> str:
        if self._channel_id and asked.channel_id and asked.channel_id != self._channel_id:
            return f"a request from Slack channel {asked.channel_id}, not from {self._channel_id}"
        return ""

    def _app_of_thread(self, thread_ts: str) -> str:
        found = self._threads.journey_of_root(self.name, thread_ts) if thread_ts else None
        return found[1].app if found else ""

    def _thread_of(self, reply: Reply) -> str:
        if reply.about is None:
            return ""
        thread = self._threads.get(self.name, reply.about.correlation_id)
        return thread.root_id if thread is not None else ""

    def _reply_later(self, reply: Reply, thread_ts: str) -> None:
        # Slack wants its answer within 3 seconds: the thread's reply goes after it.
        async def post() -> None:
            body = reply_body(
                reply.text,
                done=reply.done,
                channel=self._channel_id or self._channel,
                thread_ts=thread_ts,
            )
            try:
                await self._call("chat.postMessage", body)
            except ChannelError as exc:
                log.warning("%s: could not answer in the thread: %s", self.name, exc)

        task = asyncio.create_task(post())
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    # --- the Web API --------------------------------------------------------------------

    async def _call(self, method: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST `body` to the Web API's `method`; its answer (`ok` true), or ChannelError."""

        async def once(attempt: int) -> dict[str, Any]:
            async with self._session.post(
                f"{self._api}/{method}",
                json=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            ) as response:
                error = "HTTP 429 (rate limited)" if response.status == 429 else ""
                again = again_after(
                    response.status, response.headers, attempt, error or f"HTTP {response.status}"
                )
                if again is not None:
                    raise again
                answer = await response.json(content_type=None)
                if not isinstance(answer, dict) or not answer.get("ok"):
                    what = answer.get("error") if isinstance(answer, dict) else answer
                    raise ChannelError(f"slack {method}: {what} (HTTP {response.status})")
                return answer

        return await with_retries(
            once,
            label=f"slack {method}",
            stop=self._stop,
            network=(*NETWORK_ERRORS, ValueError),
        )
