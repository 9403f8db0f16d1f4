"""Ports Wake chooses for its servers before they bind them."""

from __future__ import annotations

import socket
from pathlib import Path

from services.wiring.ports import free_port, port_is_free


def _ephemeral_low() -> int:
    return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])


def test_a_chosen_port_is_never_what_the_kernel_gives_the_next_bind_to_port_0():
    # `wake up` chooses the api's port, then a service's metrics server binds port 0
    # before the api binds its own: the two must not meet (a CI run failed so).
    chosen = free_port()
    assert chosen < _ephemeral_low()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        assert sock.getsockname()[1] != chosen
    assert port_is_free(chosen)


def test_no_port_is_given_twice_in_one_process():
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)


def test_a_port_someone_listens_on_is_not_free():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))
        sock.listen()
        assert not port_is_free(sock.getsockname()[1])
