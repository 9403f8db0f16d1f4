"""ChatOps on Discord (issue 12, third "Done when" line): a webhook's embeds through a stand-in
of the webhook API, and interactions signed with PyNaCl as Discord signs them."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import aiohttp
from nacl.signing import SigningKey

from events.payloads import ApprovalRequested, PlanApproved
from services.demo.sample import APP_PATH, first_commit
from tests.chat.world import Chat
from tests.waiting import eventually

APP = "discord-shop"
ANA_ID = "80351110224678912"
_ids = itertools.count(1200000000000000001)


def interaction(kind: int, data: dict[str, Any] | None = None) -> bytes:
    """An interaction as Discord POSTs it: a ping, a click (3) or a slash command (2)."""
    body: dict[str, Any] = {
        "id": str(next(_ids)),
        "application_id": "1160000000000000001",
        "type": kind,
        "token": "interaction-token",
        "version": 1,
    }
    if data is not None:
        body |= {
            "data": data,
            "channel_id": "1170000000000000001",
            "guild_id": "1150000000000000001",
            "member": {"user": {"id": ANA_ID, "username": "ana", "global_name": "Ana"}},
        }
    return json.dumps(body).encode()


def signed(body: bytes, key: SigningKey, *, age: float = 0.0) -> dict[str, str]:
    stamp = str(int(time.time() - age))
    return {
        "X-Signature-Ed25519": key.sign(stamp.encode() + body).signature.hex(),
        "X-Signature-Timestamp": stamp,
        "Content-Type": "application/json",
    }


async def post(chat: Chat, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{chat.chat_url}/discord", data=body, headers=headers) as answer:
            text = await answer.text()
            return answer.status, (json.loads(text) if text.startswith("{") else text)


async def test_a_bad_signature_gets_401_and_a_good_one_approves(chat: Chat):
    wake, hook, key = chat.wake, chat.discord, chat.discord_key
    # Discord checks the endpoint with a signed PING
    ping = interaction(1)
    assert await post(chat, ping, signed(ping, key)) == (200, {"type": 1})
    # Given a manual app approved by Ana on Discord
    repo = wake.repository(APP)
    first_commit(repo, namespace=APP)
    start = await wake.position()
    await wake.wake(
        "app", "add", APP, "--repo", repo.url, "--path", APP_PATH, "--namespace", APP,
        "--manual", "--approver", f"discord:{ANA_ID}",
    )  # fmt: skip
    asked = await wake.next_event(APP, "ApprovalRequested", after=start)
    assert isinstance(asked.event.payload, ApprovalRequested)
    plan = asked.event.payload.plan_id

    # Then its journey is embeds, the approval request with buttons, the first message edited
    def buttons() -> list[dict[str, Any]]:
        return [
            b
            for row in (m.get("components", []) for m in hook.executed())
            for r in row
            for b in r["components"]
        ]

    await eventually(lambda: bool(buttons()), timeout=30)
    assert [(b["label"], b["custom_id"]) for b in buttons()] == [
        ("Approve", f"wake_approve:{plan}"),
        ("Reject", f"wake_reject:{plan}"),
    ]
    opening = hook.calls[0][1]
    assert APP in hook.executed()[0]["embeds"][0]["title"]
    await eventually(lambda: bool(hook.edited(opening)), timeout=30)

    # When a click on Approve arrives signed with another key, or tampered with
    before = await wake.position()
    click = interaction(3, {"component_type": 2, "custom_id": f"wake_approve:{plan}"})
    assert (await post(chat, click, signed(click, SigningKey.generate())))[0] == 401
    tampered = click.replace(ANA_ID.encode(), b"80351110224678913")
    assert (await post(chat, tampered, signed(click, key)))[0] == 401
    assert (await post(chat, click, signed(click, key, age=600)))[0] == 401
    # ... and then signed with the application's key
    good = signed(click, key)
    status, answer = await post(chat, click, good)
    assert (await post(chat, click, good))[0] == 401  # replayed
    # Then that one approves, as Ana of Discord, and is answered in the channel
    assert status == 200 and answer["type"] == 4
    assert f"approved by Ana (discord:{ANA_ID})" in answer["data"]["content"]
    await wake.next_event(
        APP, "ApplySucceeded", after=before, where=lambda s: s.event.payload.plan_id == plan
    )
    approvals = [
        s.event for s in await wake.events(APP, after=before) if s.event.type == "PlanApproved"
    ]
    assert [a.actor for a in approvals] == [f"discord:{ANA_ID}"]
    assert isinstance(approvals[0].payload, PlanApproved)
    assert approvals[0].payload.display_name == "Ana"
    [replay] = [
        s.event.payload
        for s in await wake.events(APP, after=before)
        if s.event.type == "ChatCommandRefused"
    ]
    assert "replayed" in replay.reason
    # ... and `/wake command:status ...` answers
    command = interaction(
        2,
        {
            "name": "wake",
            "type": 1,
            "options": [{"name": "command", "type": 3, "value": f"status {APP}"}],
        },
    )
    status, answer = await post(chat, command, signed(command, key))
    assert status == 200 and "applied" in answer["data"]["content"]
    assert hook.violations == []
