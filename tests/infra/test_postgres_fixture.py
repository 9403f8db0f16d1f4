"""The `postgres_url` plugin, run the way a test session uses it: in a pytest of its own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

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
        sys.executable, "-m", "pytest", "-q", "-p", "tests.fixtures_postgres",
        "-p", "no:cacheprovider", "-c", str(REPO / "pyproject.toml"),
        f"--basetemp={basetemp}", str(tmp_path / "test_session.py"),
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(session.communicate(), timeout=60)

    assert session.returncode == 0, output.decode()
    assert b"2 passed" in output
    assert process_gone(int((tmp_path / "pid").read_text()))
