"""ChatOps on Slack (issue 12, second "Done when" line): Block Kit threads through a stand-in
of the Web API, and button clicks and `/wake` commands signed with slack_sdk's own code."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp
from slack_sdk.signature import SignatureVerifier

from events.payloads import ApprovalRequested, ChatCommandRefused, PlanApproved
from services.demo.sample import APP_PATH, first_commit
from tests.chat.world import SLACK_ANA, Chat
from tests.waiting import eventually

APP = "slack-shop"


def signed(body: str, *, secret: str, age: float = 0.0) -> dict[str, str]:
    """The headers Slack sends with `body`, signed as slack_sdk signs (v0)."""
    timestamp = str(int(time.time() - age))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature or "",
        "Content-Type": "application/x-www-form-urlencoded",
    }


def click(action: str, plan: str, *, user: str, name: str, channel: str, thread: str) -> str:
    """An interactivity request's body: a click on a button of the approval message."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": name, "name": name, "team_id": "T0WAKE"},
        "team": {"id": "T0WAKE", "domain": "wake"},
        "channel": {"id": channel, "name": "ops"},
        "container": {
            "type": "message",
            "message_ts": "1700000000.000200",
            "channel_id": channel,
            "is_ephemeral": False,
            "thread_ts": thread,
        },
        "message": {"type": "message", "ts": "1700000000.000200", "thread_ts": thread},
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "response_url": "https://hooks.slack.com/actions/T0WAKE/1/x",
        "actions": [
            {
                "action_id": action,
                "block_id": f"wake_plan_{plan[:8]}",
                "value": plan,
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def slash(text: str, *, user: str, name: str, channel: str) -> str:
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0WAKE",
            "channel_id": channel,
            "user_id": user,
            "user_name": name,
            "command": "/wake",
            "text": text,
            "trigger_id": f"{time.time():.6f}.1.abc",
            "response_url": "https://hooks.slack.com/commands/T0WAKE/1/x",
        }
    )


async def post(chat: Chat, body: str, headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{chat.chat_url}/slack", data=body, headers=headers) as answer:
            text = await answer.text()
            return answer.status, (json.loads(text) if text.startswith("{") else text)


async def test_a_click_signed_with_the_right_secret_approves_and_no_other_changes_anything(
    chat: Chat,
):
    wake, slack = chat.wake, chat.slack
    # (Slack is pointed at endpoints.json's chat_url)
    endpoints = json.loads((wake.running.data_dir / "endpoints.json").read_text())
    assert endpoints["chat_url"] == chat.chat_url
    # Given a manual app approved by Ana on Slack, and a Web API that first answers 429
    slack.throttle = 1
    repo = wake.repository(APP)
    first_commit(repo, namespace=APP)
    start = await wake.position()
    await wake.wake(
        "app", "add", APP, "--repo", repo.url, "--path", APP_PATH, "--namespace", APP,
        "--manual", "--approver", "slack:U0ANA",
    )  # fmt: skip
    asked = await wake.next_event(APP, "ApprovalRequested", after=start)
    assert isinstance(asked.event.payload, ApprovalRequested)
    plan = asked.event.payload.plan_id

    # Then the journey is a thread: its first message, then replies with thread_ts
    def buttons() -> list[dict[str, Any]]:
        return [
            b
            for b in slack.posted()
            if any(
                e.get("value") == plan
                for block in b["blocks"]
                if block["type"] == "actions"
                for e in block["elements"]
            )
        ]

    await eventually(lambda: bool(buttons()), timeout=30)
    [request] = buttons()
    root = request["thread_ts"]
    [opening] = [b for b in slack.posted() if "thread_ts" not in b and APP in b["text"]]
    # (the journey's first message came before any other of the app's)
    assert next(c.body for c in slack.calls if c.answer == 200 and APP in c.body["text"]) is opening
    actions = next(b for b in request["blocks"] if b["type"] == "actions")["elements"]
    assert [(a["action_id"], a["style"]) for a in actions] == [
        ("wake_approve", "primary"),
        ("wake_reject", "danger"),
    ]
    await eventually(lambda: any(u["ts"] == root for u in slack.posted("chat.update")), timeout=30)
    # ... and the 429 was waited out as its Retry-After said
    [throttled] = [c for c in slack.calls if c.answer == 429]
    retried = next(c for c in slack.calls if c.at > throttled.at)
    assert retried.at - throttled.at >= 0.95

    # When clicks on Approve arrive: the wrong secret, 10 minutes old, then a good one twice
    before = await wake.position()
    body = click("wake_approve", plan, user="U0ANA", name="ana", channel="C0WAKE", thread=root)
    right = chat.slack_signing_secret
    assert (await post(chat, body, signed(body, secret="not-the-secret")))[0] == 401
    assert (await post(chat, body, signed(body, secret=right, age=600)))[0] == 401
    good = signed(body, secret=right)
    assert (await post(chat, body, good))[0] == 200
    assert (await post(chat, body, good))[0] == 401  # replayed

    # Then only the good one approved, as Ana of Slack, and the plan is applied
    await wake.next_event(
        APP, "ApplySucceeded", after=before, where=lambda s: s.event.payload.plan_id == plan
    )
    after = await wake.events(APP, after=before)
    approvals = [s.event for s in after if s.event.type == "PlanApproved"]
    assert [a.actor for a in approvals] == [SLACK_ANA]
    assert isinstance(approvals[0].payload, PlanApproved)
    assert (approvals[0].payload.display_name, approvals[0].payload.channel) == ("ana", "ops-slack")
    # ... the replay is on the record (the forgeries, unverifiable, only in the log)
    [replay] = [s.event.payload for s in after if s.event.type == "ChatCommandRefused"]
    assert isinstance(replay, ChatCommandRefused)
    assert replay.requester == SLACK_ANA and "replayed" in replay.reason
    # ... and the answer is in the journey's thread
    await eventually(
        lambda: (
            any(
                b.get("thread_ts") == root and "approved by ana (slack:U0ANA)" in b["text"]
                for b in slack.posted()
            )
            and any(b.get("thread_ts") == root and "replayed" in b["text"] for b in slack.posted())
        ),
        timeout=30,
    )
    assert slack.violations == []


async def test_the_slash_command_answers_and_refuses_someone_not_allowed(chat: Chat):
    wake = chat.wake
    right = chat.slack_signing_secret
    # When someone not among the approvers sends `/wake approve` of a plan of the app
    plans = [
        s.event.payload.plan_id for s in await wake.events(APP) if s.event.type == "PlanCreated"
    ]
    before = await wake.position()
    body = slash(f"approve {plans[-1]}", user="U0BOB", name="bob", channel="C0WAKE")
    status, answer = await post(chat, body, signed(body, secret=right))
    # Then he is answered why not, and it is on the record
    assert status == 200 and answer["text"].startswith("refused: slack:U0BOB may not approve")
    refused = await wake.next_event(APP, "ChatCommandRefused", after=before)
    assert isinstance(refused.event.payload, ChatCommandRefused)
    assert refused.event.payload.requester == "slack:U0BOB"
    # and `/wake status` answers anyone
    body = slash(f"status {APP}", user="U0BOB", name="bob", channel="C0WAKE")
    status, answer = await post(chat, body, signed(body, secret=right))
    assert status == 200 and "applied" in answer["text"] and answer["response_type"] == "in_channel"
