"""Loopback ports for the servers Wake starts on one machine."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Where free_port looks: below the kernel's ephemeral range. A port chosen there is
# never what the kernel hands the next bind(0) (a service's metrics server, a
# client's socket) in the gap between choosing it and the server binding it.
_LOWEST = 10_000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_given: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on now (the caller binds it soon after).

    Each port is given once per process, so two servers started together never
    get the same one.
    """
    highest = _below_ephemeral_range()
    if highest > _LOWEST:
        for _ in range(200):
            port = random.randint(_LOWEST, highest)
            if port not in _given and port_is_free(port, host):
                _given.add(port)
                return port
    # No room below the ephemeral range: the kernel's choice, as before.
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    _given.add(port)
    return port


def _below_ephemeral_range() -> int:
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return low - 1


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could bind `port`.

    SO_REUSEADDR as servers set it: only a socket bound to the port counts,
    not connections lingering in TIME_WAIT.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
