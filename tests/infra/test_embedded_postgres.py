"""The embedded PostgreSQL: start, serve, stop, restart, and recover from a killed run."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg
import psutil
import pytest

from services.wiring.embedded_postgres import (
    SYSTEM_USER,
    EmbeddedPostgres,
    PostgresDataDirInUse,
    PostgresPortInUse,
    start_postgres,
)
from tests.waiting import eventually, process_gone

REPO = Path(__file__).resolve().parents[2]


async def _write_row(server: EmbeddedPostgres, value: str) -> None:
    conn = await asyncpg.connect(server.admin_url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS kept (value text)")
        await conn.execute("INSERT INTO kept VALUES ($1)", value)
    finally:
        await conn.close()


async def _rows(server: EmbeddedPostgres) -> list[str]:
    conn = await asyncpg.connect(server.admin_url)
    try:
        return [r["value"] for r in await conn.fetch("SELECT value FROM kept ORDER BY value")]
    finally:
        await conn.close()


async def test_starts_serves_stops_and_restarts_keeping_its_data(tmp_path: Path) -> None:
    server = await start_postgres(tmp_path)
    try:
        assert server.url.startswith("postgresql://wake:")
        assert server.url.endswith(f"@127.0.0.1:{server.port}/wake")
        conn = await asyncpg.connect(server.url)
        try:
            assert await conn.fetchval("SELECT current_database()") == "wake"
            assert await conn.fetchval("SHOW fsync") == "on"
            assert await conn.fetchval("SHOW listen_addresses") == "127.0.0.1"
            encoding = "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = $1"
            assert await conn.fetchval(encoding, "wake") == "UTF8"
        finally:
            await conn.close()
        await _write_row(server, "before restart")
    finally:
        await server.stop()
    assert process_gone(server.pid)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    await server.stop()  # idempotent

    again = await start_postgres(tmp_path)
    try:
        assert again.pid != server.pid
        assert await _rows(again) == ["before restart"]
    finally:
        await again.stop()


@pytest.mark.parametrize("pid_reused", [False, True], ids=["pid-dead", "pid-reused"])
async def test_recovers_from_a_stale_postmaster_pid_after_sigkill(
    tmp_path: Path, pid_reused: bool
) -> None:
    server = await start_postgres(tmp_path)
    await _write_row(server, "committed before the kill")
    os.kill(server.pid, signal.SIGKILL)
    await eventually(lambda: server.process.poll() is not None, timeout=10, what="postgres to die")
    await server.stop()  # reaps it and releases the data dir; leaves the debris alone

    postmaster_pid = tmp_path / "postgres" / "postmaster.pid"
    assert postmaster_pid.read_text().split("\n", 1)[0] == str(server.pid)
    # The pid in a stale file may since belong to another live process of the
    # server's account (another Wake's postgres, say); postgres alone would then
    # refuse to start ("is another postmaster running?").
    squatter = await asyncio.create_subprocess_exec(
        "cat",  # holds its pid until its stdin closes
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        user=SYSTEM_USER if os.geteuid() == 0 else None,
    )
    try:
        if pid_reused:
            lines = postmaster_pid.read_text().split("\n")
            postmaster_pid.write_text("\n".join([str(squatter.pid), *lines[1:]]))

        again = await start_postgres(tmp_path)
        try:
            assert await _rows(again) == ["committed before the kill"]
        finally:
            await again.stop()
    finally:
        squatter.stdin.close()
        await squatter.wait()


async def test_stops_a_server_left_running_by_an_owner_that_was_killed(tmp_path: Path) -> None:
    # The owner (think: `wake infra up`) is SIGKILLed; its postgres lives on.
    owner_script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        import asyncpg
        from services.wiring.embedded_postgres import start_postgres

        async def main():
            server = await start_postgres(Path({str(tmp_path)!r}))
            conn = await asyncpg.connect(server.admin_url)
            await conn.execute("CREATE TABLE kept (value text)")
            await conn.execute("INSERT INTO kept VALUES ('written by the first owner')")
            await conn.close()
            print(server.pid, flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
    """)
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", owner_script, cwd=REPO, stdout=subprocess.PIPE
    )
    try:
        line = await asyncio.wait_for(owner.stdout.readline(), timeout=30)
    finally:
        owner.kill()
        await owner.wait()
    orphan_pid = int(line)
    assert not process_gone(orphan_pid)

    server = await start_postgres(tmp_path)
    try:
        assert process_gone(orphan_pid)
        assert server.pid != orphan_pid
        assert await _rows(server) == ["written by the first owner"]
    finally:
        await server.stop()


async def test_a_second_owner_of_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    server = await start_postgres(tmp_path)
    try:
        with pytest.raises(PostgresDataDirInUse) as refused:
            await start_postgres(tmp_path)
        assert str(tmp_path / "postgres") in str(refused.value)
        assert f"pid {os.getpid()}" in str(refused.value)
        conn = await asyncpg.connect(server.url)  # the first owner still serves
        await conn.close()
    finally:
        await server.stop()


async def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PostgresPortInUse, match=f"127.0.0.1:{port} is already in use"):
            await start_postgres(tmp_path, port=port)


async def test_a_data_dir_too_deep_for_a_unix_socket_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    server = await start_postgres(deep)
    try:
        assert not server.socket_dir.is_relative_to(deep)
        assert any(server.socket_dir.glob(".s.PGSQL.*"))
        socket = {"host": str(server.socket_dir), "port": server.port, "database": "wake"}
        # The socket, too, wants the password (no `trust`, issue 10 item 5).
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(user="postgres", **socket)
        conn = await asyncpg.connect(user="postgres", password=server._superuser_password, **socket)
        await conn.close()
    finally:
        await server.stop()
    assert not server.socket_dir.exists()


async def test_cancelling_a_start_leaves_no_server_behind(tmp_path: Path) -> None:
    starting = asyncio.create_task(start_postgres(tmp_path))
    # Cancel while initdb runs in its thread, which a cancellation cannot stop.
    await eventually((tmp_path / "postgres.initdb").exists, timeout=30, what="initdb to start")
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting

    running = [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(tmp_path) in " ".join(p.info["cmdline"] or [])
    ]
    assert running == []
    server = await start_postgres(tmp_path)  # and the data dir is free again
    await server.stop()
