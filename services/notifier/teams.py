"""A Microsoft Teams channel: an Adaptive Card per event, through a Workflows webhook.

A Workflows webhook ("Post to a channel when a webhook request is received")
takes a message with an Adaptive Card attachment and answers 202 with no
message id: Teams cannot thread or update what Wake posts this way, so each
card names its journey, and no command comes back from Teams. The webhook URL
carries its signature (a credential): only its scheme and host are logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from events.envelope import Envelope
from events.payloads import ApplyFailed, ApplySucceeded, ApprovalRequested
from services.notifier.calling import REQUEST_TIMEOUT, again_after, with_retries
from services.notifier.channel import ChannelError, Posted
from services.notifier.journeys import ChatText, event_text, root_text
from services.notifier.notifyfile import ChannelSpec

log = logging.getLogger(__name__)

CARD = "application/vnd.microsoft.card.adaptive"


def card(title: str, text: ChatText, *, colour: str = "Default") -> dict[str, Any]:
    """A Workflows webhook's message: one Adaptive Card (schema 1.4) with a title and text."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": CARD,
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": title, "weight": "Bolder", "wrap": True},
                        {"type": "TextBlock", "text": text.plain, "wrap": True, "color": colour},
                    ],
                },
            }
        ],
    }


def event_card(event: Envelope) -> dict[str, Any]:
    p = event.payload
    colour = (
        "Good"
        if isinstance(p, ApplySucceeded)
        else "Attention"
        if isinstance(p, ApplyFailed)
        else "Warning"
        if isinstance(p, ApprovalRequested)
        else "Default"
    )
    title = root_text(event, None).plain.split(" \u2014 ")[0]
    return card(title, event_text(event), colour=colour)


class TeamsChannel:
    def __init__(
        self,
        spec: ChannelSpec,
        session: aiohttp.ClientSession,
        *,
        webhook_url: str,
        stop: asyncio.Event,
    ) -> None:
        self.name = spec.name
        self._url = webhook_url
        parts = urlsplit(webhook_url)
        self.where = f"{parts.scheme}://{parts.netloc}"
        self._session = session
        self._stop = stop

    async def notify(self, event: Envelope, *, txn: str) -> Posted:
        await self._post(event_card(event))
        return Posted(message_id="", thread_id="")

    async def send_test(self, text: ChatText) -> str:
        return json.dumps(await self._post(card("Wake", text)))

    async def listen(self) -> None:
        """Teams takes no command through a Workflows webhook."""

    async def _post(self, body: Mapping[str, Any]) -> dict[str, Any]:
        async def once(attempt: int) -> dict[str, Any]:
            async with self._session.post(
                self._url, json=body, timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            ) as response:
                text = (await response.content.read(512)).decode("utf-8", "replace")
                if 200 <= response.status < 300:
                    return {"status": response.status, "body": text}
                error = f"HTTP {response.status}: {text[:200]}"
                raise again_after(response.status, response.headers, attempt, error) or (
                    ChannelError(f"teams {self.where}: {error}")
                )

        return await with_retries(
            once,
            label=f"teams {self.where}",
            stop=self._stop,
            scrub=lambda text: text.replace(self._url, self.where),
        )
