"""The projector, `wake replay --verify`, `wake state --at` and `wake history`
against real NATS and PostgreSQL, the CLI run as processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from events.bundle import Bundle, encode_bundle
from services.projector import store
from services.projector.service import main as projector_main
from services.wiring.eventlog import EventLog
from services.wiring.runtime import ServiceContext
from services.wiring.settings import Settings
from tests.projector.conftest import Cli, append_all, caught_up, live_position
from tests.projector.synthetic import BLOCKING_ERROR, History, random_history
from tests.waiting import eventually

REPLAY = "replay"
STATE = "state"
HISTORY = "history"


@contextlib.asynccontextmanager
async def projector(event_log: EventLog, database_url: str) -> AsyncIterator[None]:
    """The projector's main(ctx), in this process, until the block ends."""
    ctx = ServiceContext(
        name="projector", settings=Settings(database_url=database_url), log=event_log
    )
    task = asyncio.create_task(projector_main(ctx))
    try:
        yield
    finally:
        ctx.stop.set()
        await asyncio.wait_for(task, timeout=30)


def digest_lines(output: str) -> dict[str, str]:
    verdicts = {}
    for line in output.splitlines():
        words = line.split()
        if words and words[-1] in ("equal", "DIFFERENT"):
            verdicts[words[0]] = words[-1]
    return verdicts


async def test_replay_verify_reports_every_digest_equal_after_a_random_history(
    event_log: EventLog, cli: Cli
):
    # Given a long random history over many apps, folded by the live projector
    history = random_history(11, apps=8, journeys=150)
    last = await append_all(event_log, history.events)
    async with projector(event_log, cli.database_url):
        await caught_up(cli.database_url, last)

    # When it is replayed with --verify
    result = await cli.command(REPLAY, "--verify")

    # Then every read model's digest equals the live one
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = digest_lines(result.stdout)
    assert verdicts == dict.fromkeys(store.READ_MODELS, "equal"), result.stdout
    assert f"replayed {last:,} events" in result.stdout

    # And a live row that disagrees with the log is caught, naming its read model
    conn = await asyncpg.connect(cli.database_url)
    try:
        await conn.execute("UPDATE wake.plans SET status = 'applied' WHERE status = 'rejected'")
    finally:
        await conn.close()
    result = await cli.command(REPLAY, "--verify")
    assert result.returncode != 0
    assert digest_lines(result.stdout)["plans"] == "DIFFERENT"
    assert digest_lines(result.stdout)["events"] == "equal"


async def test_a_projector_killed_mid_batch_resumes_without_a_row_twice_or_missing(
    event_log: EventLog, cli: Cli, tmp_path: Path
):
    # Given a projector process folding a long history as it is appended
    history = random_history(23, apps=10, journeys=1500)
    process = await cli.start_projector(tmp_path / "projector.log")
    try:
        last = await append_all(event_log, history.events)

        # When it is SIGKILLed in the middle of the log
        async def midway() -> bool:
            return await live_position(cli.database_url) > 0

        await eventually(midway, timeout=30, what="the projector committed a first batch")
        process.send_signal(signal.SIGKILL)
        await process.wait()
        killed_at = await live_position(cli.database_url)
        assert 0 < killed_at < last, "the kill should land before the end of the log"

        # Then what was committed is consistent: rows and position of the same batches
        conn = await asyncpg.connect(cli.database_url)
        try:
            count, top = await conn.fetchrow("SELECT count(*), max(seq) FROM wake.events")
            assert (count, top) == (killed_at, killed_at)
        finally:
            await conn.close()

        # And after a restart it catches up
        process = await cli.start_projector(tmp_path / "projector.log")
        await caught_up(cli.database_url, last)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=15)

    # With no row twice and none missing, equal to a fresh replay
    conn = await asyncpg.connect(cli.database_url)
    try:
        count, distinct = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT event_id) FROM wake.events"
        )
        assert count == distinct == last
    finally:
        await conn.close()
    result = await cli.command(REPLAY, "--verify", "--into", "after_kill")
    assert result.returncode == 0, result.stdout + result.stderr
    assert digest_lines(result.stdout) == dict.fromkeys(store.READ_MODELS, "equal")


async def test_state_at_a_moment_between_two_applies_shows_the_earlier_one(
    event_log: EventLog, cli: Cli
):
    # Given two applied revisions whose bundles are in the object store
    history = History(rng=__import__("random").Random(3))
    history.register("shop")
    digests = []
    for version in ("1.0", "2.0"):
        bundle = Bundle(
            app="shop",
            repo_url="https://git.example.com/shop.git",
            commit="0" * 40,
            path="apps/shop",
            renderer="yaml",
            resources=[
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": f"web-{version}", "namespace": "shop"},
                }
            ],
        )
        digests.append(await event_log.put_bundle(encode_bundle(bundle)))
    history.revision("shop", approve="policy", apply_ok=True, bundle=digests[0])
    first, between = history.applied["shop"][0], history.now + timedelta(seconds=1)
    history.now = between + timedelta(seconds=60)
    history.revision("shop", approve="policy", apply_ok=True, bundle=digests[1])
    await append_all(event_log, history.events)

    # When the state is asked for a moment between the two applies
    result = await cli.command(STATE, "shop", "--at", between.isoformat(), "--json")

    # Then it shows the first apply, with its bundle's resources
    assert result.returncode == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["applied"]["apply_id"] == first.apply_id
    assert state["applied"]["commit"] == first.commit
    assert state["bundle_resources"] == ["Deployment shop/web-1.0"]
    assert state["desired"]["bundle_digest"] == digests[0]

    text = await cli.command(STATE, "shop", "--at", between.isoformat())
    assert "Deployment shop/web-1.0" in text.stdout and first.commit[:12] in text.stdout

    # And after both, the second
    later = await cli.command(STATE, "shop", "--at", history.now.isoformat(), "--json")
    assert json.loads(later.stdout)["bundle_resources"] == ["Deployment shop/web-2.0"]


