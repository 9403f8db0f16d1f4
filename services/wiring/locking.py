"""An exclusive lock on a file that the kernel releases however its owner dies."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    """Another live process holds the lock; `holder` is the pid it wrote there."""

    def __init__(self, path: Path, holder: str) -> None:
        super().__init__(f"{path} is locked by pid {holder}")
        self.path = path
        self.holder = holder


def lock_exclusively(path: Path) -> int:
    """Lock `path` (created if missing) and write our pid in it; return the descriptor.

    flock, not a pid file: a SIGKILLed owner never blocks the next one. Raises
    LockHeld when another process holds it, OSError when the file cannot be
    made or locked.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise LockHeld(path, holder) from None
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd
