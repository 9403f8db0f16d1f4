"""A Matrix channel: a bot user on a homeserver, over the client-server API (aiohttp).

The bot joins the configured room (accepting the invite waiting for it),
posts each journey as a thread (`m.thread`), edits the thread's first message
in place (`m.replace`) with the journey's state, and reads the room's new
messages (`/sync`, long-polled) for `!wake ...` commands, which it answers in
their thread. A 429 is waited out as the homeserver asks (`retry_after_ms`,
or `Retry-After`). The access token goes in a header only, never in a URL, a
log line or an error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from services.notifier.attempts import MAX_DELAY, parse_retry_after
from services.notifier.calling import REQUEST_TIMEOUT, Again, with_retries
from services.notifier.channel import ChannelError
from services.notifier.journeys import ChatText

log = logging.getLogger(__name__)

API = "/_matrix/client/v3"
HTML = "org.matrix.custom.html"

# A /sync long poll waits this long for news, on top of REQUEST_TIMEOUT.
SYNC_POLL_MS = 20_000


class MatrixError(ChannelError):
    """A request the homeserver refused or never answered; the message names the call."""


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message someone wrote in the room."""

    event_id: str
    sender: str
    body: str
    thread_root: str = ""


def message(text: ChatText, *, thread_root: str = "") -> dict[str, Any]:
    """An `m.room.message` of `text`, in the thread of `thread_root` when given."""
    content: dict[str, Any] = {
        "msgtype": "m.text",
        "body": text.plain,
        "format": HTML,
        "formatted_body": text.html,
    }
    if thread_root:
        content["m.relates_to"] = {
            "rel_type": "m.thread",
            "event_id": thread_root,
            # Clients without threads show it as a reply to the first message.
            "is_falling_back": True,
            "m.in_reply_to": {"event_id": thread_root},
        }
    return content


def edit(text: ChatText, *, original: str) -> dict[str, Any]:
    """An edit (`m.replace`) that makes `original` say `text`."""
    return {
        "msgtype": "m.text",
        "body": f"* {text.plain}",
        "format": HTML,
        "formatted_body": f"* {text.html}",
        "m.new_content": {
            "msgtype": "m.text",
            "body": text.plain,
            "format": HTML,
            "formatted_body": text.html,
        },
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    }


def incoming(events: list[Mapping[str, Any]], *, own_user: str) -> list[Incoming]:
    """The text messages of a /sync timeline written by others than the bot."""
    found = []
    for event in events:
        content = event.get("content") or {}
        if event.get("type") != "m.room.message" or event.get("sender") == own_user:
            continue
        body = content.get("body")
        if not isinstance(body, str):
            continue
        relation = content.get("m.relates_to") or {}
        if relation.get("rel_type") == "m.replace":
            continue  # an edit: the command was handled when first sent
        root = relation.get("event_id", "") if relation.get("rel_type") == "m.thread" else ""
        found.append(
            Incoming(
                event_id=str(event.get("event_id", "")),
                sender=str(event.get("sender", "")),
                body=body,
                thread_root=str(root),
            )
        )
    return found


class MatrixClient:
    """One bot user's requests to one homeserver."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        homeserver: str,
        user_id: str,
        token: str,
        stop: asyncio.Event,
    ) -> None:
        self._session = session
        self._base = homeserver.rstrip("/")
        self.user_id = user_id
        self._headers = {"Authorization": f"Bearer {token}"}
        self._stop = stop
        self._names: dict[str, str] = {}

    async def join(self, room: str) -> str:
        """Join `room` (an id or alias; an invite waiting is accepted); its room id."""
        answer = await self._request("POST", f"/join/{quote(room, safe='')}", body={})
        return str(answer.get("room_id") or room)

    async def send(self, room_id: str, content: Mapping[str, Any], *, txn: str) -> str:
        """Send `content` as an m.room.message; its event id. `txn` makes a retry idempotent."""
        path = f"/rooms/{quote(room_id, safe='')}/send/m.room.message/{quote(txn, safe='')}"
        answer = await self._request("PUT", path, body=content)
        return str(answer["event_id"])

    async def display_name(self, user_id: str) -> str:
        """`user_id`'s display name ('' if none); asked once per user."""
        if user_id not in self._names:
            try:
                answer = await self._request(
                    "GET", f"/profile/{quote(user_id, safe='')}/displayname"
                )
                self._names[user_id] = str(answer.get("displayname") or "")
            except MatrixError:
                self._names[user_id] = ""
        return self._names[user_id]

    async def messages(self, room_id: str) -> AsyncIterator[list[Incoming]]:
        """The room's new messages, batch by batch, from now on (long-polled /sync)."""
        room_filter = {
            "presence": {"types": []},
            "account_data": {"types": []},
            "room": {
                "rooms": [room_id],
                "timeline": {"types": ["m.room.message"], "limit": 50},
                "state": {"types": []},
                "ephemeral": {"types": []},
                "account_data": {"types": []},
            },
        }
        params = {"filter": json.dumps(room_filter), "timeout": "0"}
        # The first sync only finds where "now" is: what was said before is not a command.
        answer = await self._request("GET", "/sync", params=params)
        since = answer["next_batch"]
        log.info("following %s for commands from now on", room_id)
        while not self._stop.is_set():
            params = {**params, "since": since, "timeout": str(SYNC_POLL_MS)}
            answer = await self._request(
                "GET", "/sync", params=params, timeout=REQUEST_TIMEOUT + SYNC_POLL_MS / 1000
            )
            since = answer["next_batch"]
            room = (answer.get("rooms") or {}).get("join", {}).get(room_id) or {}
            events = (room.get("timeline") or {}).get("events") or []
            found = incoming(events, own_user=self.user_id)
            if found:
                yield found

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> dict[str, Any]:
        call = f"{method} {path.split('?')[0]}"

        async def once(attempt: int) -> dict[str, Any]:
            async with self._session.request(
                method,
                f"{self._base}{API}{path}",
                json=body,
                params=params,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as response:
                text = await response.text()
                if 200 <= response.status < 300:
                    return json.loads(text) if text else {}
                answer = _json_or_empty(text)
                error = f"HTTP {response.status} {answer.get('errcode', '')}".strip()
                if answer.get("error"):
                    error += f": {str(answer['error'])[:200]}"
                # Only a 429 is repeated: a homeserver's 5xx is its answer.
                if response.status != 429:
                    raise MatrixError(f"{call}: {error}")
                raise Again(error, _retry_after(answer, response.headers.get("Retry-After")))

        return await with_retries(once, label=call, stop=self._stop, failure=MatrixError)


def _json_or_empty(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _retry_after(answer: Mapping[str, Any], header: str | None) -> float:
    """How long a 429 asks us to wait: `retry_after_ms` (Matrix), else Retry-After."""
    millis = answer.get("retry_after_ms")
    if isinstance(millis, int | float) and millis >= 0:
        return min(MAX_DELAY, millis / 1000)
    seconds = parse_retry_after(header)
    return min(MAX_DELAY, seconds if seconds is not None else 1.0)
