"""Discord's side of a journey: webhook messages with embeds, and interactions. Pure.

A Discord channel webhook cannot open threads in a text channel, so a
journey is its first message, edited in place with the journey's state, and
one message per event, each titled with the journey. The approval request
has Approve / Reject buttons (custom ids `wake_approve:PLAN`, `wake_reject:PLAN`)
when the webhook belongs to the application whose interactions endpoint is
`<chat_url>/discord`; a click, or the slash command `/wake command:...`, comes
back as an interaction that `discord_command` reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from events.envelope import Envelope
from events.payloads import ApplyFailed, ApplySucceeded, ApprovalRequested
from services.notifier.journeys import ChatText, Thread, event_text, root_text

APPROVE = "wake_approve"
REJECT = "wake_reject"
SLASH_COMMAND = "wake"

# Interaction types and the answers to them (discord.com/developers/docs/interactions).
PING = 1
APPLICATION_COMMAND = 2
MESSAGE_COMPONENT = 3
PONG = 1
CHANNEL_MESSAGE_WITH_SOURCE = 4

# Embed colours: green, red, amber, grey.
_OK, _FAILED, _WAITING, _INFO = 0x2EB67D, 0xE01E5A, 0xECB22E, 0x99AAB5


def _colour(event: Envelope) -> int:
    if isinstance(event.payload, ApplySucceeded):
        return _OK
    if isinstance(event.payload, ApplyFailed):
        return _FAILED
    if isinstance(event.payload, ApprovalRequested):
        return _WAITING
    return _INFO


def _embed(title: str, text: ChatText, colour: int) -> dict[str, Any]:
    return {"title": title[:256], "description": text.plain[:4096], "color": colour}


def journey_title(event: Envelope, thread: Thread | None) -> str:
    return root_text(event, thread).plain.split(" \u2014 ")[0]


def first_body(event: Envelope) -> dict[str, Any]:
    """The journey's first message."""
    text = root_text(event, None)
    return {"embeds": [_embed(journey_title(event, None), text, _colour(event))]}


def event_body(event: Envelope, thread: Thread, *, buttons: bool) -> dict[str, Any]:
    """A later event of the journey; an approval request with its buttons if `buttons`."""
    body: dict[str, Any] = {
        "embeds": [_embed(journey_title(event, thread), event_text(event), _colour(event))]
    }
    if buttons and isinstance(event.payload, ApprovalRequested):
        plan = event.payload.plan_id
        body["components"] = [
            {
                "type": 1,
                "components": [
                    {"type": 2, "style": 3, "label": "Approve", "custom_id": f"{APPROVE}:{plan}"},
                    {"type": 2, "style": 4, "label": "Reject", "custom_id": f"{REJECT}:{plan}"},
                ],
            }
        ]
    return body


def test_body(text: ChatText) -> dict[str, Any]:
    return {"embeds": [_embed("Wake", text, _INFO)]}


def edit_body(event: Envelope, thread: Thread) -> dict[str, Any]:
    """The journey's first message, saying where it stands after `event`."""
    text = root_text(event, thread)
    return {"embeds": [_embed(journey_title(event, thread), text, _colour(event))]}


class NotACommand(ValueError):
    """An interaction that carries no command of Wake's."""


@dataclass(frozen=True, slots=True)
class DiscordCommand:
    user_id: str
    user_name: str
    channel_id: str
    text: str
    message_ref: str


def discord_command(interaction: Mapping[str, Any]) -> DiscordCommand:
    """The command of a verified interaction: a button click or `/wake command:...`."""
    kind = interaction.get("type")
    data = interaction.get("data") or {}
    member = interaction.get("member") or {}
    user = member.get("user") or interaction.get("user") or {}
    name = str(member.get("nick") or user.get("global_name") or user.get("username") or "")
    if kind == MESSAGE_COMPONENT:
        action, _, plan = str(data.get("custom_id", "")).partition(":")
        if action == APPROVE:
            text = f"approve {plan}"
        elif action == REJECT:
            text = f"reject {plan} rejected in Discord by {name or user.get('id', '')}"
        else:
            raise NotACommand(f"component {data.get('custom_id')!r}")
    elif kind == APPLICATION_COMMAND and data.get("name") == SLASH_COMMAND:
        options = {o.get("name"): o.get("value") for o in data.get("options") or []}
        text = str(options.get("command") or "")
    else:
        raise NotACommand(f"interaction of type {kind!r}")
    return DiscordCommand(
        user_id=str(user.get("id", "")),
        user_name=name,
        channel_id=str(interaction.get("channel_id", "")),
        text=text,
        message_ref=str(interaction.get("id", "")),
    )


def answer(text: str) -> dict[str, Any]:
    """The interaction's response: a message in the channel saying what happened."""
    return {"type": CHANNEL_MESSAGE_WITH_SOURCE, "data": {"content": text[:2000]}}
