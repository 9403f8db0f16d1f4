"""`wake demo`: see Wake work, with no setup."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import click


@click.command()
@click.option("--keep", is_flag=True, help="Keep the demo's directory (logs, data, repo).")
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds per commit.")
def demo(keep: bool, timeout: float) -> None:
    """Walk two commits from a sample repository to a sandbox cluster, and print their journeys."""
    from services.demo.walkthrough import DemoFailed, run_demo
    from services.wiring.infra import InfraError
    from services.wiring.supervision import StartupError

    workdir = Path(tempfile.mkdtemp(prefix="wake-demo-"))
    try:
        asyncio.run(run_demo(workdir, echo=click.echo, timeout=timeout))
    except (DemoFailed, StartupError, InfraError) as exc:
        keep = True
        raise click.ClickException(f"{exc} (logs in {workdir / 'logs'})") from None
    finally:
        if keep:
            click.echo(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
