"""A three-node JetStream cluster on loopback: the log survives the loss of a node.

Real nats-server processes from the wheel, as `wake infra up --nats-cluster 3`
and `wake up --nats-cluster 3` run them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest

from events import new_event
from events.names import BUNDLES, STREAM
from events.payloads import SyncRequested
from services.wiring.credentials import load_connect_kwargs
from services.wiring.embedded_nats import EmbeddedNatsCluster, start_nats_cluster
from services.wiring.eventlog import EventLog, nats_servers, provision
from services.wiring.infra import ENDPOINTS_FILE, InfraNotRunning, load_endpoints
from tests.signing import trusting
from tests.waiting import eventually, process_gone

WAKE = str(Path(sys.executable).with_name("wake"))


@pytest.fixture
async def cluster(tmp_path: Path):
    running = await start_nats_cluster(tmp_path / "data", nodes=3)
    try:
        yield running
    finally:
        await running.stop()


async def append_until_stored(log: EventLog, event) -> None:
    """Append `event`, retrying while the cluster elects a new leader.

    Retrying the same event is safe: JetStream stores an event id once.
    """
    async with asyncio.timeout(30):
        while True:
            try:
                await log.append(event)
                return
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
                await asyncio.sleep(0.1)


async def test_the_log_is_replicated_on_three_nodes_and_survives_the_loss_of_one(
    cluster: EmbeddedNatsCluster,
) -> None:
    # Given the log provisioned with three replicas
    bootstrap = await EventLog.connect(cluster.url, name="bootstrap")
    await provision(bootstrap.nc, replicas=3)
    info = await bootstrap.js.stream_info(STREAM)
    assert info.config.num_replicas == 3
    assert len(info.cluster.replicas) == 2
    bundles = await bootstrap.js.stream_info(f"OBJ_{BUNDLES}")
    assert bundles.config.num_replicas == 3
    # (server names are wake-n<i>, i counting from 1)
    leader = cluster.nodes[int(info.cluster.leader.removeprefix("wake-n")) - 1]
    await bootstrap.close()
    # and a client connected to the stream leader's node first, knowing every node
    others = [n.url for n in cluster.nodes if n is not leader]
    nc = await nats.connect(
        servers=[leader.url, *others],
        dont_randomize=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
    )
    log = trusting(EventLog(nc))
    events = [new_event(SyncRequested(), app=f"app{i % 4}", actor="user:test") for i in range(40)]
    try:
        for event in events[:20]:
            await log.append(event)
        # When the leader's node is SIGKILLed
        os.kill(leader.pid, signal.SIGKILL)
        await eventually(lambda: process_gone(leader.pid), what="the leader node gone")
        # Then appends go on through another node, once a new leader is elected
        for event in events[20:]:
            await append_until_stored(log, event)
        assert nc.connected_url is not None and nc.connected_url.port != _url_port(leader.url)
        # and every event is there once, in order
        stored = [s.event.event_id async for s in log.read() if s.event.app != "_wake"]
        assert stored == [e.event_id for e in events]
        # When the node is started again
        await leader.restart()

        # Then it catches up and the stream has three current replicas again
        async def all_current() -> bool:
            state = await log.js.stream_info(STREAM)
            peers = state.cluster.replicas or []
            return len(peers) == 2 and all(p.current and not p.offline for p in peers)

        await eventually(all_current, timeout=30, what="every replica current")
        after = await log.js.stream_info(STREAM)
        assert after.state.messages == 40 + 1  # and the key of user:test, registered
    finally:
        await log.close()


async def test_a_read_made_while_the_cluster_has_no_leader_waits_for_one(
    cluster: EmbeddedNatsCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the log replicated on three nodes, holding events
    bootstrap = trusting(await EventLog.connect(cluster.url, name="bootstrap"))
    await provision(bootstrap.nc, replicas=3)
    events = [new_event(SyncRequested(), app=f"app{i % 4}", actor="user:test") for i in range(10)]
    await bootstrap.append_many(events)
    await bootstrap.close()
    # and a client connected to the first node, knowing every node
    nc = await nats.connect(
        servers=[n.url for n in cluster.nodes],
        dont_randomize=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
    )
    log = trusting(EventLog(nc, timeout=2.0))
    down = cluster.nodes[1:]
    try:
        # When two of the three nodes are SIGKILLed: no quorum, no leader
        for node in down:
            os.kill(node.pid, signal.SIGKILL)
        for node in down:
            await eventually(lambda node=node: process_gone(node.pid), what="the node gone")
        # and a read is made meanwhile
        caplog.set_level("INFO", logger="services.wiring.eventlog")

        async def read_all() -> list[str]:
            return [s.event.event_id async for s in log.read(subjects=["wake.evt.*.SyncRequested"])]

        reading = asyncio.create_task(read_all())
        # Then it asks again rather than fail (evidence: it said so, and is not done)
        await eventually(
            lambda: any("asking again" in r.getMessage() for r in caplog.records),
            timeout=30,
            what="the read asking again",
        )
        assert not reading.done()
        # and once a node is back and a leader elected, it reads every event, in order
        await down[0].restart()
        stored = await asyncio.wait_for(reading, timeout=60)
        assert stored == [e.event_id for e in events]
    finally:
        await log.close()


def _url_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def test_wake_infra_up_runs_a_three_node_cluster_and_publishes_every_node(
    tmp_path: Path,
) -> None:
    # Given `wake infra up --nats-cluster 3`
    data_dir = tmp_path / "wake"
    process = await asyncio.create_subprocess_exec(
        WAKE, "infra", "up", "--nats-cluster", "3", "--data-dir", str(data_dir),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:

        def published() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"wake infra up exited with {process.returncode}")
            try:
                load_endpoints(data_dir)
            except InfraNotRunning:
                return False
            return True

        waiter = asyncio.create_task(process.wait())
        await eventually(published, timeout=90, what="endpoints.json published")
        endpoints = load_endpoints(data_dir)
        # Then endpoints.json names every node, in one string clients accept
        servers = nats_servers(endpoints.nats_url)
        assert len(servers) == 3 and len(endpoints.nats_pids) == 3
        assert endpoints.stream_replicas == 3
        assert all((data_dir / "nats-cluster" / f"n{i}" / "jetstream").is_dir() for i in (1, 2, 3))
        log = await EventLog.connect(
            endpoints.nats_url, name="test", credentials=load_connect_kwargs(endpoints.nats_admin)
        )
        try:
            info = await log.js.stream_info(STREAM)
            assert info.config.num_replicas == 3
            assert info.cluster.name == "wake"
        finally:
            await log.close()
        env = await asyncio.create_subprocess_exec(
            WAKE, "infra", "env", "--data-dir", str(data_dir), stdout=subprocess.PIPE
        )
        exports = (await env.communicate())[0].decode()
        assert "export WAKE_STREAM_REPLICAS=3" in exports
        assert f"export WAKE_NATS_URL={endpoints.nats_url}" in exports
        # When it gets SIGINT
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(waiter, 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # Then every node is gone and the endpoints are unpublished
    assert all(process_gone(pid) for pid in endpoints.nats_pids)
    assert not (data_dir / ENDPOINTS_FILE).exists()
