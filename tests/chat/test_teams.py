"""Microsoft Teams: an Adaptive Card per event through a Workflows webhook."""

from __future__ import annotations

from services.demo.sample import APP_PATH, first_commit
from tests.chat.world import Chat
from tests.waiting import eventually

APP = "teams-shop"


async def test_a_journey_reaches_teams_as_adaptive_cards(chat: Chat):
    wake, teams = chat.wake, chat.teams
    # Given an auto-sync app routed to the Teams channel
    repo = wake.repository(APP)
    commit = first_commit(repo, namespace=APP)
    start = await wake.position()
    await wake.wake(
        "app", "add", APP, "--repo", repo.url, "--path", APP_PATH, "--namespace", APP
    )  # fmt: skip
    # When its commit is applied
    await wake.next_event(APP, "ApplySucceeded", after=start)
    # Then the channel got a card for the detection and one for the apply, recorded as sent
    await eventually(lambda: any(f"applied {commit[:7]}" in t for t in teams.texts()), timeout=30)
    assert any(f"commit {commit[:7]}" in t for t in teams.texts())
    assert teams.violations == []
    sent = await wake.next_event(
        APP, "NotificationSent", after=start, where=lambda s: s.event.payload.channel == "ops-teams"
    )
    assert sent.event.payload.message_id == ""  # a Workflows webhook gives no message id
    # and `wake notify test` prints the flow's answer
    tested = await wake.wake("notify", "test", "ops-teams", env=chat.env)
    assert tested.stdout.startswith('ops-teams (teams) answered: {"status": 202')
