"""`wake replay` (rebuild the read models, prove them) and `wake state NAME --at TIME`."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import Any

import click
import msgspec

from events.bundle import InvalidBundle, decode_bundle, ref_of
from services.catalog.describe import decided_by
from services.cli.connecting import (
    checked_app_name,
    connected,
    data_dir_option,
    run,
    settings_for,
)
from services.cli.history_cmd import connect_database, database_url
from services.projector import replaying, store
from services.projector.journeys import Moment, moment
from services.wiring.eventlog import BundleCorrupt, BundleNotFound

DEFAULT_INTO = "wake_replay"


def parse_time(value: str, param: str, *, or_seq: bool = False) -> datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        what = (
            "neither a sequence number nor an ISO 8601 time" if or_seq else "not an ISO 8601 time"
        )
        raise click.BadParameter(
            f"{value!r} is {what} (e.g. 2026-11-26T09:30:00Z)", param_hint=param
        ) from None
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def parse_until(value: str | None) -> replaying.Stop:
    if value is None:
        return replaying.Stop()
    if value.isdigit():
        return replaying.Stop(seq=int(value))
    return replaying.Stop(time=parse_time(value, "--until", or_seq=True))


@click.command()
@data_dir_option
@click.option(
    "--verify",
    is_flag=True,
    help="Compare every read model's digest with the live one, list every event refused "
    "(unsigned, badly signed, signer not entitled) by sequence, and print the rate of "
    "signature checks.",
)
@click.option("--until", "until", metavar="TIME|SEQ", help="Stop at this time or sequence.")
@click.option(
    "--into",
    "into",
    default=DEFAULT_INTO,
    show_default=True,
    help="The schema to rebuild into (dropped and recreated; never the live one).",
)
def replay(data_dir: str, verify: bool, until: str | None, into: str) -> None:
    """Rebuild every read model from sequence 1 into a fresh schema."""
    try:
        target = store.schema_name(into)
    except store.InvalidSchema as exc:
        raise click.BadParameter(str(exc), param_hint="--into") from None
    live = store.schema_name(store.LIVE_SCHEMA)
    if target == live:
        raise click.BadParameter(
            f"{live} is the live read models' schema; replay into another", param_hint="--into"
        )
    if verify and until is not None:
        raise click.UsageError(
            "--verify compares with the live read models: it replays to their position, not --until"
        )
    stop = parse_until(until)
    settings = settings_for(data_dir)
    url = database_url(data_dir)

    async def go() -> bool:
        conn = await connect_database(url)
        try:
            if await store.schema_exists(conn, target) and not await store.is_read_model_schema(
                conn, target
            ):
                raise click.ClickException(
                    f"schema {target} exists and does not hold Wake read models; not dropping it"
                )
            async with connected(settings) as log:
                if verify:
                    if not await store.is_read_model_schema(conn, live):
                        raise click.ClickException(
                            f"no live read models in schema {live}: is the projector running?"
                        )
                    total = await store.position(conn, live)
                else:
                    total = stop.seq if stop.seq is not None else await replaying.log_end(log)
                with _Bar(total) as bar:
                    if verify:
                        rebuilt, comparisons = await replaying.verify(
                            log, url, into=target, live=live, progress=bar.update
                        )
                    else:
                        rebuilt = await replaying.rebuild(
                            log, url, target, stop=stop, progress=bar.update
                        )
                        comparisons = []
        finally:
            await conn.close()
        click.echo(
            f"replayed {rebuilt.events:,} events (to seq {rebuilt.last_seq}) into schema "
            f"{rebuilt.schema} in {rebuilt.seconds:.2f} s: {rebuilt.rate:,.0f} events/s"
        )
        if verify:
            checks = rebuilt.checks
            click.echo(
                f"verified the signature of {checks.events:,} events ({checks.signatures:,} "
                f"Ed25519 verifications, one per signed batch) in {checks.seconds:.2f} s: "
                f"{checks.rate:,.0f} events/s"
            )
        for refused in rebuilt.refused:
            click.echo(f"  REFUSED seq {refused.seq} ({refused.subject}): {refused.reason}")
        if rebuilt.refused:
            click.echo(
                f"{len(rebuilt.refused)} event(s) refused: not folded (every reader skips them)"
            )
        for comparison in comparisons:
            verdict = "equal" if comparison.equal else "DIFFERENT"
            live_digest, replayed = comparison.live, comparison.replayed
            click.echo(
                f"  {comparison.table:<14} live {live_digest.rows:>9,} rows {live_digest.sha}"
                f"  replay {replayed.rows:>9,} rows {replayed.sha}  {verdict}"
            )
        return all(c.equal for c in comparisons)

    if not run(go()):
        raise click.ClickException("the live read models differ from the replay")


class _Bar:
    """click's progress bar, showing events per second."""

    def __init__(self, total: int) -> None:
        self._bar = click.progressbar(
            length=max(total, 1),
            label="replaying",
            file=sys.stderr,
            show_pos=True,
            item_show_func=lambda rate: f"{rate:,.0f} events/s" if rate else None,
        )
        self._started = 0.0
        self._done = 0

    def __enter__(self) -> _Bar:
        self._started = time.perf_counter()
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def update(self, folded: int, seq: int) -> None:
        elapsed = time.perf_counter() - self._started
        self._bar.update(folded - self._done, folded / elapsed if elapsed > 0 else 0.0)
        self._done = folded


