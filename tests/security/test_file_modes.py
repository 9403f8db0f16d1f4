"""Issue 10 item 8: Wake's data dirs are 0700 and its files 0600; no other local user reads them."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import asyncpg

from services.wiring.git import Mirrors
from services.wiring.private import data_dir_mode
from tests.git_watcher.repos import GitRepo, configmap
from tests.infra.test_infra_cmd import InfraUp, infra_up  # noqa: F401 (the fixture)


def others_can_read(path: Path) -> list[str]:
    """Every path under `path` (itself included) that group or others may read or write."""
    found = []
    for entry in sorted([path, *path.rglob("*")]):
        if entry.is_symlink() or stat.S_ISSOCK(entry.lstat().st_mode):
            continue
        if entry.lstat().st_mode & 0o066:
            found.append(f"{entry} {entry.lstat().st_mode & 0o777:o}")
    return found


async def test_infra_up_makes_everything_private(infra_up: InfraUp) -> None:  # noqa: F811
    data_dir = infra_up.data_dir.resolve()
    # The data dir itself: no listing by others (0711 as root, for PostgreSQL's account)
    assert data_dir.stat().st_mode & 0o777 == data_dir_mode()
    # Everything in it: neither group nor others read or write
    # (the socket postgres listens on is protected by its password, not its mode)
    assert others_can_read(data_dir) == []
    for private in ("endpoints.json", "keys", "nats", "postgres"):
        assert (data_dir / private).exists(), private
    assert (data_dir / "endpoints.json").stat().st_mode & 0o777 == 0o600

    # And it serves: the published database URL is the service role's, and works
    conn = await asyncpg.connect(infra_up.endpoints.database_url)
    try:
        assert await conn.fetchval("SELECT current_user") == "wake"
    finally:
        await conn.close()


async def test_git_mirrors_are_private(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "shop")
    repo.commit("one", {"deploy/cm.yaml": configmap("shop")})
    previous = os.umask(0o022)  # a careless umask: the mirror is private anyway
    try:
        mirrors = Mirrors(tmp_path / "wake" / "renderer" / "mirrors")
        mirror = await mirrors.fetch(repo.url)
    finally:
        os.umask(previous)
    assert mirror.path.parent.stat().st_mode & 0o777 == 0o700
    assert mirror.path.stat().st_mode & 0o777 == 0o700
    # And the mirror works
    assert mirror.repo.head is not None
