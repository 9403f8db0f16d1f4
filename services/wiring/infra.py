"""Wake's infrastructure on one machine: NATS with JetStream and PostgreSQL under a data dir.

`wake infra up` runs `serve`, `wake up` calls `start_infra`; everything else
finds the running instance with `load_endpoints`. The data dir holds:

- `infra.lock`: flock held by the one process serving this dir (its pid
  written inside, for the error message of a second one);
- `endpoints.json`: written once both servers are up and the stream and
  object store exist, removed before they are stopped, so a reader that finds
  it finds servers that answer (unless the owner was SIGKILLed: see
  `load_endpoints`);
- `nats/` (or `nats-cluster/n1..nN/` with `--nats-cluster N`) and `postgres/`
  (+ `postgres.log`, `postgres.lock`): the servers' own.

A server that dies while Wake is up is started again on the same port and
store, with backoff; clients reconnect to it on their own. Only when it cannot
be brought back does Wake give up (and its command exits non-zero).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
import nats
from nats.errors import Error as NatsError
from nats.js.errors import Error as JetStreamError

from events.ownership import ADMIN, OPERATOR
from events.signing import SigningKey, encode_key
from services.wiring import keys
from services.wiring.consumers import ConsumerSettings, Placement, ensure_consumer
from services.wiring.credentials import (
    CREDENTIALS_DIR,
    BusCredentials,
    CredentialsError,
    client_tls,
    ensure_credentials,
)
from services.wiring.embedded_nats import (
    EmbeddedNats,
    EmbeddedNatsCluster,
    NatsStartError,
    ServerSecurity,
    start_nats,
    start_nats_cluster,
)
from services.wiring.embedded_postgres import EmbeddedPostgres, PostgresError, start_postgres
from services.wiring.eventlog import EventLog, nats_servers, provision
from services.wiring.locking import LockHeld, lock_exclusively
from services.wiring.ports import port_is_free
from services.wiring.private import data_dir_mode, private_dir
from services.wiring.settings import Settings
from services.wiring.signing import (
    SIGNING_DIR,
    KeySigner,
    SigningKeyError,
    Trust,
    ensure_signing_keys,
    register_keys,
)

ENDPOINTS_FILE = "endpoints.json"
LOCK_FILE = "infra.lock"
DEFAULT_DATA_DIR = Path(".wake")

ENV_DATA_DIR = "WAKE_DATA_DIR"
ENV_NATS_URL = "WAKE_NATS_URL"
ENV_DATABASE_URL = "WAKE_DATABASE_URL"
ENV_STREAM_REPLICAS = "WAKE_STREAM_REPLICAS"
ENV_NATS_TLS_CERT = "WAKE_NATS_TLS_CERT"
ENV_NATS_TLS_KEY = "WAKE_NATS_TLS_KEY"
ENV_NATS_TLS_CA = "WAKE_NATS_TLS_CA"

log = logging.getLogger(__name__)

# Restarts of a server that died: 0.5 s doubling up to 8 s between attempts.
# After `restart_attempts` (WAKE_SERVER_RESTARTS) in a row that did not last a
# minute, Wake gives up: it would otherwise serve endpoints that lead nowhere,
# and hide the failure from a process manager that could do better.
_REVIVE_FIRST, _REVIVE_MAX, _REVIVED_AFTER = 0.5, 8.0, 60.0
DEFAULT_RESTART_ATTEMPTS = 5


class Endpoints(msgspec.Struct, frozen=True, kw_only=True):
    """Where a running `wake infra up` serves; the content of `endpoints.json`."""

    nats_url: str
    database_url: str
    nats_pid: int
    postgres_pid: int
    infra_pid: int
    """The `wake infra up` (or `wake up`) process that owns both servers."""
    data_dir: str
    started_at: datetime | None = None
    nats_pids: list[int] = []
    """Every node's pid, with `--nats-cluster N`; `nats_url` then lists every node."""
    stream_replicas: int = 1
    """Replicas of WAKE_EVENTS and WAKE_BUNDLES (the cluster's size)."""
    nats_admin: str = ""
    """File (0600) of `nats.connect(nats_url, **kwargs)` keyword arguments: the admin."""
    nats_operator: str = ""
    """The same for the operator identity, the one `wake` commands use."""
    admin_public_key: str = ""
    """The admin's Ed25519 public key (base64): the trust anchor of every reader of the log."""
    signing_key: str = ""
    """File (0600) of the signing key of the person who started Wake: `wake` commands sign
    with it (their actor is its identity) unless WAKE_SIGNING_KEY names another."""
    database_reader_url: str = ""
    """PostgreSQL as the read-only role the console connects as."""


