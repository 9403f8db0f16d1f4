"""Wake's files are its own: data dirs 0700, files 0600 (issue 10 item 8).

Git mirrors, the NATS store, PostgreSQL's cluster, the keys, endpoints.json and
the logs hold source code, history and credentials; no other local user reads
them. Every `wake` command runs with umask 077 (`use_private_umask`), so what
it and its children (nats-server, postgres, the services, git) create is
private from the start; the directories are also narrowed explicitly, which
fixes an older install's wider modes.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077


def use_private_umask() -> None:
    """Make every file and directory this process (and its children) creates private."""
    os.umask(PRIVATE_UMASK)


def data_dir_mode() -> int:
    """0700; 0711 as root, where PostgreSQL runs as its own account and must pass through.

    0711 lets that account reach `postgres/` (its own, 0700) by name; no one
    else can list the data dir, and everything in it is 0700 / 0600.
    """
    return 0o711 if os.geteuid() == 0 else 0o700


def private_dir(path: Path, *, mode: int = 0o700) -> Path:
    """`path` created if missing (parents too) and narrowed to `mode`."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    os.chmod(path, mode)
    return path
