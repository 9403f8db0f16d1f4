"""Issue 12's last "Done when" line: no token or signing secret appears in any event, log
line or message body, whatever went through the chat channels."""

from __future__ import annotations

import json

from tests.chat import test_discord, test_slack
from tests.chat.world import Chat, assert_no_secret
from tests.waiting import eventually


async def test_no_token_or_signing_secret_in_any_event_log_line_or_message(chat: Chat):
    # Given a command through each platform, each refused (and a reason written down)
    before = await chat.wake.position()
    await chat.bob.say(chat.room, "!wake status chat-nowhere")
    body = test_slack.slash("status slack-nowhere", user="U0BOB", name="bob", channel="C0WAKE")
    headers = test_slack.signed(body, secret=chat.slack_signing_secret)
    assert (await test_slack.post(chat, body, headers))[0] == 200
    command = test_discord.interaction(
        2,
        {"name": "wake", "options": [{"name": "command", "value": "sync discord-nowhere"}]},
    )
    status, answer = await test_discord.post(
        chat, command, test_discord.signed(command, chat.discord_key)
    )
    assert status == 200 and "no application 'discord-nowhere'" in answer["data"]["content"]
    await chat.wake_says(None, "refused: no application 'chat-nowhere'")

    async def all_refused() -> bool:
        events = await chat.wake.events("_wake", after=before)
        return len([s for s in events if s.event.type == "ChatCommandRefused"]) == 3

    await eventually(all_refused, timeout=30)
    # Then no secret is in the log, the services' logs, or anything sent to a platform
    sent = [
        *(c.body for c in chat.slack.calls),
        *(body for _, _, body in chat.discord.calls),
        *chat.teams.messages,
        *chat.mattermost.posts.values(),
        *(body for _, body in chat.mattermost.patches),
        *await chat.said_by_wake(),
        answer,
    ]
    await assert_no_secret(chat, json.loads(json.dumps(sent)))
