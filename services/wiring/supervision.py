"""`wake up`: the embedded infrastructure, an optional sandbox cluster, and every
service as its own supervised process.

A service (or the sandbox) that exits while Wake is up is restarted with
backoff; its restarts are counted and shown. So are NATS and PostgreSQL (see
`infra.RunningInfra.keep_alive`); when one of them cannot be brought back,
supervision ends with GaveUp. The data dir's endpoints.json is published only
once every part is ready, and removed before anything is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from services.wiring import infra, signing
from services.wiring.credentials import CREDENTIALS_DIR, ENV_CREDENTIALS
from services.wiring.ports import free_port
from services.wiring.private import data_dir_mode, private_dir
from services.wiring.runtime import READY_FILE_ENV, SERVICES

log = logging.getLogger(__name__)

# Backoff between restarts of a crashing service: 0.5 s doubling up to 30 s,
# back to 0.5 s once it has run for a minute.
_RESTART_MIN, _RESTART_MAX, _HEALTHY_AFTER = 0.5, 30.0, 60.0


class StartupError(RuntimeError):
    """A part of Wake did not come up; the message names it and where its log is."""


class GaveUp(RuntimeError):
    """A server Wake depends on died and could not be restarted; the message says which."""


@dataclass
class Child:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path | None
    ready_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    backoff: float = _RESTART_MIN
    # Which service this process is a replica of, and which replica (0: the first).
    service: str = ""
    replica: int = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def spawn(self) -> None:
        if self.ready_file is not None:
            self.ready_file.unlink(missing_ok=True)
        output = self.log_path.open("ab") if self.log_path is not None else None
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT if output is not None else None,
                stdin=subprocess.DEVNULL,
                # Own process group: the terminal's Ctrl-C reaches only `wake up`,
                # which then stops the services in order.
                start_new_session=True,
            )
        finally:
            if output is not None:
                output.close()
        self.started_at = time.monotonic()

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def is_ready(self) -> bool:
        return self.ready_file is None or self.ready_file.exists()

    def metrics_url(self) -> str:
        """The /metrics URL the running process announced in its ready file, or ""."""
        if self.ready_file is None:
            return ""
        try:
            announced = json.loads(self.ready_file.read_text())
        except (OSError, ValueError):
            return ""
        return str(announced.get("metrics", "")) if isinstance(announced, dict) else ""

    async def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            process.kill()
            await asyncio.to_thread(process.wait)


class WakeEndpoints(msgspec.Struct, frozen=True, kw_only=True):
    """endpoints.json of a running `wake up`: the infrastructure's, plus the rest."""

    nats_url: str
    database_url: str
    kubeconfig: str
    sandbox: bool
    data_dir: str
    infra_pid: int
    nats_pid: int
    postgres_pid: int
    services: dict[str, int] = {}
    webhook_url: str = ""
    api_url: str = ""
    """The console: its REST API under `/api/v1`, its web UI at `/`."""
    chat_url: str = ""
    """Where the notifier takes chat platforms' requests: `<chat_url>/slack`."""
    nats_pids: list[int] = []
    stream_replicas: int = 1
    nats_admin: str = ""
    """File (0600) of `nats.connect(nats_url, **kwargs)` keyword arguments: the admin."""
    nats_operator: str = ""
    """The same for the operator identity, the one `wake` commands use."""
    admin_public_key: str = ""
    """The admin's Ed25519 public key: the trust anchor of every reader of the log."""
    signing_key: str = ""
    """The key file `wake` commands sign with: the person's who ran `wake up`."""
    # Every replica's pid per service (`services` has the first's).
    replicas: dict[str, list[int]] = {}
    metrics: dict[str, str] = {}
    """Each process's Prometheus URL (`http://HOST:PORT/metrics`), by service (a later
    replica as `<service>-<i>`), `infra` for the embedded servers of `wake up`;
    `/healthz` and `/readyz` are on the same host and port."""


@dataclass
class RunningWake:
    data_dir: Path
    infrastructure: infra.RunningInfra
    kubeconfig: str
    sandbox: Child | None
    services: dict[str, Child] = field(default_factory=dict)
    webhook_url: str = ""
    webhook_secret_file: str = ""
    api_url: str = ""
    login_url: str = ""
    """The one-time admin login link of the console (printed by `wake up`, never stored)."""
    chat_url: str = ""
    infra_metrics: str = ""
    infra_health: object | None = None
    infra_watch: asyncio.Task | None = None

    @property
    def endpoints(self) -> WakeEndpoints:
        base = self.infrastructure.endpoints
        return WakeEndpoints(
            nats_url=base.nats_url,
            database_url=base.database_url,
            kubeconfig=self.kubeconfig,
            sandbox=self.sandbox is not None,
            data_dir=str(self.data_dir),
            infra_pid=base.infra_pid,
            nats_pid=base.nats_pid,
            postgres_pid=base.postgres_pid,
            services={
                child.service or name: child.pid or 0
                for name, child in self.services.items()
                if child.replica == 0
            },
            webhook_url=self.webhook_url,
            api_url=self.api_url,
            chat_url=self.chat_url,
            nats_pids=base.nats_pids,
            stream_replicas=base.stream_replicas,
            nats_admin=base.nats_admin,
            nats_operator=base.nats_operator,
            admin_public_key=base.admin_public_key,
            signing_key=base.signing_key,
            replicas=self.replica_pids(),
            metrics=self.metrics(),
        )

    def metrics(self) -> dict[str, str]:
        """Each process's announced /metrics URL (and `infra`: `wake up`'s own)."""
        urls = {name: child.metrics_url() for name, child in self.services.items()}
        urls = {name: url for name, url in urls.items() if url}
        if self.infra_metrics:
            urls["infra"] = self.infra_metrics
        return urls

    def replica_pids(self) -> dict[str, list[int]]:
        pids: dict[str, list[int]] = {}
        for name, child in self.services.items():
            pids.setdefault(child.service or name, []).append(child.pid or 0)
        return pids

    def publish(self) -> None:
        path = self.data_dir / infra.ENDPOINTS_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(msgspec.json.format(msgspec.json.encode(self.endpoints)))
        os.replace(temporary, path)

    async def supervise(self, stop: asyncio.Event) -> str:
        """Restart servers, the sandbox and services that exit, until `stop`.

        Returns why supervision ended; raises GaveUp when NATS or PostgreSQL
        died and could not be started again.
        """
        self.infrastructure.on_restarted = lambda infrastructure: self.publish()
        published = self.metrics()
        while not stop.is_set():
            gave_up = self.infrastructure.keep_alive()
            if gave_up is not None:
                raise GaveUp(gave_up)
            children = [self.sandbox] if self.sandbox is not None else []
            for child in [*children, *self.services.values()]:
                code = child.exited()
                if code is None:
                    if time.monotonic() - child.started_at > _HEALTHY_AFTER:
                        child.backoff = _RESTART_MIN
                    continue
                if time.monotonic() - child.started_at < child.backoff:
                    continue
                child.restarts += 1
                log.warning(
                    "%s exited with code %s; restarting it (restart %d)",
                    child.name,
                    code,
                    child.restarts,
                )
                child.backoff = min(child.backoff * 2, _RESTART_MAX)
                child.spawn()
                self.publish()
            # A restarted service serves its metrics on a new port once it is ready.
            current = self.metrics()
            if current != published:
                published = current
                self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)
        return "stop requested"

    async def stop(self) -> None:
        """Unpublish, stop the services, then the sandbox, then NATS and PostgreSQL."""
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / infra.ENDPOINTS_FILE).unlink()
        if self.infra_watch is not None:
            self.infra_watch.cancel()
            with contextlib.suppress(BaseException):
                await self.infra_watch
        if self.infra_health is not None:
            await self.infra_health.stop()
        await asyncio.gather(*(child.stop() for child in self.services.values()))
        if self.sandbox is not None:
            await self.sandbox.stop()
        await self.infrastructure.stop()


def _webhook_secret_file(data_dir: Path) -> Path:
    """DATA_DIR/webhook-secret, made once with a random secret, mode 0600."""
    path = data_dir / "webhook-secret"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32))
    return path


def _wake_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", *args]


def _partitions(replicas: int) -> int:
    """Partitions of each service's consumer: WAKE_PARTITIONS, else one per replica."""
    configured = os.environ.get("WAKE_PARTITIONS", "")
    return int(configured) if configured.isdigit() and int(configured) > 0 else replicas


def _replica_env(base_env: dict[str, str], replica: int, replicas: int) -> dict[str, str]:
    """What tells replica `replica` of `replicas` its share of the work."""
    return {
        "WAKE_REPLICAS": str(replicas),
        "WAKE_REPLICA_SLOT": str(replica),
        # One partition per replica unless set: each replica owns one at first.
        "WAKE_PARTITIONS": str(_partitions(replicas)),
        # One webhook receiver (the first git-watcher's): the port is taken once.
        **({"WAKE_WEBHOOK_PORT": "0"} if replica > 0 else {}),
        # ... and one taker of chat requests and commands (the first notifier's).
        **({"WAKE_CHAT_PORT": "0"} if replica > 0 else {}),
    }


