"""ChatOps on Matrix, end to end (issue 12, first "Done when" line): a real Synapse,
`wake up --sandbox` with a Matrix channel, and people typing `!wake` commands in its room."""

from __future__ import annotations

import json
import os
import signal

from events.payloads import (
    ApplySucceeded,
    ApprovalRequested,
    ChatCommandRefused,
    NotificationSent,
    PlanApproved,
    RollbackRequested,
)
from services.demo.sample import APP_PATH, first_commit, second_commit
from tests.chat.world import ANA, BOB, Chat, thread_of
from tests.waiting import eventually

APP = "chat-shop"


async def approval_asked(chat: Chat, after: int) -> tuple[str, str]:
    """The plan awaiting approval after `after`, and its journey's thread (root event id)."""
    asked = await chat.wake.next_event(APP, "ApprovalRequested", after=after)
    assert isinstance(asked.event.payload, ApprovalRequested)
    plan = asked.event.payload.plan_id
    found: list[str] = []

    async def hinted() -> bool:
        found[:] = [
            thread_of(m)
            for m in await chat.said_by_wake()
            if f"!wake approve {plan[:8]}" in m["content"].get("body", "")
        ]
        return bool(found)

    await eventually(hinted, timeout=30)
    assert found[0], "the approval request is not in a thread"
    return plan, found[0]


