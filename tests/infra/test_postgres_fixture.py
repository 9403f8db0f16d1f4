"""The `postgres_url` plugin, run the way a test session uses it: in a pytest of its own."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import asyncpg

from services.wiring.embedded_postgres import EmbeddedPostgres
from tests.waiting import process_gone

REPO = Path(__file__).resolve().parents[2]

_SESSION = textwrap.dedent("""
    import asyncpg
    import pytest


    @pytest.mark.asyncio(loop_scope="session")
    async def test_first(postgres_url, postgres_server, tmp_path_factory):
        conn = await asyncpg.connect(postgres_url)
        try:
            # The service role: it makes schemas of its own (not in `public`)
            await conn.execute("CREATE SCHEMA fixture_check")
            await conn.execute("CREATE TABLE fixture_check.seen (n int)")
            await conn.execute("INSERT INTO fixture_check.seen VALUES (1)")
        finally:
            await conn.close()
        (tmp_path_factory.getbasetemp().parent / "pid").write_text(str(postgres_server.pid))


    @pytest.mark.asyncio(loop_scope="session")
    async def test_second_shares_the_server(postgres_url):
        conn = await asyncpg.connect(postgres_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM fixture_check.seen") == 1
        finally:
            await conn.close()
""")


async def test_one_server_serves_the_session_and_stops_with_it(tmp_path: Path) -> None:
    (tmp_path / "test_session.py").write_text(_SESSION)
    basetemp = tmp_path / "basetemp"
    session = await asyncio.create_subprocess_exec(
        # In one process (`-n 0`): its tests must share one session, and so one server.
        sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "tests.fixtures_postgres",
        "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
        f"--basetemp={basetemp}", str(tmp_path / "test_session.py"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(session.communicate(), timeout=60)

    assert session.returncode == 0, output.decode()
    assert b"2 passed" in output
    assert process_gone(int((tmp_path / "pid").read_text()))


_ANOTHER_SESSION = textwrap.dedent("""
    import os


    def test_uses_a_temporary_dir(tmp_path_factory):
        root = tmp_path_factory.getbasetemp().parent
        with open(os.environ["OTHER_SESSION_ROOT"], "w") as file:
            file.write(str(root))
""")


async def test_the_session_server_outlives_another_pytest_session_starting(
    tmp_path: Path, postgres_server: EmbeddedPostgres
) -> None:
    # Given another pytest session on this machine, with pytest's default temporary
    # root: as root, it resets /tmp/pytest-of-root to 0700 as it starts, which would
    # lock postgres (run as wake-postgres) out of a cluster kept under it
    (tmp_path / "test_other.py").write_text(_ANOTHER_SESSION)
    written = tmp_path / "other-root"
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-c", str(REPO / "pyproject.toml"), str(tmp_path / "test_other.py"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "OTHER_SESSION_ROOT": str(written)},
    )  # fmt: skip
    output, _ = await asyncio.wait_for(other.communicate(), timeout=60)
    assert other.returncode == 0, output.decode()
    # Then its temporary root (which it narrows) is not on the way to our cluster
    other_root = Path(written.read_text()).resolve()
    assert other_root not in postgres_server.pgdata.parents
    # and when the session's server checkpoints (as CREATE and DROP DATABASE make it do),
    # writing global/pg_control by its absolute path, it is still serving
    # (CHECKPOINT is the superuser's: the session's URL is the service role's)
    conn = await asyncpg.connect(postgres_server.admin_url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    assert postgres_server.process.poll() is None
    conn = await asyncpg.connect(postgres_server.url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
