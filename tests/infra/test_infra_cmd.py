"""`wake infra up|provision|env` as a user runs them: real processes, real servers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import nats
import psutil
import pytest

from services.wiring.credentials import load_connect_kwargs
from services.wiring.embedded_nats import EmbeddedNats
from services.wiring.infra import (
    ENDPOINTS_FILE,
    Endpoints,
    InfraNotRunning,
    load_endpoints,
)
from tests.waiting import eventually, process_gone

WAKE = str(Path(sys.executable).with_name("wake"))


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


async def wake(*args: str, timeout: float = 60) -> Run:
    """Run `wake ARGS` to completion."""
    process = await asyncio.create_subprocess_exec(
        WAKE, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise AssertionError(f"wake {' '.join(args)} did not finish within {timeout}s") from None
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


@dataclass
class InfraUp:
    process: asyncio.subprocess.Process
    data_dir: Path
    endpoints: Endpoints


@pytest.fixture
async def infra_up(tmp_path: Path) -> AsyncIterator[InfraUp]:
    """A `wake infra up` serving tmp_path/wake, once its endpoints.json is published."""
    data_dir = tmp_path / "wake"
    process = await asyncio.create_subprocess_exec(
        WAKE, "infra", "up", "--data-dir", str(data_dir),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # One attempt at restarting a dead server before giving up: enough to
        # show both, without waiting out the default backoff.
        env={**os.environ, "WAKE_SERVER_RESTARTS": "1"},
    )  # fmt: skip
    endpoints: list[Endpoints] = []

    def published() -> bool:
        if process.returncode is not None:
            raise AssertionError(f"wake infra up exited with {process.returncode}")
        try:
            endpoints.append(load_endpoints(data_dir))
        except InfraNotRunning:
            return False
        return True

    # The process's returncode is only updated by a waiter; watch it.
    waiter = asyncio.create_task(process.wait())
    try:
        await eventually(published, timeout=60, what=f"{data_dir / ENDPOINTS_FILE}")
        yield InfraUp(process=process, data_dir=data_dir, endpoints=endpoints[0])
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), 30)
        except TimeoutError:
            process.kill()
            await waiter
            raise AssertionError("wake infra up did not stop within 30s of SIGINT") from None


async def test_up_serves_nats_and_postgres_until_sigint(infra_up: InfraUp) -> None:
    endpoints = infra_up.endpoints
    assert endpoints.infra_pid == infra_up.process.pid
    assert endpoints.data_dir == str(infra_up.data_dir.resolve())

    nc = await nats.connect(endpoints.nats_url, **load_connect_kwargs(endpoints.nats_admin))
    try:
        js = nc.jetstream()
        stream = await js.stream_info("WAKE_EVENTS")
        assert stream.config.deny_delete and stream.config.deny_purge
        await js.object_store("WAKE_BUNDLES")
    finally:
        await nc.close()
    conn = await asyncpg.connect(endpoints.database_url)
    try:
        assert await conn.fetchval("SELECT current_database()") == "wake"
    finally:
        await conn.close()

    env = await wake("infra", "env", "--data-dir", str(infra_up.data_dir))
    assert env.returncode == 0
    assert f"export WAKE_NATS_URL={endpoints.nats_url}" in env.stdout
    assert f"export WAKE_DATABASE_URL={endpoints.database_url}" in env.stdout

    infra_up.process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(infra_up.process.wait(), 30) == 0
    stdout = (await infra_up.process.stdout.read()).decode()
    assert "Wake infrastructure is up" in stdout and "Stopped." in stdout
    assert process_gone(endpoints.nats_pid)
    assert process_gone(endpoints.postgres_pid)
    assert not (infra_up.data_dir / ENDPOINTS_FILE).exists()
    with pytest.raises(InfraNotRunning):
        load_endpoints(infra_up.data_dir)


async def test_a_second_up_on_the_same_data_dir_is_refused(infra_up: InfraUp) -> None:
    second = await wake("infra", "up", "--data-dir", str(infra_up.data_dir))

    assert second.returncode == 1
    assert second.stderr.strip() == (
        f"Error: data dir {infra_up.data_dir.resolve()} is already in use by "
        f"another Wake (pid {infra_up.process.pid})"
    )
    assert load_endpoints(infra_up.data_dir) == infra_up.endpoints  # the first one is untouched


async def test_a_server_that_dies_is_restarted_and_one_that_cannot_be_takes_infra_down(
    infra_up: InfraUp,
) -> None:
    # When PostgreSQL is SIGKILLed
    postgres_pid = infra_up.endpoints.postgres_pid
    os.kill(postgres_pid, signal.SIGKILL)

    # Then it is started again on the same port, and endpoints.json names the new process
    def restarted() -> bool:
        pid = load_endpoints(infra_up.data_dir).postgres_pid
        return pid != postgres_pid and psutil.pid_exists(pid)

    await eventually(restarted, timeout=60, what="postgres restarted")
    revived = load_endpoints(infra_up.data_dir)
    assert revived.database_url == infra_up.endpoints.database_url
    conn = await asyncpg.connect(infra_up.endpoints.database_url)
    await conn.close()

    # When nats-server is SIGKILLed and its port taken, so that it cannot come back
    nats_pid = infra_up.endpoints.nats_pid
    port = int(infra_up.endpoints.nats_url.rsplit(":", 1)[1])
    os.kill(nats_pid, signal.SIGKILL)
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

        def bound() -> bool:
            try:
                taken.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

        await eventually(bound, what=f"port {port} taken")
        taken.listen()
        # Then `wake infra up` gives up, says why, stops PostgreSQL and exits 1
        assert await asyncio.wait_for(infra_up.process.wait(), 60) == 1
    stderr = (await infra_up.process.stderr.read()).decode()
    assert "nats-server died and was not brought back after 1 attempt" in stderr
    assert "Traceback" not in stderr
    assert process_gone(revived.postgres_pid)
    assert not (infra_up.data_dir / ENDPOINTS_FILE).exists()


async def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = await wake(
            "infra", "up", "--data-dir", str(tmp_path), "--postgres-port", str(port), timeout=30
        )

    assert run.returncode == 1
    assert run.stderr.strip() == f"Error: PostgreSQL port 127.0.0.1:{port} is already in use"


async def test_an_unusable_data_dir_is_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    data_dir = tmp_path / "a-file" / "wake"

    run = await wake("infra", "up", "--data-dir", str(data_dir), timeout=30)

    assert run.returncode == 1
    assert (
        run.stderr.strip() == f"Error: cannot create or write data dir {data_dir}: Not a directory"
    )


def test_load_endpoints_says_when_nothing_runs(tmp_path: Path) -> None:
    with pytest.raises(InfraNotRunning, match="no Wake infrastructure is running on"):
        load_endpoints(tmp_path)


def test_load_endpoints_ignores_the_file_of_a_killed_owner(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    gone = int(finished.stdout)
    leftover = Endpoints(
        nats_url="nats://127.0.0.1:1",
        database_url="postgresql://postgres@127.0.0.1:2/wake",
        nats_pid=gone,
        postgres_pid=gone,
        infra_pid=gone,
        started_at=datetime(2025, 1, 1, tzinfo=UTC),
        data_dir=str(tmp_path),
    )
    (tmp_path / ENDPOINTS_FILE).write_bytes(msgspec.json.encode(leftover))

    with pytest.raises(InfraNotRunning, match=f"left over from `wake infra up` pid {gone},"):
        load_endpoints(tmp_path)


async def test_provision_creates_the_log_idempotently(nats_server: EmbeddedNats) -> None:
    for _ in range(2):
        run = await wake("infra", "provision", "--nats-url", nats_server.url)
        assert run.returncode == 0, run.stderr

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        assert (await js.stream_info("WAKE_EVENTS")).config.subjects == ["wake.evt.>"]
        await js.object_store("WAKE_BUNDLES")
    finally:
        await nc.close()


async def test_provision_names_an_unreachable_server() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"nats://127.0.0.1:{free.getsockname()[1]}"
    run = await wake("infra", "provision", "--nats-url", url, "--wait", "0")

    assert run.returncode == 1
    assert run.stderr.startswith(f"Error: cannot connect to NATS at {url}")
    assert len(run.stderr.strip().splitlines()) == 1


# Interrupt while the servers are still coming up: NATS being spawned, or
# PostgreSQL's cluster being created.
@pytest.mark.parametrize("starting", ["nats", "postgres.lock"])
async def test_sigint_during_startup_leaves_nothing_running(tmp_path: Path, starting: str) -> None:
    data_dir = tmp_path / "wake"
    process = await asyncio.create_subprocess_exec(
        WAKE, "infra", "up", "--data-dir", str(data_dir),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    await eventually((data_dir / starting).exists, timeout=30, what=f"{starting} to appear")
    process.send_signal(signal.SIGINT)

    assert await asyncio.wait_for(process.wait(), 30) == 0
    assert not (data_dir / ENDPOINTS_FILE).exists()
    leaked = _processes_using(data_dir)
    for orphan in leaked:  # so that a failure does not outlive the test
        orphan.kill()
    assert [" ".join(p.info["cmdline"]) for p in leaked] == []


def _processes_using(data_dir: Path) -> list[psutil.Process]:
    return [
        process
        for process in psutil.process_iter(["cmdline"])
        if any(str(data_dir) in arg for arg in process.info["cmdline"] or [])
    ]
