"""The follower on real NATS: folds once, then follows; `at_least` never answers stale."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events import new_event
from events.envelope import Envelope
from events.payloads import HealthChanged, RevisionDetected
from services.catalog.following import Follower, FollowerBehind
from services.wiring.eventlog import EventLog


def detected(n: int) -> RevisionDetected:
    return RevisionDetected(
        repo_url="/r", ref="main", commit=f"{n:040x}", committed_at=datetime(2026, 1, 1, tzinfo=UTC)
    )


def remember(state: list[tuple[int, str]], seq: int, event: Envelope) -> None:
    state.append((seq, event.payload.commit))


async def test_a_follower_folds_history_once_then_follows_and_waits_for_a_sequence(
    event_log: EventLog,
) -> None:
    # Given history of two apps, and events of a type the follower does not follow
    for n in range(3):
        await event_log.append(new_event(detected(n), app="shop", actor="t"))
        await event_log.append(new_event(HealthChanged(status="Healthy"), app="shop", actor="t"))
    await event_log.append(new_event(detected(9), app="web", actor="t"))
    follower: Follower[list[tuple[int, str]]] = Follower(
        event_log, [RevisionDetected.event_type], new_state=list, fold=remember
    )
    async with follower:
        # When a handler asks for the state at least up to the last event
        last = await event_log.append(new_event(detected(3), app="shop", actor="t"))
        shop = await follower.at_least(last.seq, "shop")
        # Then it has every followed event of the app up to it, in log order, once
        assert [commit[-1] for _, commit in shop] == ["0", "1", "2", "3"]
        assert [seq for seq, _ in shop] == sorted(seq for seq, _ in shop)
        assert [c[-1] for _, c in await follower.at_least(last.seq, "web")] == ["9"]
        # And later events are followed, not re-read
        later = await event_log.append(new_event(detected(4), app="shop", actor="t"))
        shop = await follower.at_least(later.seq, "shop")
        assert [commit[-1] for _, commit in shop] == ["0", "1", "2", "3", "4"]
        assert follower.reached == later.seq


async def test_a_passing_type_moves_the_position_without_being_folded(
    event_log: EventLog,
) -> None:
    follower: Follower[list[tuple[int, str]]] = Follower(
        event_log,
        [RevisionDetected.event_type],
        new_state=list,
        fold=remember,
        passing=[HealthChanged.event_type],
    )
    async with follower:
        await event_log.append(new_event(detected(1), app="shop", actor="t"))
        health = await event_log.append(
            new_event(HealthChanged(status="Healthy"), app="shop", actor="t")
        )
        shop = await follower.at_least(health.seq, "shop")
        assert [commit[-1] for _, commit in shop] == ["1"]
        assert follower.reached == health.seq


async def test_a_follower_whose_consumer_vanished_reads_again_from_where_it_stopped(
    event_log: EventLog,
) -> None:
    # Given a follower that has folded one event
    first = await event_log.append(new_event(detected(1), app="shop", actor="t"))
    follower: Follower[list[tuple[int, str]]] = Follower(
        event_log, [RevisionDetected.event_type], new_state=list, fold=remember
    )
    async with follower:
        await follower.at_least(first.seq, "shop")
        # When its push consumer disappears (as after a NATS restart) and more is appended
        for info in await event_log.js.consumers_info("WAKE_EVENTS"):
            await event_log.js.delete_consumer("WAKE_EVENTS", info.name)
        later = await event_log.append(new_event(detected(2), app="shop", actor="t"))
        # Then a handler waiting for it gives up once, and the follower reads on
        with pytest.raises(FollowerBehind):
            await follower.at_least(later.seq, "shop", timeout=1.0)
        shop = await follower.at_least(later.seq, "shop", timeout=10.0)
        assert [commit[-1] for _, commit in shop] == ["1", "2"]
