"""Mattermost: threads by root_id through a stand-in of the REST API, buttons (interactive
message actions) and `/wake`, each request checked by its token."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import aiohttp

from events.payloads import ApprovalRequested
from services.demo.sample import APP_PATH, first_commit
from tests.chat.world import Chat
from tests.waiting import eventually

APP = "mm-shop"
ANA_ID = "uana0000000000000000000001"


async def post(chat: Chat, body: bytes | str, content_type: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{chat.chat_url}/mattermost", data=body, headers={"Content-Type": content_type}
        ) as answer:
            text = await answer.text()
            return answer.status, (json.loads(text) if text.startswith("{") else text)


async def test_a_button_with_wake_s_token_approves_and_a_forged_or_replayed_one_does_not(
    chat: Chat,
):
    wake, mm = chat.wake, chat.mattermost
    # Given a manual app approved by ana on Mattermost
    repo = wake.repository(APP)
    first_commit(repo, namespace=APP)
    start = await wake.position()
    await wake.wake(
        "app", "add", APP, "--repo", repo.url, "--path", APP_PATH, "--namespace", APP,
        "--manual", "--approver", "mattermost:ana",
    )  # fmt: skip
    asked = await wake.next_event(APP, "ApprovalRequested", after=start)
    assert isinstance(asked.event.payload, ApprovalRequested)
    plan = asked.event.payload.plan_id

    # Then the approval request is a reply in the journey's thread, with buttons
    def with_buttons() -> list[dict[str, Any]]:
        return [
            p
            for p in mm.posts.values()
            for a in p["props"]["attachments"]
            if any(b["integration"]["context"]["plan"] == plan for b in a.get("actions", []))
        ]

    await eventually(lambda: bool(with_buttons()), timeout=30)
    [request] = with_buttons()
    root = request["root_id"]
    assert APP in mm.posts[root]["props"]["attachments"][0]["text"]
    await eventually(lambda: any(pid == root for pid, _ in mm.patches), timeout=30)
    [approve, _reject] = request["props"]["attachments"][0]["actions"]
    assert approve["integration"]["url"] == f"{chat.chat_url}/mattermost"
    context = approve["integration"]["context"]
    assert chat.mattermost_action_token not in json.dumps(request)

    # When Mattermost calls back: a forged token, then Wake's own, then the same again
    def click(token: str, trigger: str) -> bytes:
        return json.dumps(
            {
                "user_id": ANA_ID,
                "channel_id": mm.channel_id,
                "post_id": request["id"],
                "trigger_id": trigger,
                "type": "",
                "context": {**context, "token": token},
            }
        ).encode()

    before = await wake.position()
    assert (await post(chat, click("0" * 64, "t1"), "application/json"))[0] == 401
    status, answer = await post(chat, click(context["token"], "t2"), "application/json")
    assert status == 200 and "approved by ana (mattermost:ana)" in answer["ephemeral_text"]
    assert (await post(chat, click(context["token"], "t2"), "application/json"))[0] == 401
    # Then the plan is applied, approved by ana of Mattermost (her name looked up by id)
    await wake.next_event(
        APP, "ApplySucceeded", after=before, where=lambda s: s.event.payload.plan_id == plan
    )
    approvals = [
        s.event for s in await wake.events(APP, after=before) if s.event.type == "PlanApproved"
    ]
    assert [a.actor for a in approvals] == ["mattermost:ana"]
    assert any(r == root and "approved by ana" in t for r, t in mm.texts())

    # And `/wake` answers only with the slash command's token
    def slash(token: str) -> str:
        return urlencode(
            {
                "token": token,
                "channel_id": mm.channel_id,
                "user_id": ANA_ID,
                "user_name": "ana",
                "command": "/wake",
                "text": f"status {APP}",
                "trigger_id": f"slash-{time.time()}",
            }
        )

    form = "application/x-www-form-urlencoded"
    assert (await post(chat, slash("not-the-token"), form))[0] == 401
    status, answer = await post(chat, slash(chat.mattermost_slash_token), form)
    assert status == 200 and "applied" in answer["text"]
    assert mm.violations == []
