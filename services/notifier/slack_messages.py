"""Slack's side of a journey: Block Kit messages, and the requests Slack sends back. Pure.

Messages are `chat.postMessage` / `chat.update` bodies (text as the
notification's fallback, Block Kit `blocks`, `thread_ts` for the journey's
thread). An approval request carries Approve and Reject buttons whose value
is the plan id; a click comes back as an interactivity request (`payload`,
type `block_actions`), a `/wake approve PLAN` as a slash command request:
`slack_request` turns either into the words of a command and who gave it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from events.envelope import Envelope
from events.payloads import ApprovalRequested
from services.notifier.journeys import ChatText, Thread, event_text, reply_text, root_text

APPROVE = "wake_approve"
REJECT = "wake_reject"
SLASH_COMMAND = "/wake"


def mrkdwn(text: str) -> str:
    """`text` safe in Slack's mrkdwn: only &, < and > are escaped (Slack's rule)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(text)[:3000]}}


def post_body(event: Envelope, *, channel: str, thread_ts: str = "") -> dict[str, Any]:
    """`chat.postMessage` of `event`: the journey's first message, or a reply in its thread."""
    if not thread_ts:
        return _body(root_text(event, None), channel=channel)
    body = _body(event_text(event), channel=channel)
    body["thread_ts"] = thread_ts
    if isinstance(event.payload, ApprovalRequested):
        plan = event.payload.plan_id
        body["blocks"].append(
            {
                "type": "actions",
                "block_id": f"wake_plan_{plan[:8]}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "text": {"type": "plain_text", "text": "Approve"},
                        "style": "primary",
                        "value": plan,
                    },
                    {
                        "type": "button",
                        "action_id": REJECT,
                        "text": {"type": "plain_text", "text": "Reject"},
                        "style": "danger",
                        "value": plan,
                    },
                ],
            }
        )
    return body


def update_body(event: Envelope, thread: Thread, *, channel: str) -> dict[str, Any]:
    """`chat.update` of the journey's first message, saying where it stands after `event`."""
    body = _body(root_text(event, thread), channel=channel)
    body["ts"] = thread.root_id
    return body


def reply_body(text: str, *, done: bool, channel: str, thread_ts: str) -> dict[str, Any]:
    body = _body(reply_text(text, done=done), channel=channel)
    if thread_ts:
        body["thread_ts"] = thread_ts
    return body


def _body(text: ChatText, *, channel: str) -> dict[str, Any]:
    return {"channel": channel, "text": text.plain, "blocks": [section(text.plain)]}


class NotACommand(ValueError):
    """A request from Slack that carries no command of Wake's; the message says why."""


@dataclass(frozen=True, slots=True)
class SlackRequest:
    """A command from Slack: who, in which channel, the command's words, and where to answer."""

    user_id: str
    user_name: str
    channel_id: str
    text: str
    message_ref: str
    thread_ts: str = ""
    slash: bool = False


def slack_request(form: Mapping[str, str]) -> SlackRequest:
    """The command of a verified request's form: a button click (`payload`) or `/wake ...`."""
    if "payload" in form:
        try:
            payload = json.loads(form["payload"])
        except ValueError:
            raise NotACommand("payload is not JSON") from None
        if not isinstance(payload, dict) or payload.get("type") != "block_actions":
            raise NotACommand(f"interaction of type {payload.get('type')!r}")
        actions = payload.get("actions") or []
        action = next((a for a in actions if a.get("action_id") in (APPROVE, REJECT)), None)
        if action is None:
            raise NotACommand("no action of Wake's")
        user = payload.get("user") or {}
        container = payload.get("container") or {}
        message = payload.get("message") or {}
        plan = str(action.get("value", ""))
        name = str(user.get("name") or user.get("username") or "")
        text = (
            f"approve {plan}"
            if action["action_id"] == APPROVE
            else f"reject {plan} rejected in Slack by {name or user.get('id', '')}"
        )
        return SlackRequest(
            user_id=str(user.get("id", "")),
            user_name=name,
            channel_id=str((payload.get("channel") or {}).get("id") or container.get("channel_id")),
            text=text,
            # The click itself: a click has its own action_ts, a replay the same.
            message_ref=f"{container.get('message_ts', '')}/{action.get('action_ts', '')}",
            thread_ts=str(message.get("thread_ts") or container.get("thread_ts") or ""),
        )
    if form.get("command") == SLASH_COMMAND:
        return SlackRequest(
            user_id=form.get("user_id", ""),
            user_name=form.get("user_name", ""),
            channel_id=form.get("channel_id", ""),
            text=form.get("text", ""),
            message_ref=form.get("trigger_id", ""),
            slash=True,
        )
    raise NotACommand(f"neither an interaction nor {SLASH_COMMAND}")
