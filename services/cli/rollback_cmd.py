"""`wake rollback` and `wake diff`: applied revisions, from their bundles (no Git needed)."""

from __future__ import annotations

import sys

import click
import msgspec

from events import new_event
from events.bundle import decode_bundle
from events.payloads import ApplySucceeded, RollbackRequested
from services.catalog import lookup
from services.catalog.revisions import (
    RevisionNotApplied,
    applied_revisions,
    diff_bundles,
    find_applied,
)
from services.cli.connecting import (
    checked_app_name,
    connected,
    data_dir_option,
    run,
    settings_for,
)
from services.wiring import telemetry
from services.wiring.eventlog import ConcurrencyConflict, EventLog


async def _applied(log: EventLog, app: str):
    if await lookup.app_spec(log, app) is None:
        raise click.ClickException(f"no application {app!r} is registered")
    return applied_revisions(await lookup.app_events(log, app, [ApplySucceeded.event_type]))


@click.command()
@data_dir_option
@click.argument("name")
@click.option(
    "--to", "target", required=True, help="A commit or an apply id (or a unique prefix of either)."
)
@click.option("--reason", default="", help="Why, for the record.")
def rollback(data_dir: str, name: str, target: str, reason: str) -> None:
    """Put application NAME back to a revision it had applied, from its stored bundle.

    The app then stays on that revision, even under auto-sync, until a new
    commit arrives or `wake sync NAME --resume`.
    """
    name = checked_app_name(name)

    async def request() -> None:
        async with connected(settings_for(data_dir)) as log:
            position = await log.app_position(name)
            try:
                revision = find_applied(name, await _applied(log, name), target)
            except RevisionNotApplied as exc:
                raise click.ClickException(str(exc)) from None
            payload = RollbackRequested(
                target=target,
                reason=reason,
                apply_id=revision.apply.apply_id,
                commit=revision.apply.commit,
                bundle_digest=revision.apply.bundle_digest,
            )
            event = new_event(
                payload, app=name, actor=log.actor, traceparent=telemetry.traceparent()
            )
            try:
                await log.append(event, expected_last_seq=position)
            except ConcurrencyConflict:
                raise click.ClickException(
                    f"{name} changed while requesting the rollback; run the command again"
                ) from None
        click.echo(
            f"rollback of {name} to {revision.apply.commit[:7]} (apply {revision.apply.apply_id}) "
            f"requested (event {event.event_id})"
        )

    run(request())


@click.command()
@data_dir_option
@click.argument("name")
@click.option("--from", "source", required=True, help="A commit (or prefix) or an apply id.")
@click.option(
    "--to", "target", required=True, help="A commit or an apply id (or a unique prefix of either)."
)
@click.option("--json", "as_json", is_flag=True)
def diff(data_dir: str, name: str, source: str, target: str, as_json: bool) -> None:
    """Differences between two revisions NAME applied: resources, then fields."""
    name = checked_app_name(name)

    async def compare() -> None:
        async with connected(settings_for(data_dir)) as log:
            applied = await _applied(log, name)
            try:
                old, new = (find_applied(name, applied, t) for t in (source, target))
            except RevisionNotApplied as exc:
                raise click.ClickException(str(exc)) from None
            bundles = [
                decode_bundle(await log.get_bundle(r.apply.bundle_digest)) for r in (old, new)
            ]
        result = diff_bundles(*bundles)
        if as_json:
            document = {
                "from": {"commit": old.apply.commit, "apply_id": old.apply.apply_id},
                "to": {"commit": new.apply.commit, "apply_id": new.apply.apply_id},
                "added": msgspec.to_builtins(result.added),
                "removed": msgspec.to_builtins(result.removed),
                "changed": [
                    {"ref": msgspec.to_builtins(c.ref), "fields": c.fields, "diff": c.text}
                    for c in result.changed
                ],
                "unchanged": result.unchanged,
            }
            sys.stdout.buffer.write(msgspec.json.encode(document) + b"\n")
            return
        click.echo(
            f"{name}: {old.apply.commit[:7]} -> {new.apply.commit[:7]}: {len(result.added)} added, "
            f"{len(result.removed)} removed, {len(result.changed)} changed, "
            f"{result.unchanged} unchanged"
        )
        for ref in result.added:
            click.echo(f"+ {ref}")
        for ref in result.removed:
            click.echo(f"- {ref}")
        for change in result.changed:
            click.echo(f"~ {change.ref}: {', '.join(change.fields)}")
            for line in change.text.splitlines():
                click.echo(f"    {line}")

    run(compare())
