"""Issue 10 item 5: PostgreSQL with passwords (scram-sha-256), services as a non-superuser role."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
import yaml

from services.wiring.embedded_nats import EmbeddedNats
from services.wiring.embedded_postgres import (
    SERVICE_PASSWORD_FILE,
    SUPERUSER_PASSWORD_FILE,
    EmbeddedPostgres,
    start_postgres,
)
from services.wiring.eventlog import EventLog
from tests.projector.conftest import Cli, append_all, caught_up
from tests.projector.synthetic import random_history

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own data dir, as `wake up` starts it."""
    server = await start_postgres(tmp_path / "wake")
    try:
        yield server
    finally:
        await server.stop()


async def test_a_connection_without_password_is_refused(own_postgres: EmbeddedPostgres) -> None:
    server = own_postgres
    # TCP and the unix socket alike: no `trust` anywhere
    for host in ("127.0.0.1", str(server.socket_dir)):
        for user in ("postgres", "wake"):
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(host=host, port=server.port, user=user, database="wake")
    hba = (server.pgdata / "pg_hba.conf").read_text()
    rules = [line for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(line.split()[-1] == "scram-sha-256" for line in rules)

    # And with its password, the service role gets in
    conn = await asyncpg.connect(server.url)
    try:
        assert await conn.fetchval("SELECT current_user") == "wake"
    finally:
        await conn.close()


async def test_the_password_files_are_private(own_postgres: EmbeddedPostgres) -> None:
    keys = own_postgres.pgdata.parent / "keys"
    assert keys.stat().st_mode & 0o777 == 0o700
    for name in (SUPERUSER_PASSWORD_FILE, SERVICE_PASSWORD_FILE):
        path = keys / name
        assert path.stat().st_mode & 0o777 == 0o600
        assert path.read_text().strip() in (own_postgres.url + own_postgres.admin_url)


async def test_the_service_role_cannot_run_programs_nor_make_roles(
    own_postgres: EmbeddedPostgres,
) -> None:
    conn = await asyncpg.connect(own_postgres.url)
    try:
        role = await conn.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = 'wake'"
        )
        assert tuple(role) == (False, False, False)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="COPY to or from"):
            await conn.execute("COPY (SELECT 1) TO PROGRAM 'true'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="create role"):
            await conn.execute("CREATE ROLE intruder SUPERUSER LOGIN")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="create database"):
            await conn.execute("CREATE DATABASE other")
        # ... and it still does what services do: make a schema of its own and use it
        await conn.execute("CREATE SCHEMA replay_check")
        await conn.execute("CREATE TABLE replay_check.t (v int)")
        await conn.execute("INSERT INTO replay_check.t VALUES (1)")
        assert await conn.fetchval("SELECT v FROM replay_check.t") == 1
    finally:
        await conn.close()


async def test_the_projector_and_replay_verify_work_as_the_service_role(
    own_postgres: EmbeddedPostgres, nats_server: EmbeddedNats, event_log: EventLog, tmp_path: Path
) -> None:
    # Given a history, and the projector running as the service role
    cli = Cli(nats_server.url, own_postgres.url, tmp_path / "cli")
    last = await append_all(event_log, random_history(5, apps=3, journeys=20).events)
    process = await cli.start_projector(tmp_path / "projector.log")
    try:
        await caught_up(own_postgres.url, last)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)

    # When it is replayed and verified as that role
    result = await cli.command("replay", "--verify")

    # Then every read model is equal, and the live schema is the role's
    assert result.returncode == 0, result.stdout + result.stderr
    conn = await asyncpg.connect(own_postgres.url)
    try:
        owners = await conn.fetch(
            "SELECT DISTINCT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'wake'"
        )
        assert [r[0] for r in owners] == ["wake"]
    finally:
        await conn.close()


async def test_a_cluster_made_by_an_older_wake_with_trust_is_converted(tmp_path: Path) -> None:
    # Given a cluster as an older Wake left it: `trust` logins, no password files,
    # and a read-model schema the superuser owns
    data_dir = tmp_path / "wake"
    server = await start_postgres(data_dir)
    admin = await asyncpg.connect(server.admin_url)
    try:
        await admin.execute("CREATE SCHEMA old_models")
        await admin.execute("CREATE TABLE old_models.rows (v int)")
        await admin.execute("INSERT INTO old_models.rows VALUES (7)")
        await admin.execute("ALTER ROLE postgres PASSWORD NULL")
    finally:
        await admin.close()
    await server.stop()
    (server.pgdata / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
    )
    for name in (SUPERUSER_PASSWORD_FILE, SERVICE_PASSWORD_FILE):
        (data_dir / "keys" / name).unlink()

    # When this Wake starts it
    upgraded = await start_postgres(data_dir)
    try:
        # Then passwords are required, and the service role owns the old schema
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(
                host="127.0.0.1", port=upgraded.port, user="postgres", database="wake"
            )
        hba = (upgraded.pgdata / "pg_hba.conf").read_text().splitlines()
        assert not [line for line in hba if line.strip().endswith("trust")]
        conn = await asyncpg.connect(upgraded.url)
        try:
            assert await conn.fetchval("SELECT v FROM old_models.rows") == 7
        finally:
            await conn.close()
    finally:
        await upgraded.stop()


def test_compose_takes_passwords_and_keys_from_secret_files(tmp_path: Path) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    postgres = compose["services"]["postgres"]
    environment = postgres["environment"]
    assert "POSTGRES_PASSWORD" not in environment
    assert environment["POSTGRES_PASSWORD_FILE"].startswith("/run/secrets/")
    assert "scram-sha-256" in environment["POSTGRES_INITDB_ARGS"]
    roles = next(v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v)
    script = (REPO / roles.split(":")[0]).read_text()
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in script
    # The services' URL names the role, never a password
    wake_env = compose["x-wake-environment"]
    assert urlsplit(wake_env["WAKE_DATABASE_URL"]).password is None
    assert wake_env["WAKE_DATABASE_PASSWORD_FILE"].startswith("/run/secrets/")

    # `wake infra keys` makes exactly the files the compose file's secrets name
    run = subprocess.run(
        [sys.executable, "-m", "services.cli", "infra", "keys", str(tmp_path / "secrets")],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    named = {
        Path(secret["file"]).name
        for secret in compose["secrets"].values()
        # NATS identities: `wake infra credentials`; signing keys: `wake infra signing-keys`
        if "/nats/" not in secret["file"] and "/signing/" not in secret["file"]
    }
    made = {path.name for path in (tmp_path / "secrets").iterdir()}
    assert named == made
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in (tmp_path / "secrets").iterdir())
    # and `wake infra signing-keys` makes every signing file the compose file's secrets name
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "services.cli",
            "infra",
            "signing-keys",
            "--dir",
            str(tmp_path / "s"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    signing = {
        Path(secret["file"]).name
        for secret in compose["secrets"].values()
        if "/signing/" in secret["file"]
    }
    assert signing <= {path.name for path in (tmp_path / "s").iterdir()}
