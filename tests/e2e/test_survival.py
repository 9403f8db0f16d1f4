"""The control plane outlives its servers: `wake up` as its users run it, servers killed under it.

Each test runs its own `wake up --sandbox` (a foreground process, as a user or
a process manager starts it) and kills NATS or PostgreSQL with SIGKILL. A
server is kept from coming back by taking its port, which is what a
conflicting process would do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import nats.errors
import psutil

from events.names import STREAM
from services.demo.sample import APP_PATH, SampleRepo, deployment_yaml, first_commit, second_commit
from services.wiring.credentials import load_connect_kwargs
from services.wiring.eventlog import EventLog, StoredEvent
from services.wiring.signing import Trust
from tests.waiting import eventually, process_gone

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"


@dataclass
class WakeUp:
    """One `wake up --sandbox` process and what it published."""

    process: subprocess.Popen[str]
    data_dir: Path
    logs: Path
    root: Path

    @property
    def endpoints(self) -> dict:
        return json.loads((self.data_dir / "endpoints.json").read_text())

    async def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "WAKE_DATA_DIR": str(self.data_dir)}
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.cli", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, f"wake {' '.join(args)}: {result.stdout}{result.stderr}"
        return result

    def tracebacks(self) -> list[str]:
        return [p.name for p in self.logs.glob("*.log") if "Traceback" in p.read_text()]


@contextlib.asynccontextmanager
async def wake_up(root: Path, *options: str, **env: str) -> AsyncIterator[WakeUp]:
    """`wake up --sandbox OPTIONS` on root/data until the block ends (SIGINT, then SIGKILL)."""
    data_dir, logs = root / "data", root / "logs"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "services.cli", "up", "--sandbox",
            "--data-dir", str(data_dir), "--log-dir", str(logs), *options,
        ],
        cwd=ROOT, env={**os.environ, **env}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    up = WakeUp(process=process, data_dir=data_dir, logs=logs, root=root)
    try:

        def published() -> bool:
            if process.poll() is not None:
                output = process.stderr.read()
                raise AssertionError(f"wake up exited {process.returncode}: {output}")
            return (data_dir / "endpoints.json").exists()

        await eventually(published, timeout=90, what="wake up ready")
        yield up
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
        for path in sorted(logs.glob("*.log")):
            print(f"--- {path.name}\n" + "\n".join(path.read_text().splitlines()[-30:]))


async def admin_log(endpoints: dict) -> EventLog:
    """The running Wake's log, connected as its admin (endpoints.json's `nats_admin`)."""
    log = await EventLog.connect(
        endpoints["nats_url"], name="e2e", credentials=load_connect_kwargs(endpoints["nats_admin"])
    )
    log.trust = Trust.from_text(endpoints["admin_public_key"], source="endpoints.json")
    return log


@contextlib.asynccontextmanager
async def port_taken(port: int) -> AsyncIterator[None]:
    """Listen on 127.0.0.1:`port` as soon as the killed server released it, until the block ends.

    Wake waits 0.5 s before its first restart of a server; the port is free
    within milliseconds of the SIGKILL.
    """
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def bound() -> bool:
            try:
                taken.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

        await eventually(bound, timeout=5, what=f"port {port} taken")
        taken.listen()
        yield


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


async def next_event(
    log: EventLog, app: str, event_type: str, *, after: int, commit: str = "", timeout: float = 60
) -> StoredEvent:
    async with asyncio.timeout(timeout):
        async for stored in log.read(
            subjects=[f"wake.evt.{app}.{event_type}"], from_seq=after + 1, follow=True
        ):
            if not commit or getattr(stored.event.payload, "commit", "") == commit:
                return stored
    raise AssertionError("the log ended")


async def position(log: EventLog) -> int:
    """The log's last sequence; asked again while a cluster elects a new leader."""
    found: list[int] = []

    async def answered() -> bool:
        try:
            found.append((await log.js.stream_info(STREAM)).state.last_seq)
        except (TimeoutError, nats.errors.Error):
            return False
        return True

    await eventually(answered, timeout=30, what="the stream answers")
    return found[-1]


async def registered(up: WakeUp, log: EventLog, app: str) -> tuple[SampleRepo, str]:
    """`app` registered from a fresh sample repository, its first commit applied."""
    repo = SampleRepo.create(up.root / "repos" / app)
    commit = first_commit(repo, namespace=app)
    start = await position(log)
    await up.cli("app", "add", app, "--repo", repo.url, "--path", APP_PATH, "--namespace", app)
    await next_event(log, app, "ApplySucceeded", after=start, commit=commit)
    return repo, commit