class InfraError(RuntimeError):
    """Something the operator must fix; the message is one line naming the culprit."""


class InfraNotRunning(InfraError):
    """No `wake infra up` serves the data dir."""


class DataDirInUse(InfraError):
    """Another `wake infra up` already serves the data dir."""


class _Server(Protocol):
    url: str

    @property
    def pid(self) -> int: ...

    async def stop(self) -> None: ...


_S = TypeVar("_S", bound=_Server)


def default_data_dir() -> Path:
    """`$WAKE_DATA_DIR`, else `./.wake`."""
    return Path(os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR)


def load_endpoints(data_dir: Path) -> Endpoints:
    """The endpoints of the `wake infra up` serving `data_dir`.

    Raises InfraNotRunning when none does: no endpoints.json, or one left
    behind by an owner that was killed before it could remove it.
    """
    path = Path(data_dir) / ENDPOINTS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InfraNotRunning(
            f"no Wake infrastructure is running on {data_dir} ({path} not found); "
            f"start it with `wake infra up --data-dir {data_dir}`"
        ) from None
    try:
        endpoints = msgspec.json.decode(raw, type=Endpoints)
    except msgspec.ValidationError as exc:
        raise InfraError(f"{path} is not a Wake endpoints file: {exc}") from None
    if not _process_exists(endpoints.infra_pid):
        raise InfraNotRunning(
            f"no Wake infrastructure is running on {data_dir}: {path} is left over from "
            f"`wake infra up` pid {endpoints.infra_pid}, which is gone"
        )
    return endpoints


class _Revival:
    """How often one server has been restarted, and whether it is being restarted now."""

    def __init__(self) -> None:
        self.restarts = 0
        self.failures = 0
        """Deaths and failed starts in a row, each within a minute of the last start."""
        self.started_at = time.monotonic()
        self.task: asyncio.Task[None] | None = None


class RunningInfra:
    """Both servers of a data dir, provisioned, with endpoints.json published."""

    def __init__(
        self,
        *,
        data_dir: Path,
        lock_fd: int,
        nats: EmbeddedNats | EmbeddedNatsCluster,
        postgres: EmbeddedPostgres,
        endpoints: Endpoints,
        published: bool,
        restart_attempts: int = DEFAULT_RESTART_ATTEMPTS,
    ) -> None:
        self.data_dir = data_dir
        self.restart_attempts = restart_attempts
        self.nats = nats
        self.postgres = postgres
        self.endpoints = endpoints
        self._published = published
        self._lock_fd: int | None = lock_fd
        self._revivals: dict[str, _Revival] = {}
        self._gave_up: str | None = None
        self.on_restarted: Callable[[RunningInfra], None] = lambda infra: None
        """Called after a server was restarted (its pid changed), e.g. to republish."""

    @property
    def nats_nodes(self) -> list[EmbeddedNats]:
        return list(self.nats.nodes)

    def restarts(self) -> dict[str, int]:
        """Restarts so far, by server name (`nats-server`, `nats-server n2`, `postgres`)."""
        return {name: revival.restarts for name, revival in self._revivals.items()}

    def _node_name(self, node: EmbeddedNats) -> str:
        nodes = self.nats_nodes
        return "nats-server" if len(nodes) == 1 else f"nats-server n{nodes.index(node) + 1}"

    def keep_alive(self) -> str | None:
        """Restart, in the background and with backoff, every server that died on its own.

        Call it every fraction of a second. Returns why Wake gives up -- a server
        that could not be brought back -- or None while all is (or will be) well.
        """
        if self._gave_up is not None:
            return self._gave_up
        if self._lock_fd is None:
            return None
        dead: list[tuple[str, EmbeddedNats | None]] = [
            (self._node_name(node), node)
            for node in self.nats_nodes
            if node.process.poll() is not None
        ]
        if self.postgres.process.poll() is not None:
            dead.append(("postgres", None))
        for name, node in dead:
            revival = self._revivals.setdefault(name, _Revival())
            if revival.task is not None:
                continue
            code = node.process.returncode if node is not None else self.postgres.process.returncode
            where = node.log_path if node is not None else self.postgres.log_path
            log.warning("%s exited with code %s (see %s); restarting it", name, code, where)
            revival.task = asyncio.create_task(self._revive(name, node, revival))
        return self._gave_up

    async def _revive(self, name: str, node: EmbeddedNats | None, revival: _Revival) -> None:
        if time.monotonic() - revival.started_at > _REVIVED_AFTER:
            revival.failures = 0
        try:
            while True:
                revival.failures += 1
                if revival.failures > self.restart_attempts:
                    self._gave_up = (
                        f"{name} died and was not brought back after {self.restart_attempts} "
                        f"attempts in a row; see {self._log_of(node)}"
                    )
                    log.error("%s", self._gave_up)
                    return
                await asyncio.sleep(min(_REVIVE_FIRST * 2 ** (revival.failures - 1), _REVIVE_MAX))
                try:
                    if node is not None:
                        await node.restart()
                    else:
                        await self.postgres.stop()
                        self.postgres = await start_postgres(self.data_dir, port=self.postgres.port)
                except (NatsStartError, PostgresError) as exc:
                    log.warning("%s did not start again: %s", name, _first_line(exc))
                    continue
                revival.restarts += 1
                revival.started_at = time.monotonic()
                log.warning("%s restarted (restart %d)", name, revival.restarts)
                self._record_pids()
                return
        finally:
            revival.task = None

    def _log_of(self, node: EmbeddedNats | None) -> Path:
        return node.log_path if node is not None else self.postgres.log_path

    def _record_pids(self) -> None:
        nodes = self.nats_nodes
        self.endpoints = msgspec.structs.replace(
            self.endpoints,
            nats_pid=nodes[0].pid,
            nats_pids=[node.pid for node in nodes] if len(nodes) > 1 else [],
            postgres_pid=self.postgres.pid,
        )
        if self._published:
            _publish(self.data_dir / ENDPOINTS_FILE, self.endpoints)
        self.on_restarted(self)

    async def stop(self) -> None:
        """Unpublish the endpoints, stop both servers, release the data dir; idempotent."""
        if self._lock_fd is None:
            return
        # Unpublish first: from here on nobody should start using the servers.
        if self._published:
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / ENDPOINTS_FILE).unlink()
        revivals = [r.task for r in self._revivals.values() if r.task is not None]
        for task in revivals:
            task.cancel()
        await asyncio.gather(*revivals, return_exceptions=True)
        try:
            await _stop_all([self.postgres, self.nats])
        finally:
            os.close(self._lock_fd)
            self._lock_fd = None


async def start_infra(
    data_dir: Path,
    *,
    nats_port: int | None = None,
    postgres_port: int | None = None,
    publish: bool = True,
    nats_cluster: int = 1,
    restart_attempts: int = DEFAULT_RESTART_ATTEMPTS,
    partitions: int = 1,
) -> RunningInfra:
    """Start NATS and PostgreSQL on `data_dir`, provision the log, publish endpoints.json.

    NATS refuses unauthenticated clients: every identity of `events/ownership.py`
    gets its credentials under `data_dir/credentials/nats/` (made once, 0600),
    the server the permissions of `services/wiring/permissions.py`. The admin
    provisions the stream, the object store and every service's durable
    consumers (`partitions` of each). With WAKE_NATS_TLS_CERT and _KEY set,
    clients must use TLS (and trust WAKE_NATS_TLS_CA).

    `nats_cluster`: with more than one, a JetStream cluster of that many nodes
    on loopback (`nats_port` is then not used), the log replicated on each.

    With `publish=False` endpoints.json is neither written nor removed: the
    caller (`wake up`) publishes its own once everything it runs is ready.
    On failure (or cancellation) whatever was started is stopped again.
    Raises DataDirInUse, InfraError.
    """
    data_dir, lock_fd = await asyncio.to_thread(_lock_data_dir, Path(data_dir))
    started: list[_Server] = []
    try:
        try:
            await asyncio.to_thread(keys.ensure_keys, data_dir)
        except OSError as exc:
            raise InfraError(f"cannot write the keys under {data_dir}: {exc}") from None
        for name, port in (("NATS", nats_port), ("PostgreSQL", postgres_port)):
            if port is not None and not port_is_free(port):
                raise InfraError(f"{name} port 127.0.0.1:{port} is already in use")
        credentials, security = await asyncio.to_thread(
            bus_security, data_dir, partitions=partitions
        )
        try:
            signing_keys = await asyncio.to_thread(ensure_signing_keys, data_dir / SIGNING_DIR)
        except (OSError, SigningKeyError) as exc:
            raise InfraError(f"cannot make the signing keys under {data_dir}: {exc}") from None
        try:
            nats_server: EmbeddedNats | EmbeddedNatsCluster
            if nats_cluster > 1:
                nats_server = await _start_uncancellable(
                    start_nats_cluster(data_dir, nodes=nats_cluster, security=security)
                )
            else:
                nats_server = await _start_uncancellable(
                    start_nats(data_dir, port=nats_port, security=security)
                )
        except NatsStartError as exc:
            raise InfraError(_first_line(exc)) from None
        started.append(nats_server)
        try:
            postgres = await _start_uncancellable(start_postgres(data_dir, port=postgres_port))
        except PostgresError as exc:
            raise InfraError(_first_line(exc)) from None
        started.append(postgres)
        replicas = max(nats_cluster, 1)
        await provision_log(
            nats_server.url,
            replicas=replicas,
            connect_kwargs=security.connect_kwargs(),
            partitions=partitions,
            admin_key=signing_keys.admin,
            register=signing_keys.all(),
        )
        endpoints = Endpoints(
            nats_url=nats_server.url,
            database_url=postgres.url,
            database_reader_url=postgres.reader_url,
            nats_pid=nats_server.pid,
            postgres_pid=postgres.pid,
            infra_pid=os.getpid(),
            started_at=datetime.now(UTC),
            data_dir=str(data_dir),
            nats_pids=[node.pid for node in nats_server.nodes] if nats_cluster > 1 else [],
            stream_replicas=replicas,
            nats_admin=str(credentials.file(ADMIN)),
            nats_operator=str(credentials.file(OPERATOR)),
            admin_public_key=encode_key(signing_keys.admin.public),
            signing_key=str(signing_keys.file(signing_keys.person.identity)),
        )
        if publish:
            await asyncio.to_thread(_publish, data_dir / ENDPOINTS_FILE, endpoints)
    except BaseException:
        try:
            await _stop_all(reversed(started))
        finally:
            os.close(lock_fd)
        raise
    return RunningInfra(
        data_dir=data_dir,
        lock_fd=lock_fd,
        nats=nats_server,
        postgres=postgres,
        endpoints=endpoints,
        published=publish,
        restart_attempts=restart_attempts,
    )