async def _wait_ready(children: list[Child], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for child in children:
            code = child.exited()
            if code is not None:
                where = f"; see {child.log_path}" if child.log_path else ""
                raise StartupError(f"{child.name} exited with code {code} while starting{where}")
        if all(child.is_ready() for child in children):
            return
        if time.monotonic() > deadline:
            waiting = ", ".join(c.name for c in children if not c.is_ready())
            raise StartupError(f"not ready after {timeout:.0f}s: {waiting}")
        await asyncio.sleep(0.05)


async def _serve_infra_metrics(running: RunningWake, host: str) -> None:
    """`wake up`'s own /metrics, /healthz, /readyz: the embedded NATS and PostgreSQL."""
    from services.wiring.health import HealthServer
    from services.wiring.metrics import InfraWatch

    watch = InfraWatch(running.infrastructure)
    health = HealthServer(host=host, port=0)
    health.add_check("nats", watch.nats_ready)
    health.add_check("postgres", watch.postgres_ready)
    await health.start()
    running.infra_health = health
    running.infra_watch = asyncio.create_task(watch.run())
    running.infra_metrics = f"{health.url}/metrics"


async def start_wake(
    data_dir: Path,
    *,
    sandbox: bool = False,
    sandbox_latency_ms: float = 0.0,
    sandbox_ready_workloads: bool = False,
    kubeconfig: str = "",
    log_dir: Path | None = None,
    extra_env: dict[str, str] | None = None,
    services: list[str] | None = None,
    ready_timeout: float = 60.0,
    nats_cluster: int = 1,
    restart_attempts: int = infra.DEFAULT_RESTART_ATTEMPTS,
    replicas: int = 1,
) -> RunningWake:
    """Start everything `wake up` runs and return once all of it is ready.

    `log_dir`: where each process writes its output (default: this terminal).
    `nats_cluster`: NATS nodes (a JetStream cluster on loopback when more than one).
    `replicas`: processes per service; they split the apps between them
    (`consumers.py`), replica i of n named `<service>` for i = 0, else `<service>-<i+1>`.
    """
    data_dir = private_dir(Path(data_dir).resolve(), mode=data_dir_mode())
    run_dir = private_dir(data_dir / "run")
    if log_dir is not None:
        private_dir(log_dir)
    infrastructure = await infra.start_infra(
        data_dir,
        publish=False,
        nats_cluster=nats_cluster,
        restart_attempts=restart_attempts,
        # The replicas' layout of durable consumers, provisioned (and permitted) by the admin.
        partitions=_partitions(replicas),
    )
    running = RunningWake(
        data_dir=data_dir, infrastructure=infrastructure, kubeconfig=kubeconfig, sandbox=None
    )
    try:
        base_env = {
            **os.environ,
            **(extra_env or {}),
            "WAKE_DATA_DIR": str(data_dir),
            "WAKE_NATS_URL": infrastructure.endpoints.nats_url,
            "WAKE_DATABASE_URL": infrastructure.endpoints.database_url,
            # The cluster's replicas, for every process that reads the setting
            # (services no longer provision: `wake up` did, above).
            infra.ENV_STREAM_REPLICAS: str(infrastructure.endpoints.stream_replicas),
            # The trust anchor every reader verifies the log's key registrations with.
            signing.ENV_ADMIN_PUBLIC_KEY: infrastructure.endpoints.admin_public_key,
        }
        if base_env.get("WAKE_NOTIFY_CONFIG"):
            # The notify file, for the notifier and the planner (groups of approvers),
            # whatever directory a restarted service finds itself in.
            notify = Path(base_env["WAKE_NOTIFY_CONFIG"]).expanduser()
            base_env["WAKE_NOTIFY_CONFIG"] = str(notify.resolve())
        if sandbox:
            kubeconfig_path = data_dir / "sandbox" / "kubeconfig"
            kubeconfig_path.parent.mkdir(exist_ok=True)
            kubeconfig_path.unlink(missing_ok=True)
            child = Child(
                name="sandbox",
                argv=_wake_command(
                    "sandbox",
                    "--port",
                    str(free_port()),
                    "--kubeconfig",
                    str(kubeconfig_path),
                    "--latency-ms",
                    str(sandbox_latency_ms),
                    *(["--ready-workloads"] if sandbox_ready_workloads else []),
                    # A cluster outlives Wake: the sandbox of `wake up` keeps its
                    # objects in the data dir, or apps would say synced over nothing.
                    "--state-file",
                    str(data_dir / "sandbox" / "objects.json"),
                ),
                env=base_env,
                log_path=log_dir / "sandbox.log" if log_dir else None,
                ready_file=kubeconfig_path,
            )
            child.spawn()
            running.sandbox = child
            await _wait_ready([child], ready_timeout)
            running.kubeconfig = str(kubeconfig_path)
        if running.kubeconfig:
            base_env["WAKE_KUBECONFIG"] = running.kubeconfig
        # git-watcher receives webhooks only with a secret to check them against:
        # without one given, Wake makes one (readable by this user only) and
        # says where it is, so a forge can be pointed at webhook_url at once.
        if not (base_env.get("WAKE_WEBHOOK_SECRET") or base_env.get("WAKE_WEBHOOK_SECRET_FILE")):
            base_env["WAKE_WEBHOOK_SECRET_FILE"] = str(_webhook_secret_file(data_dir))
        port = base_env.get("WAKE_WEBHOOK_PORT") or str(free_port())
        host = base_env.get("WAKE_WEBHOOK_HOST") or "127.0.0.1"
        base_env["WAKE_WEBHOOK_PORT"] = port
        running.webhook_url = f"http://{host}:{port}"
        running.webhook_secret_file = base_env.get("WAKE_WEBHOOK_SECRET_FILE", "")
        # The console: a port of its own, and a one-time admin login link. Only the
        # key's digest goes to the api process; the key is in the link alone.
        api_port = base_env.get("WAKE_API_PORT") or str(free_port())
        api_host = base_env.get("WAKE_API_HOST") or "127.0.0.1"
        running.api_url = f"http://{api_host}:{api_port}"
        login_key = "wake_" + secrets.token_urlsafe(32)
        running.login_url = f"{running.api_url}/login?key={login_key}"
        api_env = {
            # The console reads as the read-only role (it never writes a read model).
            "WAKE_DATABASE_URL": infrastructure.endpoints.database_reader_url
            or base_env["WAKE_DATABASE_URL"],
            "WAKE_API_PORT": api_port,
            "WAKE_API_HOST": api_host,
            "WAKE_API_LOGIN_DIGEST": hashlib.sha256(login_key.encode()).hexdigest(),
        }
        # The notifier takes chat platforms' requests (Slack's buttons, ...) here.
        chat_port = base_env.get("WAKE_CHAT_PORT") or str(free_port())
        chat_host = base_env.get("WAKE_CHAT_HOST") or "127.0.0.1"
        base_env["WAKE_CHAT_PORT"] = chat_port
        running.chat_url = f"http://{chat_host}:{chat_port}"
        credentials = data_dir / CREDENTIALS_DIR
        for service in services or list(SERVICES):
            for replica in range(replicas):
                name = service if replica == 0 else f"{service}-{replica + 1}"
                env = {
                    **base_env,
                    READY_FILE_ENV: str(run_dir / f"{name}.ready"),
                    # Each service is its own identity on the bus, with its own rights.
                    ENV_CREDENTIALS: str(credentials / f"{service}.json"),
                    # ... and signs what it appends with its own key.
                    signing.ENV_SIGNING_KEY: str(
                        data_dir / signing.SIGNING_DIR / signing.file_name(f"service:{service}")
                    ),
                }
                if service == "api":
                    env.update(api_env)
                    if replica > 0:
                        # The first replica serves api_url; each other one a port of its own.
                        env["WAKE_API_PORT"] = str(free_port())
                if replicas > 1:
                    env.update(_replica_env(base_env, replica, replicas))
                # Its /metrics, /healthz and /readyz on a port it picks and announces
                # in its ready file (endpoints.json's `metrics`); OTEL_* pass through.
                env["WAKE_METRICS_HOST"] = base_env.get("WAKE_METRICS_HOST") or "127.0.0.1"
                env["WAKE_METRICS_PORT"] = "0"
                running.services[name] = Child(
                    name=name,
                    argv=_wake_command("run", service),
                    env=env,
                    log_path=log_dir / f"{name}.log" if log_dir else None,
                    ready_file=run_dir / f"{name}.ready",
                    service=service,
                    replica=replica,
                )
                running.services[name].spawn()
        await _wait_ready(list(running.services.values()), ready_timeout)
        await _serve_infra_metrics(running, base_env.get("WAKE_METRICS_HOST") or "127.0.0.1")
        running.publish()
    except BaseException:
        await running.stop()
        raise
    return running
