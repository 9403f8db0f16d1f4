"""`wake history NAME`: every journey of an application, newest first, from the read models."""

from __future__ import annotations

import sys

import asyncpg
import click
import msgspec

from events import names
from services.catalog.describe import decided_by
from services.cli.connecting import (
    checked_app_name,
    connected,
    data_dir_option,
    run,
    settings_for,
)
from services.projector import store
from services.projector.journeys import STEP_TYPES, Journey, apply_steps, journeys


def database_url(data_dir: str | None) -> str:
    """The read models' PostgreSQL, or a clear error if none is configured."""
    url = settings_for(data_dir).database_url
    if not url:
        raise click.ClickException(
            "no PostgreSQL for the read models: set WAKE_DATABASE_URL, or start one with `wake up`"
        )
    return url


async def connect_database(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise click.ClickException(
            f"cannot reach PostgreSQL at {url}: {exc or type(exc).__name__}"
        ) from None


@click.command()
@data_dir_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per journey.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def history(data_dir: str, name: str, as_json: bool, limit: int) -> None:
    """Application NAME's journeys, newest first: commit, plan, approvals, apply, rollbacks."""
    name = checked_app_name(name)
    url = database_url(data_dir)

    async def show() -> list[Journey]:
        conn = await connect_database(url)
        try:
            schema = store.schema_name(store.LIVE_SCHEMA)
            if not await store.is_read_model_schema(conn, schema):
                raise click.ClickException(
                    f"no read models in schema {schema}: is the projector running?"
                )
            known = await conn.fetchval(f"SELECT 1 FROM {schema}.applications WHERE app = $1", name)
            if not known:
                raise click.ClickException(f"the read models know no application {name!r}")
            rows = {}
            for table in ("revisions", "plans", "approvals", "applies"):
                rows[table] = [
                    dict(r)
                    for r in await conn.fetch(
                        f"SELECT * FROM {schema}.{table} WHERE app = $1", name
                    )
                ]
        finally:
            await conn.close()
        return journeys(**rows, steps=await _steps(data_dir, name))[:limit]

    entries = run(show())
    if as_json:
        for entry in entries:
            sys.stdout.buffer.write(msgspec.json.encode(entry) + b"\n")
        return
    if not entries:
        click.echo(f"{name} has no history yet")
    for entry in entries:
        _print(entry)


async def _steps(data_dir: str | None, name: str) -> dict[str, list[str]]:
    """Each apply's waves and hooks, read from the log; none (said on stderr) without it.

    The read models keep one row per apply; its waves and hooks are in the
    log's events, which the journey's lines come from.
    """
    subjects = [names.subject(name, t) for t in STEP_TYPES]
    try:
        async with connected(settings_for(data_dir)) as log:
            return apply_steps([stored.event async for stored in log.read(subjects=subjects)])
    except click.ClickException as exc:
        click.echo(f"waves and hooks not shown: {exc.message}", err=True)
        return {}


def _print(entry: Journey) -> None:
    when = entry.started_at.strftime("%Y-%m-%d %H:%M:%S")
    marker = "  [ROLLBACK" + (f" of {entry.rollback_of}]" if entry.rollback_of else "]")
    click.echo(
        f"{when}  {entry.commit[:12] or '-':<12}  {entry.result or '-'}"
        + (marker if entry.rollback else "")
    )
    if entry.author or entry.message:
        first_line = entry.message.splitlines()[0] if entry.message else ""
        click.echo(f"    {entry.author}: {first_line}")
    if entry.render == "unchanged":
        click.echo("    renders exactly what is applied: synced at this commit, nothing planned")
    if entry.plan_id:
        click.echo(f"    plan {entry.plan_id} ({entry.plan_status}): {entry.plan_summary}")
    for decision in entry.decisions:
        at = decision.at.strftime("%Y-%m-%d %H:%M:%S")
        comment = f" -- {decision.comment}" if decision.comment else ""
        click.echo(
            f"    {decision.decision} {decided_by(decision.actor, decision.via)} at {at}{comment}"
        )
    if entry.applied_at is not None:
        tries = f" (try {entry.attempts})" if entry.attempts > 1 else ""
        click.echo(
            f"    apply {entry.apply_id} ended {entry.applied_at.strftime('%Y-%m-%d %H:%M:%S')}"
            + tries
        )
    for step in entry.steps:
        click.echo(f"      {step}")
    if entry.error:
        click.echo(f"    error: {entry.error}")