async def test_a_journey_is_one_thread_approved_refused_and_rolled_back_from_matrix(chat: Chat):
    wake = chat.wake
    # Given a manual app whose approvers are the group release-managers (Ana)
    repo = wake.repository(APP)
    first = first_commit(repo, namespace=APP)
    start = await wake.position()
    await wake.wake(
        "app", "add", APP, "--repo", repo.url, "--path", APP_PATH, "--namespace", APP,
        "--manual", "--approver", "group:release-managers",
    )  # fmt: skip
    # When its first commit is planned, the journey opens a thread in the room
    plan, root = await approval_asked(chat, start)
    [opening] = [m for m in await chat.said_by_wake() if m["event_id"] == root]
    assert APP in opening["content"]["body"] and "formatted_body" in opening["content"]
    assert opening["content"]["format"] == "org.matrix.custom.html"
    await chat.wake_says(root, f"plan {plan[:8]} for {first[:7]}")

    # ... and a notifier restarted meanwhile continues that thread
    notifier = wake.running.services["notifier"]
    log_file = wake.root / "logs" / "notifier.log"
    following = log_file.read_text().count("for commands from now on")
    os.kill(notifier.pid, signal.SIGKILL)
    await eventually(
        lambda: log_file.read_text().count("for commands from now on") > following, timeout=60
    )

    # When Bob, who is no approver, approves in the thread
    before = await wake.position()
    await chat.bob.say(chat.room, f"!wake approve {plan[:8]}", thread_root=root)
    # Then he is refused, on the record and in the thread
    refused = await wake.next_event(APP, "ChatCommandRefused", after=before)
    assert isinstance(refused.event.payload, ChatCommandRefused)
    assert refused.event.payload.requester == BOB
    assert refused.event.payload.plan_id == plan
    assert "may not approve" in refused.event.payload.reason
    await chat.wake_says(root, "refused", BOB)

    # When Ana, of release-managers, approves by a prefix of the plan id
    said = await chat.ana.say(chat.room, f"!wake approve {plan[:10]}", thread_root=root)
    # Then the plan is applied, approved by her as Matrix knows her
    applied = await wake.next_event(
        APP, "ApplySucceeded", after=before, where=lambda s: s.event.payload.plan_id == plan
    )
    approvals = [
        s.event for s in await wake.events(APP, after=before) if s.event.type == "PlanApproved"
    ]
    assert [a.actor for a in approvals] == [ANA]
    approval = approvals[0].payload
    assert isinstance(approval, PlanApproved)
    assert (approval.via, approval.display_name, approval.channel, approval.message_ref) == (
        "chat",
        "Ana",
        "team",
        said,
    )
    assert not [s for s in await wake.events(APP, after=before) if s.event.type == "PlanRejected"]

    # ... and `wake history` names her
    async def history_names_ana() -> bool:
        lines = (await wake.wake("history", APP, "--json")).stdout.splitlines()
        journeys = [j for j in map(json.loads, lines) if j["plan_id"] == plan]
        decided = [(d["decision"], d["actor"], d["via"]) for j in journeys for d in j["decisions"]]
        return decided == [("approved", ANA, "chat")]

    # (the history is the projector's: it may be a moment behind the log)
    await eventually(history_names_ana, timeout=30)
    # ... and the whole journey is one thread, its first message edited to say it is applied
    await chat.wake_says(root, f"applied {first[:7]}")
    await chat.wake_says(root, "approved", "Ana")

    async def opening_says_applied() -> bool:
        edits = [
            m
            for m in await chat.said_by_wake()
            if (m["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"
            and m["content"]["m.relates_to"]["event_id"] == root
        ]
        return bool(edits) and "applied" in edits[-1]["content"]["m.new_content"]["body"]

    await eventually(opening_says_applied, timeout=30)
    records = [
        s.event
        for s in await wake.events(APP, after=start)
        if s.event.type == "NotificationSent"
        and s.event.correlation_id == applied.event.correlation_id
        and s.event.payload.channel == "team"
    ]
    assert {r.payload.about_type for r in records} >= {
        "RevisionDetected",
        "PlanCreated",
        "ApprovalRequested",
        "PlanApproved",
        "ApprovalAccepted",
        "ApplySucceeded",
    }
    assert all(isinstance(r.payload, NotificationSent) for r in records)
    assert {r.payload.thread_id for r in records} == {root}

    # Given a second commit, applied on Ana's word
    second = second_commit(repo)
    before = await wake.position()
    await wake.wake("sync", APP)
    plan2, root2 = await approval_asked(chat, before)
    assert root2 != root
    await chat.ana.say(chat.room, f"!wake approve {plan2}", thread_root=root2)
    await wake.next_event(
        APP, "ApplySucceeded", after=before, where=lambda s: s.event.payload.commit == second
    )
    # When Ana asks, in the room, for a rollback to the first commit
    before = await wake.position()
    await chat.ana.say(chat.room, f"!wake rollback {APP} {first[:7]}")
    requested = await wake.next_event(APP, "RollbackRequested", after=before)
    assert requested.event.actor == ANA
    assert isinstance(requested.event.payload, RollbackRequested)
    assert requested.event.payload.commit == first
    # Then the rollback's plan (a manual app's: approved by her too) puts the first commit back
    plan3, root3 = await approval_asked(chat, before)
    await chat.wake_says(None, f"rollback of {APP} to {first[:7]}", "requested by Ana")
    await chat.ana.say(chat.room, f"!wake approve {plan3[:8]}", thread_root=root3)
    back = await wake.next_event(APP, "ApplySucceeded", after=before)
    assert isinstance(back.event.payload, ApplySucceeded)
    assert back.event.payload.commit == first and back.event.payload.rollback_of
    # ... and `status` answers anyone
    await chat.bob.say(chat.room, f"!wake status {APP}", thread_root=root3)
    await chat.wake_says(root3, f"applied {first[:7]}", "latest plan")


async def test_commands_that_cannot_be_carried_out_are_refused_and_recorded(chat: Chat):
    wake = chat.wake
    before = await wake.position()
    # An unknown plan, an app nobody registered, a command Wake does not know
    await chat.ana.say(chat.room, "!wake approve 0123456789abcdef")
    await chat.ana.say(chat.room, "!wake sync chat-nowhere")
    await chat.bob.say(chat.room, "!wake deploy everything")

    async def refused() -> list[ChatCommandRefused]:
        return [
            s.event.payload
            for s in await wake.events("_wake", after=before)
            if isinstance(s.event.payload, ChatCommandRefused)
        ]

    async def three() -> bool:
        return len(await refused()) == 3

    await eventually(three, timeout=30)
    reasons = {r.command.split()[0]: r.reason for r in await refused()}
    assert "unknown plan" in reasons["approve"]
    assert "no application 'chat-nowhere'" in reasons["sync"]
    assert "not understood" in reasons["!wake"]
