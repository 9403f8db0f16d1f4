"""Shared fixtures: real servers, started from the same code `wake` uses (DESIGN §6)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.wiring.embedded_nats import EmbeddedNats, start_nats
from services.wiring.eventlog import EventLog, provision
from tests.signing import PERSON, key_of, register, trusting

pytest_plugins = ["tests.fixtures_postgres"]

# As root, the PostgreSQL servers the tests start run as `wake-postgres`, which
# reaches its cluster through every parent directory: its checkpointer writes
# global/pg_control by absolute path. Every pytest session of root resets the
# shared /tmp/pytest-of-root to 0700 as it starts, so a concurrent session on
# the machine makes each running server PANIC at its next checkpoint (CREATE
# and DROP DATABASE force one) and die. As root, each session therefore gets a
# base temporary directory under a root of ours that nobody narrows.
_TEMP_ROOT = Path(tempfile.gettempdir()) / "wake-tests-of-root"
_SESSION_PREFIX = "session-"
_KEEP_FINISHED = 3
"""Temporary directories of finished sessions kept (newest first) to look into after a run."""


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if os.geteuid() != 0 or config.option.basetemp is not None:
        return
    root = _own_temp_root()
    _remove_finished_sessions(root)
    config.option.basetemp = str(root / f"{_SESSION_PREFIX}{os.getpid()}")


def _own_temp_root() -> Path:
    with contextlib.suppress(FileExistsError):
        _TEMP_ROOT.mkdir(mode=0o755)
    # /tmp is writable by all: only a real directory of root's is trusted.
    info = _TEMP_ROOT.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise pytest.UsageError(f"{_TEMP_ROOT} is not a directory owned by root; remove it")
    if info.st_mode & 0o777 != 0o755:
        _TEMP_ROOT.chmod(0o755)
    return _TEMP_ROOT


def _remove_finished_sessions(root: Path) -> None:
    finished = []
    for path in root.glob(f"{_SESSION_PREFIX}*"):
        pid = path.name.removeprefix(_SESSION_PREFIX)
        if pid.isdigit() and not _running(int(pid)):
            finished.append(path)
    finished.sort(key=_modified, reverse=True)
    for path in finished[_KEEP_FINISHED:]:
        shutil.rmtree(path, ignore_errors=True)


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # removed by a session starting at the same time
        return 0.0


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A NATS server of this test's own: each test sees an empty log.

    Without `security`, the one explicit way to a server that accepts anyone:
    `wake up` and `wake infra up` always start theirs with authentication
    (tests/security/ covers that server).
    """
    server = await start_nats(tmp_path / "data")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def event_log(nats_server: EmbeddedNats) -> AsyncIterator[EventLog]:
    """The test's log: it trusts the session's admin key and signs every event as its actor
    (tests/signing.py)."""
    log = trusting(await EventLog.connect(nats_server.url, name="tests"))
    await provision(log.nc)
    # The person `wake` commands of tests run as (tests/signing.cli_env).
    await register(log, key_of(PERSON))
    try:
        yield log
    finally:
        await log.close()
