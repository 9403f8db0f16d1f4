"""Process lifecycle of one service: `wake run SERVICE`.

Connects to the log, sets up logging and tracing, turns SIGTERM/SIGINT into
a stop event, runs the service's `main(ctx)` until it returns, then closes
cleanly. A service announces it is ready (its consumers exist, it will not
miss an event appended from now on) with `ctx.ready()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from events import ownership
from events.envelope import Envelope, new_event
from events.payloads import Payload
from services.wiring import keys, logs, signing, telemetry
from services.wiring.credentials import (
    CREDENTIALS_DIR,
    ENV_CREDENTIALS,
    CredentialsError,
    client_tls,
    load_connect_kwargs,
)
from services.wiring.eventlog import EventLog, LogNotProvisioned, require_provisioned
from services.wiring.health import HealthServer
from services.wiring.leases import SlotLease
from services.wiring.metrics import ConsumerWatch
from services.wiring.permissions import partition_names
from services.wiring.settings import Settings, SettingsError, require_nats

# service name -> "module:function" of its `async def main(ctx)`
SERVICES: dict[str, str] = {
    "git-watcher": "services.git_watcher.service:main",
    "renderer": "services.renderer.service:main",
    "planner": "services.planner.service:main",
    "applier": "services.applier.service:main",
    "notifier": "services.notifier.service:main",
    "projector": "services.projector.service:main",
    "api": "services.api.service:main",
}

READY_FILE_ENV = "WAKE_READY_FILE"

# Once asked to stop, a service's main gets this long to finish what it holds
# (ack, append) before it is cancelled; less with NATS unreachable, where
# nothing it holds can finish and every wait would run out its timeout. With
# the bounded close after it (3 s), both stay under the supervisor's 10 s
# before SIGKILL.
STOP_GRACE = 6.0
STOP_GRACE_DISCONNECTED = 1.0


@dataclass
class ServiceContext:
    """What a service's shell gets: the log, its settings, and when to stop."""

    name: str
    settings: Settings
    log: EventLog
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready_file: Path | None = None
    health: HealthServer | None = None
    """Its /metrics, /healthz and /readyz; a shell adds its own readiness checks."""
    is_ready: bool = False

    @property
    def actor(self) -> str:
        return f"service:{self.name}"

    def ready(self) -> None:
        """Tell the supervisor this service is serving."""
        self.is_ready = True
        if self.ready_file is not None:
            self.ready_file.parent.mkdir(parents=True, exist_ok=True)
            # What the supervisor learns from it: which process, and where its
            # /metrics is (a port picked at start: nothing to collide with).
            announced = {"pid": os.getpid()}
            if self.health is not None:
                announced["metrics"] = f"{self.health.url}/metrics"
            temporary = self.ready_file.with_suffix(".tmp")
            temporary.write_text(json.dumps(announced))
            os.replace(temporary, self.ready_file)

    def derive(self, payload: Payload, *, cause: Envelope, key: str = "") -> Envelope:
        """An event caused by `cause`: deterministic id, same journey, current trace."""
        return new_event(
            payload,
            app=cause.app,
            actor=self.actor,
            cause=cause,
            key=key,
            traceparent=telemetry.traceparent() or cause.traceparent,
        )

    async def wait_stop(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if stop was requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
        return self.stop.is_set()


ServiceMain = Callable[[ServiceContext], Awaitable[None]]


def load_main(name: str) -> ServiceMain:
    try:
        target = SERVICES[name]
    except KeyError:
        raise ValueError(
            f"unknown service {name!r}: one of {', '.join(sorted(SERVICES))}"
        ) from None
    module_name, function = target.split(":")
    return getattr(importlib.import_module(module_name), function)


def instance_name(service: str, settings: Settings) -> str:
    """This process's id in the events it appends: WAKE_INSTANCE, or service-host-pid."""
    return settings.instance or f"{service}-{socket.gethostname()}-{os.getpid()}"


def setup_logging(service: str, level: str, log_format: str = "text") -> None:
    try:
        logs.setup_logging(service, level, log_format)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _readiness(ctx: ServiceContext, health: HealthServer, consumers: ConsumerWatch) -> None:
    def nats_connected() -> tuple[bool, str]:
        nc = ctx.log.nc
        return nc.is_connected, "connected" if nc.is_connected else "not connected"

    def started() -> tuple[bool, str]:
        return ctx.is_ready, "serving" if ctx.is_ready else "starting"

    def bound() -> tuple[bool, str]:
        if not ctx.log.nc.is_connected:
            return False, "NATS not connected"
        return consumers.bound()

    health.add_check("nats", nats_connected)
    health.add_check("started", started)
    health.add_check("consumers", bound)


async def run_service(name: str, settings: Settings, *, main: ServiceMain | None = None) -> None:
    """Run service `name` until SIGTERM/SIGINT; its `main(ctx)` must return once ctx.stop is set."""
    main = main or load_main(name)
    setup_logging(name, settings.log_level, settings.log_format)
    try:
        tracing = telemetry.setup_tracing(name, settings.otel_exporter, identity=name)
    except telemetry.TracingError as exc:
        raise SettingsError(str(exc)) from None
    ready_file = os.environ.get(READY_FILE_ENV)
    if ready_file:
        # A file left by the previous run of this container (an emptyDir outlives
        # it) would announce readiness before this run has its consumers.
        Path(ready_file).unlink(missing_ok=True)
    credentials = service_credentials(name, settings)
    try:
        tls = client_tls(settings.nats_tls_ca)
    except CredentialsError as exc:
        raise SettingsError(str(exc)) from None
    log = await EventLog.connect(
        require_nats(settings), name=f"wake-{name}", credentials=credentials, tls=tls
    )
    log.instance = instance_name(name, settings)
    try:
        # Never provisioned here, not even as the admin (or on a server without
        # authentication): a missing stream is a refusal, not a new history.
        await require_provisioned(log.nc)
        keys.use_install_keys(log, settings)
        try:
            signing.use_signing(log, settings, key_file=signing.service_key_file(name, settings))
        except signing.SigningKeyError as exc:
            raise SettingsError(str(exc)) from None
    except BaseException:
        await log.close()
        raise
    slot = None
    if settings.replicas > 1 and settings.replica_slot < 0:
        # Replicas started alike (a scaled Deployment) pick their slots themselves.
        slot = SlotLease(log, name, settings.replicas, holder=log.instance)
        if await slot.claim() is not None:
            settings = msgspec.structs.replace(settings, replica_slot=slot.slot)
        logging.getLogger(__name__).info(
            "%s is replica slot %s of %d", log.instance, slot.slot, settings.replicas
        )
    ctx = ServiceContext(
        name=name, settings=settings, log=log, ready_file=Path(ready_file) if ready_file else None
    )
    await tracing.attach(log.nc)
    consumers = ConsumerWatch(
        log.js,
        [
            partition
            for base in ownership.CONSUMERS.get(name, ())
            for partition in partition_names(base, settings.partitions)
        ],
    )
    if settings.metrics_port >= 0:
        ctx.health = HealthServer(host=settings.metrics_host, port=settings.metrics_port)
        _readiness(ctx, ctx.health, consumers)
        try:
            await ctx.health.start()
        except OSError as exc:
            await log.close()
            raise SettingsError(
                f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
                f"(WAKE_METRICS_HOST / WAKE_METRICS_PORT): {exc.strerror or exc}"
            ) from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ctx.stop.set)
    logger = logging.getLogger(__name__)
    logger.info("%s starting (NATS %s)", name, settings.nats_url)
    if log.bundle_keys is None:
        logger.warning(
            "no bundle keyring at %s (or WAKE_BUNDLE_KEYRING_FILE): bundles stored by %s are "
            "not encrypted; `wake infra up` or `wake infra keys DIR` makes one",
            keys.keyring_path(settings),
            name,
        )
    keeping = asyncio.create_task(slot.keep(ctx.stop)) if slot is not None else None
    watching = asyncio.create_task(consumers.run(ctx.stop))
    try:
        await _run_until_stopped(main(ctx), ctx)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        ctx.stop.set()
        if keeping is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(keeping, STOP_GRACE)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watching
        if log.nc.is_connected:
            await tracing.flush(timeout=2.0)
        if ctx.health is not None:
            await ctx.health.stop()
        await log.close()
        logger.info("%s stopped", name)


