"""`wake sandbox`: run the Kubernetes API emulator in the foreground."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import click

from services.sandbox import Sandbox
from services.sandbox.discovery import GIT_VERSION


async def _serve(
    host: str,
    port: int,
    kubeconfig: Path,
    latency_ms: float,
    ready_workloads: bool,
    state_file: Path | None,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    sandbox = Sandbox(latency_ms=latency_ms, ready_workloads=ready_workloads, state_file=state_file)
    url = await sandbox.start(host=host, port=port)
    try:
        path = sandbox.write_kubeconfig(kubeconfig)
        click.echo(f"Wake sandbox (Kubernetes API emulator, {GIT_VERSION}) listening on {url}")
        click.echo(f"kubeconfig: {path.resolve()} (context wake-sandbox)")
        click.echo(f"try: kubectl --kubeconfig {path} get namespaces")
        if latency_ms:
            click.echo(f"added latency: {latency_ms:g} ms per request")
        if ready_workloads:
            click.echo("workloads: rollouts and Jobs complete, Pods run, claims bind when applied")
        kept = f"objects are kept in {state_file}" if state_file else "objects only live in memory"
        click.echo(f"Not a real cluster: nothing runs, {kept}. Ctrl-C to stop.")
        await stop.wait()
    finally:
        await sandbox.stop()
        click.echo("Wake sandbox stopped.")


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0: a free port."
)
@click.option(
    "--kubeconfig",
    "kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".wake/sandbox/kubeconfig"),
    show_default=True,
    help="Where to write a kubeconfig for the sandbox (context wake-sandbox).",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay added to every request, to resemble a real API server.",
)
@click.option(
    "--ready-workloads",
    is_flag=True,
    help="Complete every Deployment, StatefulSet and DaemonSet rollout and every Job, run "
    "every Pod and bind every PersistentVolumeClaim as soon as it is applied, as an idle "
    "real cluster would (no controllers run here otherwise).",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep the objects in this file across restarts (loaded at start, written after "
    "each change). Default: memory only.",
)
def sandbox(
    host: str,
    port: int,
    kubeconfig: Path,
    latency_ms: float,
    ready_workloads: bool,
    state_file: Path | None,
) -> None:
    """Run a Kubernetes API emulator (not a real cluster) until SIGINT or SIGTERM."""
    # Warnings and up: an emulator bug surfaces as a logged traceback and a Status 500.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(_serve(host, port, kubeconfig, latency_ms, ready_workloads, state_file))
    except ValueError as exc:
        raise click.ClickException(f"cannot restore the sandbox: {exc}") from None
    except OSError as exc:
        raise click.ClickException(f"cannot start the sandbox on {host}:{port}: {exc}") from exc
