"""`wake notify test CHANNEL`: a test message through a channel, the platform's answer printed."""

from __future__ import annotations

import json

from services.demo.sample import APP_PATH, first_commit
from services.demo.walkthrough import WEBHOOK_SECRET
from tests.chat.world import Chat


async def test_a_test_message_goes_through_each_channel_and_its_answer_is_printed(chat: Chat):
    wake = chat.wake
    # Slack: the Web API's answer
    slack = await wake.wake("notify", "test", "ops-slack", env=chat.env)
    assert slack.stdout.startswith("ops-slack (slack) answered: ")
    answer = json.loads(slack.stdout.split("answered: ", 1)[1])
    assert answer["ok"] is True and answer["channel"] == chat.slack.channel_id
    assert "Wake test message" in chat.slack.posted()[-1]["text"]
    # Matrix: the event id of the message in the room
    matrix = await wake.wake("notify", "test", "team", env=chat.env)
    sent = json.loads(matrix.stdout.split("answered: ", 1)[1])
    [said] = [m for m in await chat.said_by_wake() if m["event_id"] == sent["event_id"]]
    assert "channel team works" in said["content"]["body"]
    # Discord: the message's id
    discord = await wake.wake("notify", "test", "ops-discord", env=chat.env)
    assert json.loads(discord.stdout.split("answered: ", 1)[1])["id"]
    assert chat.discord.violations == []
    # The webhook of WAKE_NOTIFY_URL: its HTTP status
    webhook = await wake.wake(
        "notify",
        "test",
        "webhook",
        env={
            **chat.env,
            "WAKE_NOTIFY_URL": wake.receiver.url,
            "WAKE_NOTIFY_SECRET": WEBHOOK_SECRET,
        },
    )
    assert webhook.stdout.startswith("webhook (webhook) answered: HTTP 2")
    # A channel that does not exist is named, with those that do
    missing = await wake.wake("notify", "test", "nowhere", env=chat.env, check=False)
    assert missing.returncode == 1
    assert (
        "no channel 'nowhere' (channels: ops-discord, ops-mattermost, ops-slack" in missing.stderr
    )
    for output in (slack, matrix, discord, webhook, missing):
        assert not [s for s in chat.secrets if s in output.stdout + output.stderr]


async def test_an_approver_of_no_known_form_is_refused_and_cli_means_the_cli_user(chat: Chat):
    wake = chat.wake
    repo = wake.repository("cli-approvers")
    first_commit(repo, namespace="cli-approvers")
    args = ["app", "add", "cli-approvers", "--repo", repo.url, "--path", APP_PATH]
    args += ["--namespace", "cli-approvers"]
    refused = await wake.wake(*args, "--approver", "irc:bob", check=False)
    assert refused.returncode == 2
    assert "approver 'irc:bob' is not one of matrix:@user:server" in refused.stderr
    await wake.wake(*args, "--manual", "--approver", "cli:grace")
    shown = json.loads((await wake.wake("app", "show", "cli-approvers", "--json")).stdout)
    assert shown["spec"]["approvers"] == ["user:grace"]
