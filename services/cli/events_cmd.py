"""`wake events`: the log as outside consumers see it."""

from __future__ import annotations

import sys

import click
import msgspec

from services.cli.connecting import connected, data_dir_option, run, settings_for


@click.group()
def events() -> None:
    """Inspect Wake's event log and its contracts."""


@events.command()
def schema() -> None:
    """Print the JSON Schema of every event type."""
    from events.schema import json_schema

    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(json_schema()), indent=2))
    sys.stdout.buffer.write(b"\n")


@events.command()
@data_dir_option
@click.option("--app", "app", help="Only this application's events.")
@click.option("--type", "event_type", help="Only events of this type (e.g. PlanCreated).")
@click.option("--since", "since", type=click.IntRange(min=1), default=1, help="From this sequence.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing events as they are appended.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def tail(
    data_dir: str, app: str | None, event_type: str | None, since: int, follow: bool, as_json: bool
) -> None:
    """Print the log, one line per event, in order."""
    from events import names
    from services.catalog.describe import describe

    try:
        subject = (
            f"{names.SUBJECT_PREFIX}.{names.app_name(app) if app else '*'}.{event_type or '*'}"
        )
        if event_type:
            names.subject("x", event_type)
    except names.InvalidName as exc:
        raise click.BadParameter(str(exc)) from None

    async def print_events() -> None:
        def skipped(seq: int, error: Exception) -> None:
            # On stderr: stdout stays one event per line (or one JSON object).
            click.echo(f"{seq:>7}  skipped, not a valid event: {error}", err=True)

        async with connected(settings_for(data_dir)) as log:
            reading = log.read(
                subjects=[subject], from_seq=since, follow=follow, on_invalid=skipped
            )
            async for stored in reading:
                event = stored.event
                if as_json:
                    line = msgspec.json.encode({"seq": stored.seq, **msgspec.to_builtins(event)})
                    sys.stdout.buffer.write(line + b"\n")
                else:
                    when = event.occurred_at.strftime("%Y-%m-%d %H:%M:%S")
                    click.echo(
                        f"{stored.seq:>7}  {when}  {event.app:<16} {event.type:<20} "
                        f"{event.actor:<20} {describe(event)}"
                    )
                sys.stdout.flush()

    run(print_events())


@events.command()
def docs() -> None:
    """Print the reference of every event (docs/events.md), generated from the contracts."""
    from events.reference import events_reference

    click.echo(events_reference(), nl=False)