async def test_nats_and_postgres_killed_are_restarted_and_commits_still_reach_the_cluster(
    tmp_path: Path,
):
    # Given `wake up --sandbox` with an app applied
    async with wake_up(tmp_path, WAKE_SERVER_RESTARTS="8") as up:
        log = await admin_log(up.endpoints)
        try:
            repo, _ = await registered(up, log, "survivor")
            services = up.endpoints["services"]

            # When nats-server is SIGKILLed
            nats_pid = up.endpoints["nats_pid"]
            os.kill(nats_pid, signal.SIGKILL)
            # Then `wake up` starts it again, and every service carries on (none restarted)
            await eventually(
                lambda: up.endpoints["nats_pid"] != nats_pid, timeout=30, what="NATS restarted"
            )
            assert psutil.pid_exists(up.endpoints["nats_pid"])
            # and a new commit still reaches the sandbox
            start = await position(log)
            second = second_commit(repo)
            await up.cli("sync", "survivor")
            await next_event(log, "survivor", "ApplySucceeded", after=start, commit=second)
            assert up.endpoints["services"] == services

            # When PostgreSQL is SIGKILLed and kept down (its port taken)
            postgres_pid = up.endpoints["postgres_pid"]
            os.kill(postgres_pid, signal.SIGKILL)
            async with port_taken(port_of(up.endpoints["database_url"])):
                # Then a commit is still applied while it is down
                start = await position(log)
                deployment = deployment_yaml(replicas=4, image="nginx:1.29")
                third = repo.commit("web 1.29", {f"{APP_PATH}/deployment.yaml": deployment})
                await up.cli("sync", "survivor")
                await next_event(log, "survivor", "ApplySucceeded", after=start, commit=third)
                assert up.endpoints["postgres_pid"] == postgres_pid
                assert process_gone(postgres_pid)
            # When its port is free again, it is restarted and the projector catches up
            await eventually(
                lambda: up.endpoints["postgres_pid"] != postgres_pid,
                timeout=30,
                what="PostgreSQL restarted",
            )

            async def projected() -> bool:
                env = {**os.environ, "WAKE_DATA_DIR": str(up.data_dir)}
                shown = await asyncio.to_thread(
                    subprocess.run,
                    [sys.executable, "-m", "services.cli", "history", "survivor", "--json"],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                journeys = [json.loads(line) for line in shown.stdout.splitlines()]
                return any(j["commit"] == third and j["applied_at"] for j in journeys)

            await eventually(projected, timeout=60, what="the read models show the third commit")
            shown = json.loads((await up.cli("app", "show", "survivor", "--json")).stdout)
            assert (shown["state"], shown["applied_revision"]) == ("synced", third)
            assert up.endpoints["services"] == services
        finally:
            await log.close()
        assert up.tracebacks() == []


async def test_wake_up_exits_non_zero_when_nats_cannot_be_brought_back(tmp_path: Path):
    # Given `wake up --sandbox` that tries once to restart a dead server
    async with wake_up(tmp_path, WAKE_SERVER_RESTARTS="1") as up:
        endpoints = up.endpoints
        # When nats-server is SIGKILLed and its port taken
        os.kill(endpoints["nats_pid"], signal.SIGKILL)
        async with port_taken(port_of(endpoints["nats_url"])):
            # Then `wake up` gives up: it stops everything and exits 1, saying why
            _, stderr = await asyncio.to_thread(up.process.communicate, timeout=60)
        assert up.process.returncode == 1
        assert "nats-server died and was not brought back" in stderr
        pids = [endpoints["postgres_pid"], *endpoints["services"].values()]
        await eventually(lambda: all(process_gone(pid) for pid in pids), what="all stopped")
        assert not (up.data_dir / "endpoints.json").exists()
        assert up.tracebacks() == []


async def test_stopping_wake_up_while_nats_is_down_is_quick_and_clean(tmp_path: Path):
    # Given `wake up --sandbox` whose nats-server died and cannot come back
    async with wake_up(tmp_path, WAKE_SERVER_RESTARTS="50") as up:
        endpoints = up.endpoints
        os.kill(endpoints["nats_pid"], signal.SIGKILL)
        async with port_taken(port_of(endpoints["nats_url"])):
            # When it gets Ctrl-C
            up.process.send_signal(signal.SIGINT)
            # Then every service stops within its short grace (not 10 s each) and it exits 0
            stdout, _ = await asyncio.to_thread(up.process.communicate, timeout=15)
        assert up.process.returncode == 0
        assert "Stopped (stop requested)" in stdout
        assert all(process_gone(pid) for pid in endpoints["services"].values())
        # and no service ended in a traceback
        assert up.tracebacks() == []


async def kubectl(kubeconfig: Path, *args: str) -> str:
    result = await asyncio.to_thread(
        subprocess.run,
        [str(KUBECTL), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


async def test_a_restarted_wake_keeps_its_sandbox_and_checks_drift_at_once(tmp_path: Path):
    # Given an app applied by `wake up --sandbox`, which is then stopped
    async with wake_up(tmp_path) as up:
        log = await admin_log(up.endpoints)
        try:
            _, commit = await registered(up, log, "kept")
            stopped_at = await position(log)
        finally:
            await log.close()
    assert up.process.returncode == 0
    state_file = up.data_dir / "sandbox" / "objects.json"
    # When, while Wake is down, someone edits the Deployment by hand (the sandbox
    # alone, on the same state file)
    kubeconfig = tmp_path / "alone" / "kubeconfig"
    alone = subprocess.Popen(
        [
            sys.executable, "-m", "services.cli", "sandbox", "--kubeconfig", str(kubeconfig),
            "--state-file", str(state_file),
        ],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        await eventually(kubeconfig.exists, timeout=30, what="the sandbox alone serving")
        replicas = await kubectl(
            kubeconfig, "get", "deployment", "web", "-n", "kept", "-o", "jsonpath={.spec.replicas}"
        )
        assert replicas == "2"  # kept across the stop
        await kubectl(
            kubeconfig, "patch", "deployment", "web", "-n", "kept",
            "--type", "merge", "-p", '{"spec": {"replicas": 7}}',
        )  # fmt: skip
    finally:
        alone.send_signal(signal.SIGINT)
        await asyncio.to_thread(alone.wait, 30)
    # When `wake up --sandbox` starts again (drift interval: the default 300 s)
    async with wake_up(tmp_path) as again:
        log = await admin_log(again.endpoints)
        try:
            # Then the sandbox still has the app's objects
            kube = Path(again.endpoints["kubeconfig"])
            names = await kubectl(kube, "get", "all", "-n", "kept", "-o", "name")
            assert "deployment.apps/web" in names and "service/web" in names
            # and the hand edit is detected right after the applier started
            drift = await next_event(log, "kept", "DriftDetected", after=stopped_at, timeout=30)
            assert [d.ref.name for d in drift.event.payload.resources] == ["web"]
            # and the app still says it is synced on its commit
            shown = json.loads((await again.cli("app", "show", "kept", "--json")).stdout)
            assert shown["state"] == "synced"
            assert (shown["revision"], shown["applied_revision"]) == (commit, commit)
        finally:
            await log.close()
        assert again.tracebacks() == []


async def test_wake_up_on_a_three_node_nats_cluster_applies_commits_with_a_node_killed(
    tmp_path: Path,
):
    # Given `wake up --sandbox --nats-cluster 3` with an app applied
    async with wake_up(tmp_path, "--nats-cluster", "3") as up:
        endpoints = up.endpoints
        assert len(endpoints["nats_url"].split(",")) == 3 and len(endpoints["nats_pids"]) == 3
        log = await admin_log(endpoints)
        try:
            info = await log.js.stream_info(STREAM)
            assert info.config.num_replicas == 3  # no service shrank it at its start
            repo, _ = await registered(up, log, "clustered")
            # When one node is SIGKILLed
            killed = endpoints["nats_pids"][0]
            os.kill(killed, signal.SIGKILL)
            # Then a new commit is still applied (clients fail over to the other nodes)
            start = await position(log)
            second = second_commit(repo)
            await up.cli("sync", "clustered")
            await next_event(log, "clustered", "ApplySucceeded", after=start, commit=second)
            # and `wake up` brings the node back
            await eventually(
                lambda: killed not in up.endpoints["nats_pids"], timeout=30, what="node restarted"
            )
            assert up.endpoints["services"] == endpoints["services"]
        finally:
            await log.close()
        assert up.tracebacks() == []
