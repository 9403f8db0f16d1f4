"""What Wake sends each platform and reads back from it: pure, no servers."""

from __future__ import annotations

import json

import pytest

from events import new_event
from events.payloads import ApprovalRequested
from services.notifier import discord_messages, matrix, slack_messages
from services.notifier.journeys import ChatText, Threads, event_text, root_text


def asked():
    return new_event(
        ApprovalRequested(plan_id="01a2164a-0000-7000-8000-000000000001", summary="1 to update"),
        app="shop",
        actor="service:planner",
    )


def test_a_matrix_thread_reply_and_an_edit_have_the_spec_s_relations():
    text = ChatText("a <b>", "a &lt;b&gt;")
    reply = matrix.message(text, thread_root="$root")
    assert reply["m.relates_to"]["rel_type"] == "m.thread"
    assert reply["m.relates_to"]["m.in_reply_to"] == {"event_id": "$root"}
    edited = matrix.edit(text, original="$root")
    assert edited["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$root"}
    assert edited["m.new_content"]["formatted_body"] == "a &lt;b&gt;"


def test_only_others_new_text_messages_are_read_as_commands():
    timeline = [
        {
            "type": "m.room.message",
            "sender": "@wake:s",
            "event_id": "$1",
            "content": {"body": "!wake x"},
        },
        {"type": "m.room.member", "sender": "@ana:s", "event_id": "$2", "content": {}},
        {
            "type": "m.room.message",
            "sender": "@ana:s",
            "event_id": "$3",
            "content": {"body": "* !wake approve x", "m.relates_to": {"rel_type": "m.replace"}},
        },
        {
            "type": "m.room.message",
            "sender": "@ana:s",
            "event_id": "$4",
            "content": {
                "body": "!wake approve 01a2164a",
                "m.relates_to": {"rel_type": "m.thread", "event_id": "$root"},
            },
        },
    ]
    assert matrix.incoming(timeline, own_user="@wake:s") == [
        matrix.Incoming("$4", "@ana:s", "!wake approve 01a2164a", thread_root="$root")
    ]


def test_a_matrix_429_is_waited_out_as_asked():
    assert matrix._retry_after({"retry_after_ms": 1500}, None) == 1.5
    assert matrix._retry_after({}, "2") == 2.0
    assert matrix._retry_after({"retry_after_ms": 10**9}, None) == 60.0


def test_texts_escape_html_and_mrkdwn():
    event = new_event(
        ApprovalRequested(plan_id="p" * 36, summary="<script>&"), app="shop", actor="s"
    )
    assert "&lt;script&gt;&amp;" in event_text(event).html
    assert slack_messages.mrkdwn("<!channel> & co") == "&lt;!channel&gt; &amp; co"
    threads = Threads()
    thread = threads.opened("team", event, "$root")
    assert threads.journey_of_root("team", "$root") == (event.correlation_id, thread)
    assert root_text(event, thread).plain.startswith("Wake journey shop")


def test_slack_clicks_and_slash_commands_become_command_words():
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ANA", "name": "ana"},
        "channel": {"id": "C0WAKE"},
        "container": {"message_ts": "1.2", "thread_ts": "1.1"},
        "message": {"ts": "1.2", "thread_ts": "1.1"},
        "actions": [{"action_id": "wake_reject", "value": "01a2164a", "action_ts": "9.9"}],
    }
    click = slack_messages.slack_request({"payload": json.dumps(payload)})
    assert (click.user_id, click.text, click.thread_ts, click.message_ref) == (
        "U0ANA",
        "reject 01a2164a rejected in Slack by ana",
        "1.1",
        "1.2/9.9",
    )
    slash = slack_messages.slack_request(
        {"command": "/wake", "text": "status shop", "user_id": "U1", "trigger_id": "t"}
    )
    assert slash.slash and slash.text == "status shop"
    with pytest.raises(slack_messages.NotACommand):
        slack_messages.slack_request({"payload": json.dumps({"type": "view_submission"})})


def test_discord_interactions_become_command_words():
    member = {"user": {"id": "42", "username": "ana", "global_name": "Ana"}}
    click = discord_messages.discord_command(
        {"id": "1", "type": 3, "data": {"custom_id": "wake_approve:01a2164a"}, "member": member}
    )
    assert (click.user_id, click.user_name, click.text) == ("42", "Ana", "approve 01a2164a")
    command = discord_messages.discord_command(
        {
            "id": "2",
            "type": 2,
            "data": {"name": "wake", "options": [{"name": "command", "value": "sync shop"}]},
            "user": {"id": "43", "username": "bob"},
        }
    )
    assert (command.user_id, command.text) == ("43", "sync shop")
    with pytest.raises(discord_messages.NotACommand):
        discord_messages.discord_command({"type": 3, "data": {"custom_id": "other"}})
    body = discord_messages.event_body(asked(), Threads().opened("d", asked(), "1"), buttons=True)
    [row] = body["components"]
    assert [b["custom_id"] for b in row["components"]] == [
        "wake_approve:01a2164a-0000-7000-8000-000000000001",
        "wake_reject:01a2164a-0000-7000-8000-000000000001",
    ]