async def serve(
    data_dir: Path,
    *,
    nats_port: int | None = None,
    postgres_port: int | None = None,
    nats_cluster: int = 1,
    restart_attempts: int = DEFAULT_RESTART_ATTEMPTS,
    on_ready: Callable[[RunningInfra], None] = lambda infra: None,
    on_stopping: Callable[[str], None] = lambda reason: None,
) -> None:
    """Run the infrastructure until SIGINT or SIGTERM, then stop it cleanly.

    A server that dies on its own is restarted with backoff. A signal during
    startup aborts it. Raises InfraError if startup fails or a server cannot be
    brought back (after stopping the other one).
    """
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    reason: list[str] = []

    def request_stop(signum: int) -> None:
        reason.append(signal.Signals(signum).name)
        stop_requested.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, request_stop, signum)
    try:
        startup = asyncio.create_task(
            start_infra(
                data_dir,
                nats_port=nats_port,
                postgres_port=postgres_port,
                nats_cluster=nats_cluster,
                restart_attempts=restart_attempts,
            )
        )
        stop_waiter = asyncio.create_task(stop_requested.wait())
        try:
            await asyncio.wait({startup, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_waiter.cancel()
        if not startup.done():
            # start_infra stops whatever it had started when cancelled.
            startup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await startup
            on_stopping(reason[0])
            return
        infra = startup.result()
        try:
            on_ready(infra)
            died = None
            # Wake up now and then to notice a server that died under us and
            # bring it back; serving endpoints of a server gone for good would
            # mislead every client.
            while died is None and not stop_requested.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_requested.wait(), timeout=0.2)
                died = infra.keep_alive()
            on_stopping(reason[0] if reason else (died or "stop"))
        finally:
            await infra.stop()
        if died is not None:
            raise InfraError(died)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def provision_log(
    nats_url: str,
    *,
    replicas: int = 1,
    wait: float = 0.0,
    connect_kwargs: Mapping[str, Any] | None = None,
    partitions: int = 1,
    consumers: bool = True,
    admin_key: SigningKey | None = None,
    register: Sequence[SigningKey] = (),
) -> None:
    """Create (or converge) the WAKE_EVENTS stream, WAKE_BUNDLES object store and every
    service's durable consumers at `nats_url`, connecting with `connect_kwargs` (the admin's).
    With `admin_key`, register the signing keys `register` the log does not know yet
    (KeyRegistered events signed by the admin key).

    Keeps trying to connect for `wait` seconds (a server still starting, as
    in docker compose). Raises InfraError naming the server on failure.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    last_error: list[BaseException] = []

    async def remember(error: BaseException) -> None:
        # nats-py's default error callback logs a traceback per failed attempt.
        last_error.append(error)

    while True:
        try:
            # max_reconnect_attempts=0 would mean "forever" to nats-py; 1 makes
            # it give up after two quick attempts and leaves the pacing to us.
            options: dict[str, Any] = {
                "connect_timeout": 2,
                "allow_reconnect": False,
                "max_reconnect_attempts": 1,
                "reconnect_time_wait": 0.1,
                "error_cb": remember,
            }
            options.update(connect_kwargs or {})
            nc = await nats.connect(nats_servers(nats_url), **options)
            break
        except (OSError, TimeoutError, NatsError) as exc:
            if loop.time() >= deadline:
                cause = last_error[-1] if last_error else exc
                detail = str(cause) or type(cause).__name__
                raise InfraError(f"cannot connect to NATS at {nats_url}: {detail}") from None
            await asyncio.sleep(0.2)
    try:
        await provision(nc, replicas=replicas)
        if consumers:
            await provision_consumers(EventLog(nc), partitions=partitions)
        if admin_key is not None:
            admin_log = EventLog(nc)
            admin_log.signer = KeySigner(admin_key)
            admin_log.trust = Trust(admin_key.public)
            await register_keys(admin_log, register)
    except (JetStreamError, NatsError, TimeoutError) as exc:
        detail = str(exc) or type(exc).__name__
        refused = [str(e) for e in last_error if "permissions violation" in str(e)]
        if refused:
            # The server drops a request it does not permit: the client only sees a
            # timeout, and the reason arrives on the error callback.
            detail = f"{refused[0]} (only the admin identity may provision)"
        raise InfraError(f"provisioning the event log on {nats_url} failed: {detail}") from None
    finally:
        await nc.close()


def service_consumers() -> list[ConsumerSettings]:
    """Every service's durable consumers, as the services declare them."""
    # Imported here: the services import this module's neighbours, and `wake`
    # commands that never provision should not pay for loading every service.
    from services.applier.service import CONSUMER as APPLIER
    from services.git_watcher.service import sync_consumer
    from services.notifier.service import CONSUMER as NOTIFIER
    from services.planner.service import CONSUMER as PLANNER
    from services.renderer.service import CONSUMER as RENDERER

    return [sync_consumer(), RENDERER, PLANNER, APPLIER, NOTIFIER]


async def provision_consumers(event_log: EventLog, *, partitions: int = 1) -> None:
    """Create or converge every service's durable consumers (as the admin: services may not)."""
    concurrency = Settings().concurrency
    for settings in service_consumers():
        await ensure_consumer(
            event_log,
            dataclasses.replace(settings, concurrency=concurrency),
            Placement(partitions=partitions),
        )


def bus_security(data_dir: Path, *, partitions: int = 1) -> tuple[BusCredentials, ServerSecurity]:
    """The data dir's NATS identities (made once) and the server settings that enforce them."""
    credentials = ensure_credentials(data_dir / CREDENTIALS_DIR)
    cert = os.environ.get(ENV_NATS_TLS_CERT, "")
    key = os.environ.get(ENV_NATS_TLS_KEY, "")
    if bool(cert) != bool(key):
        raise InfraError(
            f"TLS for NATS needs both {ENV_NATS_TLS_CERT} and {ENV_NATS_TLS_KEY} "
            f"(got only {ENV_NATS_TLS_CERT if cert else ENV_NATS_TLS_KEY})"
        )
    try:
        tls = client_tls(os.environ.get(ENV_NATS_TLS_CA, "")) if cert else None
    except CredentialsError as exc:
        raise InfraError(str(exc)) from None
    security = ServerSecurity(
        authorization=credentials.authorization(partitions=partitions),
        probe=credentials.kwargs(ADMIN),
        route_password=credentials.route_password,
        tls_cert=str(Path(cert).resolve()) if cert else "",
        tls_key=str(Path(key).resolve()) if key else "",
        client_tls=tls,
    )
    return credentials, security


# --- the data dir -------------------------------------------------------------


def _lock_data_dir(data_dir: Path) -> tuple[Path, int]:
    """Create and lock `data_dir`; return it resolved and the locked descriptor."""
    try:
        data_dir = private_dir(data_dir.resolve(), mode=data_dir_mode())
        return data_dir, lock_exclusively(data_dir / LOCK_FILE)
    except LockHeld as held:
        raise DataDirInUse(
            f"data dir {data_dir} is already in use by another Wake (pid {held.holder})"
        ) from None
    except OSError as exc:
        raise InfraError(f"cannot create or write data dir {data_dir}: {exc.strerror}") from None


def _publish(path: Path, endpoints: Endpoints) -> None:
    """Write `path` atomically: a reader sees the old file, no file, or the whole new one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # 0600: it names the servers and the database role's password.
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
        file.write(msgspec.json.format(msgspec.json.encode(endpoints)) + b"\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


async def _start_uncancellable(starting: Coroutine[Any, Any, _S]) -> _S:
    """Await a server's start; if cancelled meanwhile, let it finish and stop it, then re-raise.

    A starter cancelled half-way may already have spawned its process and
    lose track of it; the server it returns is the only handle to stop it.
    """
    task = asyncio.ensure_future(starting)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await (await task).stop()
        raise


async def _stop_all(servers: Iterable[_Server]) -> None:
    """Stop every server even if one of them fails to; re-raise the first failure."""
    results = await asyncio.gather(*(server.stop() for server in servers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