async def test_history_shows_journeys_newest_first_with_approvals_and_the_rollback(
    event_log: EventLog, cli: Cli
):
    # Given: an approved journey, a rejected one, another applied, then a rollback
    history = History(rng=__import__("random").Random(5))
    history.register("shop")
    history.revision("shop", approve="approve", apply_ok=True)
    history.revision("shop", approve="reject")
    history.revision("shop", approve="policy", apply_ok=True)
    assert history.rollback("shop")
    last = await append_all(event_log, history.events)
    async with projector(event_log, cli.database_url):
        await caught_up(cli.database_url, last)

    # When
    result = await cli.command(HISTORY, "shop", "--json")

    # Then
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["result"] for e in entries] == ["applied", "applied", "rejected", "applied"]
    assert [e["rollback"] for e in entries] == [True, False, False, False]
    rollback, second, rejected, first = entries
    assert rollback["commit"] == first["commit"]
    assert rollback["rollback_of"] == first["apply_id"]
    assert [d["decision"] for d in first["decisions"]] == ["approved"]
    assert first["decisions"][0]["actor"].startswith(("user:", "chat:"))
    assert rejected["decisions"][0]["decision"] == "rejected"
    assert second["decisions"][0]["via"] == "policy"
    assert first["author"] and first["message"].startswith("shop: change")

    text = await cli.command(HISTORY, "shop", "--limit", "2")
    assert "[ROLLBACK" in text.stdout.splitlines()[0]
    assert text.stdout.count("plan ") == 2


async def test_a_blocked_plan_is_blocked_in_the_read_models_and_in_history(
    event_log: EventLog, cli: Cli
):
    # Given an applied revision, then one whose plan was blocked
    history = History(rng=__import__("random").Random(8))
    history.register("shop")
    history.revision("shop", approve="policy", apply_ok=True)
    history.revision("shop", approve="blocked")
    last = await append_all(event_log, history.events)
    async with projector(event_log, cli.database_url):
        await caught_up(cli.database_url, last)

    # When the history is asked for
    result = await cli.command(HISTORY, "shop", "--json")

    # Then the newest journey is blocked, saying why
    assert result.returncode == 0, result.stderr
    blocked, applied = [json.loads(line) for line in result.stdout.splitlines()]
    assert (blocked["result"], blocked["plan_status"]) == ("blocked", "blocked")
    assert blocked["error"].endswith(f": {BLOCKING_ERROR}")
    assert applied["result"] == "applied"
    # and the app is out of sync, not synced at the older revision
    conn = await asyncpg.connect(cli.database_url)
    try:
        state = await conn.fetchval("SELECT sync_state FROM wake.applications WHERE app = 'shop'")
    finally:
        await conn.close()
    assert state == "OutOfSync"
    # and a replay folds it the same
    verified = await cli.command(REPLAY, "--verify")
    assert digest_lines(verified.stdout) == dict.fromkeys(store.READ_MODELS, "equal")


@pytest.mark.parametrize("until_kind", ["seq", "time"])
async def test_replay_until_stops_at_that_moment(event_log: EventLog, cli: Cli, until_kind: str):
    history = random_history(2, apps=3, journeys=20)
    await append_all(event_log, history.events)
    seqs = {s.event.event_id: s.seq async for s in event_log.read()}
    if until_kind == "seq":
        cut = 40
        until = str(cut)
    else:
        # (the keys that signed the history were registered before it, dated before it)
        cut = seqs[history.events[39].event_id]
        until = history.events[39].occurred_at.isoformat()
    result = await cli.command(REPLAY, "--until", until, "--into", "until_test")
    assert result.returncode == 0, result.stderr
    conn = await asyncpg.connect(cli.database_url)
    try:
        assert await conn.fetchval("SELECT max(seq) FROM until_test.events") == cut
        assert await store.position(conn, store.schema_name("until_test")) == cut
    finally:
        await conn.close()


async def test_two_projectors_on_the_same_read_models_fold_each_event_once(
    event_log: EventLog, cli: Cli
):
    # Given two replicas of the projector on one database
    history = random_history(31, apps=5, journeys=300)
    async with projector(event_log, cli.database_url), projector(event_log, cli.database_url):
        # When the log grows under both
        last = await append_all(event_log, history.events)
        await caught_up(cli.database_url, last)

    # Then each event is in the index once and every read model equals a replay
    conn = await asyncpg.connect(cli.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM wake.events") == last
    finally:
        await conn.close()
    result = await cli.command(REPLAY, "--verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert digest_lines(result.stdout) == dict.fromkeys(store.READ_MODELS, "equal")
