"""`wake demo`: see Wake work, with no setup."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import click


@click.command()
@click.option("--keep", is_flag=True, help="Keep the demo's directory (data, repo) too.")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds per commit.")
def demo(keep: bool, timeout: float) -> None:
    """Walk two commits from a sample repository to a sandbox cluster, and print their journeys.

    The logs of every process are kept (their folder is printed); the rest
    (data, sample repository) is deleted at the end unless --keep.
    """
    from services.demo.walkthrough import DemoFailed, run_demo
    from services.wiring.infra import InfraError
    from services.wiring.supervision import StartupError

    workdir = Path(tempfile.mkdtemp(prefix="wake-demo-"))
    # Outside the work directory: the logs are what one reads after the demo,
    # so they outlive it (the path printed at the end must still exist).
    logs = Path(tempfile.mkdtemp(prefix="wake-demo-logs-"))
    try:
        asyncio.run(run_demo(workdir, echo=click.echo, timeout=timeout, log_dir=logs))
    except (DemoFailed, StartupError, InfraError) as exc:
        keep = True
        raise click.ClickException(f"{exc} (logs in {logs})") from None
    finally:
        if keep:
            click.echo(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