# What `wake run` reports in one line: the log (stream or bundle store) is not provisioned.
LogMissing = LogNotProvisioned


def service_credentials(name: str, settings: Settings) -> dict[str, Any] | None:
    """The identity service `name` connects as.

    WAKE_NATS_CREDENTIALS (set by `wake up` for each service, and by compose or
    Kubernetes) names its connect-kwargs file; without it, the service's own
    file in the data dir, if `wake infra up` made one; else none (a server
    without authentication).
    """
    path = settings.nats_credentials
    if not path:
        own = settings.data_path / CREDENTIALS_DIR / f"{name}.json"
        if not own.exists():
            return None
        path = str(own)
    try:
        return load_connect_kwargs(path)
    except CredentialsError as exc:
        raise SettingsError(f"{ENV_CREDENTIALS}: {exc}") from None


async def _run_until_stopped(running: Awaitable[None], ctx: ServiceContext) -> None:
    """Await `running`; once ctx.stop is set, give it a bounded grace, then cancel it.

    An error it raises after the stop request (a request cut short because NATS
    went away meanwhile) is logged in one line, not as a crash: it was stopping.
    """
    logger = logging.getLogger(__name__)
    task = asyncio.ensure_future(running)
    stopping = asyncio.create_task(ctx.stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            grace = STOP_GRACE if ctx.log.nc.is_connected else STOP_GRACE_DISCONNECTED
            await asyncio.wait({task}, timeout=grace)
        if not task.done():
            logger.warning(
                "%s did not finish within %.0fs of the stop request (NATS %s); cancelling it",
                ctx.name,
                grace,
                "connected" if ctx.log.nc.is_connected else "unreachable",
            )
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                logger.warning("%s stopped with an error while cancelled: %r", ctx.name, exc)
            return
        try:
            task.result()
        except Exception as exc:
            if not ctx.stop.is_set():
                raise
            logger.warning("%s stopped with an error while stopping: %r", ctx.name, exc)
    finally:
        stopping.cancel()
        if not task.done():
            task.cancel()
