"""`wake run SERVICE` (one service, as containers run it) and `wake up` (everything)."""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import os
import signal
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import click

from services.cli.connecting import data_dir_option, settings_for
from services.wiring.runtime import SERVICES

interval_option = click.option(
    "--interval",
    type=click.FloatRange(min=1),
    help="Seconds between two polls of a repository by git-watcher [env: WAKE_POLL_INTERVAL; "
    "default: 60].",
)

nats_cluster_option = click.option(
    "--nats-cluster",
    type=click.IntRange(1, 7),
    default=1,
    show_default=True,
    help="NATS nodes: more than one runs a JetStream cluster on loopback with the stream "
    "and object store replicated on every node (3 survives the loss of one).",
)


@click.command(name="run")
@data_dir_option
@interval_option
@click.argument("service", type=click.Choice(sorted(SERVICES)))
def run_service_command(data_dir: str, interval: float | None, service: str) -> None:
    """Run one SERVICE in the foreground until SIGTERM or Ctrl-C.

    Configured by the WAKE_* environment variables (see the README); NATS is
    found through WAKE_NATS_URL or the data dir's endpoints.json.
    """
    from services.wiring.consumers import ConsumerMissing
    from services.wiring.keys import KeyFileError
    from services.wiring.runtime import LogMissing, run_service
    from services.wiring.settings import SettingsError

    settings = settings_for(data_dir, poll_interval=interval)
    try:
        with _profiled(service), _memory_traced(service):
            asyncio.run(run_service(service, settings))
    except (SettingsError, LogMissing, ConsumerMissing, KeyFileError) as exc:
        # What the operator must fix (a setting, an unprovisioned log, a key file): one line.
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


PROFILE_DIR_ENV = "WAKE_PROFILE_DIR"


@contextlib.contextmanager
def _profiled(service: str) -> Iterator[None]:
    """With WAKE_PROFILE_DIR set, cProfile the service's event loop thread into
    DIR/SERVICE-PID.prof when it stops (for `python -m pstats`; benchmarks use it
    to find where a service's CPU goes). Off by default: it slows the service."""
    directory = os.environ.get(PROFILE_DIR_ENV)
    if not directory:
        yield
        return
    # CPU time, not wall time: waiting for the log or the cluster is not cost.
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        Path(directory).mkdir(parents=True, exist_ok=True)
        profile.dump_stats(Path(directory) / f"{service}-{os.getpid()}.prof")


MEMORY_DIR_ENV = "WAKE_TRACEMALLOC_DIR"


@contextlib.contextmanager
def _memory_traced(service: str) -> Iterator[None]:
    """With WAKE_TRACEMALLOC_DIR set, trace the service's allocations and write the
    40 lines holding the most memory when it stops into DIR/SERVICE-PID.memory.txt
    (where a service's memory goes, for the benchmarks). Off by default: it slows
    the service and adds its own memory."""
    directory = os.environ.get(MEMORY_DIR_ENV)
    if not directory:
        yield
        return
    tracemalloc.start()
    try:
        yield
    finally:
        snapshot = tracemalloc.take_snapshot()
        tracemalloc.stop()
        top = snapshot.statistics("lineno")
        lines = [f"{sum(s.size for s in top) / 2**20:.1f} MiB traced in all"]
        lines += [f"{s.size / 2**20:8.2f} MiB {s.count:9d} blocks  {s.traceback}" for s in top[:40]]
        out = Path(directory) / f"{service}-{os.getpid()}.memory.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines) + "\n")


@click.command()
@data_dir_option
@interval_option
@click.option(
    "--sandbox", is_flag=True, help="Also start a sandbox cluster (Kubernetes API emulator)."
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write each process's output to a file there instead of this terminal.",
)
@nats_cluster_option
@click.option(
    "--replicas",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Processes per service; each app is handled by one of them at a time.",
)
def up(
    data_dir: str,
    interval: float | None,
    sandbox: bool,
    log_dir: Path | None,
    nats_cluster: int,
    replicas: int,
) -> None:
    """Start NATS, PostgreSQL, every service (and a sandbox) until Ctrl-C.

    Without --sandbox the services target WAKE_KUBECONFIG, else the current
    kubeconfig context. DATA_DIR/endpoints.json is written once all is ready.
    A process that dies is restarted with backoff (NATS and PostgreSQL too);
    if NATS or PostgreSQL cannot be brought back, Wake stops and exits 1.
    The sandbox keeps its objects in DATA_DIR/sandbox across restarts.
    """
    from services.wiring import infra
    from services.wiring.supervision import GaveUp, StartupError, start_wake

    settings = settings_for(data_dir)

    async def serve() -> str:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        running = await start_wake(
            Path(data_dir),
            sandbox=sandbox,
            # A sandbox is for trying Wake: let workloads become ready as they would.
            sandbox_ready_workloads=sandbox,
            kubeconfig=settings.kubeconfig,
            log_dir=log_dir,
            extra_env={"WAKE_POLL_INTERVAL": str(interval)} if interval else None,
            nats_cluster=nats_cluster,
            restart_attempts=settings.server_restarts,
            replicas=replicas,
        )
        try:
            endpoints = running.endpoints
            click.echo(f"Wake is up in {running.data_dir}")
            nodes = f" ({nats_cluster} nodes, R{nats_cluster})" if nats_cluster > 1 else ""
            click.echo(f"  NATS JetStream  {endpoints.nats_url}{nodes}")
            click.echo(f"  PostgreSQL      {endpoints.database_url}")
            cluster = "sandbox cluster (Kubernetes API emulator)" if sandbox else "cluster"
            click.echo(f"  {cluster:<15} {endpoints.kubeconfig or 'current kubeconfig context'}")
            for name, pids in endpoints.replicas.items():
                click.echo(f"  {name:<15} pid {', '.join(map(str, pids))}")
            providers = "{github,gitlab,gitea,bitbucket,generic}"
            click.echo(f"  webhooks        {endpoints.webhook_url}/{providers}")
            click.echo(f"  webhook secret  {running.webhook_secret_file or 'WAKE_WEBHOOK_SECRET'}")
            if endpoints.api_url:
                click.echo(f"  console         {endpoints.api_url}/ (REST API: /api/v1)")
                click.echo(f"  admin login     {running.login_url} (works once)")
            platforms = "{slack,mattermost,discord}"
            click.echo(f"  chat requests   {endpoints.chat_url}/{platforms} (WAKE_NOTIFY_CONFIG)")
            if "infra" in endpoints.metrics:
                click.echo(
                    f"  metrics         {endpoints.metrics['infra']} (and each service's:"
                    " endpoints.json `metrics`; /healthz, /readyz beside)"
                )
            click.echo(f"  endpoints       {running.data_dir / infra.ENDPOINTS_FILE}")
            click.echo(f"  NATS identities {running.data_dir / infra.CREDENTIALS_DIR}")
            click.echo("Press Ctrl-C to stop.")
            return await running.supervise(stop)
        finally:
            click.echo("Stopping ...")
            await running.stop()

    try:
        reason = asyncio.run(serve())
    except GaveUp as exc:
        raise click.ClickException(f"stopped: {exc}") from None
    except (StartupError, infra.InfraError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Stopped ({reason}).")
