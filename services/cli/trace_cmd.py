"""`wake trace APP REF [--json]`: a change's journey as a waterfall of spans.

Reads the app's events from the log, finds the journey REF names
(`catalog/tracing.py`), and reads its traces' spans from Wake's span store
(stream WAKE_SPANS). With no spans left there, it prints the journey's event
timeline from the log alone, and says so.
"""

from __future__ import annotations

import json
import sys

import click

from events import names
from services.catalog import tracing
from services.cli.connecting import checked_app_name, connected, data_dir_option, run, settings_for
from services.wiring.spanstore import read_trace, span_rows, to_otlp_json


@click.command()
@data_dir_option
@click.argument("app")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="The spans in OTLP JSON.")
def trace(data_dir: str, app: str, ref: str, as_json: bool) -> None:
    """Show the journey of APP's REF (a commit or unique prefix, a plan id, an apply id):
    every service's spans in start order, with the events each appended.

    Spans come from Wake's span store (kept 7 days); once they are gone, the
    journey's event timings from the log are shown instead.
    """
    app = checked_app_name(app)

    async def show() -> None:
        async with connected(settings_for(data_dir)) as log:
            stored = [s async for s in log.read(subjects=[names.app_subjects(app)])]
            events = [s.event for s in stored]
            if not events:
                raise click.ClickException(f"no application {app!r} in the log")
            try:
                start = tracing.anchor(events, ref)
            except tracing.TraceRefError as exc:
                raise click.ClickException(f"{app}: {exc}") from None
            journey = tracing.journey(events, start)
            requests = []
            for trace_id in tracing.trace_ids(journey):
                requests += await read_trace(log.js, trace_id)
        rows = span_rows(requests)
        if as_json:
            click.echo(json.dumps(to_otlp_json(requests), indent=2))
            if not rows:
                click.echo(
                    "no spans of this journey in the span store (aged out or never recorded)",
                    err=True,
                )
            return
        commit = str(getattr(start.payload, "commit", "") or "")
        click.echo(
            f"{app}: journey {start.correlation_id}"
            + (f" (commit {commit[:12]})" if commit else "")
            + f", {len(journey)} events"
        )
        if not rows:
            click.echo(
                "no spans of this journey in the span store (kept 7 days, or tracing was off):"
                " event timings from the log only"
            )
            for line in tracing.event_timeline(
                [(s.event, s.stored_at) for s in stored if s.event in journey]
            ):
                click.echo(f"  {line}")
            return
        by_trace: dict[str, list[tracing.SpanRow]] = {}
        for row in rows:
            by_trace.setdefault(row.trace_id, []).append(row)
        ordered = sorted(by_trace.items(), key=lambda item: min(r.start_ns for r in item[1]))
        for trace_id, spans in ordered:
            services = sorted({s.service for s in spans})
            click.echo(f"trace {trace_id}: {len(spans)} spans from {', '.join(services)}")
            for line in tracing.waterfall(spans, journey):
                click.echo(f"  {line}")
        sys.stdout.flush()

    run(show())