@click.command()
@data_dir_option
@click.argument("name")
@click.option("--at", "at", required=True, metavar="TIME", help="ISO 8601 time (UTC if no zone).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def state(data_dir: str, name: str, at: str, as_json: bool) -> None:
    """What application NAME desired, planned, approved and applied at time TIME."""
    name = checked_app_name(name)
    when = parse_time(at, "--at")
    settings = settings_for(data_dir)

    async def look() -> tuple[Moment, list[str], str]:
        async with connected(settings) as log:
            models = await replaying.fold_app(log, name, at=when)
            view = moment(models, name, when)
            if view.application is None:
                raise click.ClickException(
                    f"application {name!r} had no events by {when.isoformat()}"
                )
            bundle_refs: list[str] = []
            note = ""
            if view.applied is not None and view.applied["bundle_digest"]:
                digest = view.applied["bundle_digest"]
                try:
                    bundle = decode_bundle(await log.get_bundle(digest))
                    bundle_refs = [str(ref_of(r)) for r in bundle.resources]
                except (BundleNotFound, BundleCorrupt, InvalidBundle) as exc:
                    note = str(exc)
        return view, bundle_refs, note

    view, bundle_refs, note = run(look())
    if as_json:
        document: dict[str, Any] = msgspec.to_builtins(view)
        document["bundle_resources"] = bundle_refs
        if note:
            document["bundle_error"] = note
        sys.stdout.buffer.write(msgspec.json.encode(document) + b"\n")
        return
    app = view.application or {}
    click.echo(f"{name} at {when.isoformat()} (log sequence {view.seq})")
    click.echo(
        f"  sync {app.get('sync_state')}, health {app.get('health')}"
        + (", ROLLED BACK" if app.get("rolled_back") else "")
    )
    if view.desired:
        d = view.desired
        click.echo(
            f"  desired:  {d['commit'][:12]} bundle {d['bundle_digest'][:12]} "
            f"({d['resource_count']} resources) {d['author']}: {_first_line(d['message'])}"
        )
    else:
        click.echo("  desired:  nothing rendered yet")
    if view.planned:
        p = view.planned
        click.echo(f"  planned:  {p['plan_id']} for {p['commit'][:12]} ({p['status']})")
    else:
        click.echo("  planned:  no plan yet")
    if view.approved:
        a = view.approved
        click.echo(
            f"  approved: {a['plan_id']} {decided_by(a['actor'], a['via'])} "
            f"at {a['decided_at'].isoformat()}"
        )
    else:
        click.echo("  approved: nothing approved yet")
    if view.applied:
        a = view.applied
        click.echo(
            f"  applied:  {a['commit'][:12]} (apply {a['apply_id']}, "
            f"{a['finished_at'].isoformat()})"
            + (f" rollback of {a['rollback_of']}" if a["rollback_of"] else "")
        )
        click.echo("  resources of the applied bundle:")
        for ref in bundle_refs:
            click.echo(f"    {ref}")
        if note:
            click.echo(f"    (bundle unavailable: {note})")
    else:
        click.echo("  applied:  nothing applied yet")


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""
