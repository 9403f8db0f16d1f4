"""`wake token create|revoke`: the console's API tokens, recorded as events.

Only a token's SHA-256 goes on the log (TokenCreated); the token itself is
printed once, alone on the last line, and is nowhere else.
"""

from __future__ import annotations

import click

from events import names, new_event
from events.envelope import Envelope
from events.payloads import TokenCreated, TokenRevoked
from services.api import access
from services.cli.connecting import connected, data_dir_option, run, settings_for
from services.wiring.eventlog import ConcurrencyConflict, EventLog

TOKEN_SUBJECTS = [
    names.subject(names.SYSTEM_APP, TokenCreated.event_type),
    names.subject(names.SYSTEM_APP, TokenRevoked.event_type),
]
# Where every token event is: a change is appended expecting the last one seen, so
# two people making the same name at once never both win.
SYSTEM_SUBJECTS = f"{names.SUBJECT_PREFIX}.{names.SYSTEM_APP}.*"


def _name(value: str) -> str:
    try:
        return access.token_name(value)
    except access.InvalidTokenName as exc:
        raise click.BadParameter(str(exc)) from None


async def _live(log: EventLog) -> tuple[set[str], int]:
    position = await log.position(SYSTEM_SUBJECTS)
    seen = [
        (stored.event.type, stored.event.payload.name)
        async for stored in log.read(subjects=TOKEN_SUBJECTS, until_seq=position)
        if stored.event.app == names.SYSTEM_APP
    ]
    return access.live_tokens(seen), position


@click.group()
def token() -> None:
    """API tokens for the console and the REST API (`Authorization: Bearer TOKEN`)."""


@token.command()
@data_dir_option
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(access.ROLES),
    required=True,
    help="viewer: reads; approver: also approves, rejects and syncs its apps; admin: all.",
)
@click.option(
    "--apps",
    default="*",
    show_default=True,
    metavar="GLOB",
    help="The apps an approver may act on (shell glob: shop-*).",
)
def create(data_dir: str, name: str, role: str, apps: str) -> None:
    """Make token NAME; print it once (last line). Only its hash is kept."""
    name = _name(name)
    secret = access.new_token()

    async def record() -> None:
        async with connected(settings_for(data_dir)) as log:
            live, position = await _live(log)
            if name in live:
                raise click.ClickException(
                    f"token {name!r} exists: revoke it first (`wake token revoke {name}`)"
                )
            event = new_event(
                TokenCreated(name=name, role=role, apps=apps, digest=access.digest(secret)),
                app=names.SYSTEM_APP,
                actor=log.actor,
            )
            await _append_at(log, event, position)

    run(record())
    click.echo(f"token {name} ({role}, apps {apps}) made; it is shown once:")
    click.echo(secret)


@token.command()
@data_dir_option
@click.argument("name")
@click.option("--reason", default="", help="Why, for the record.")
def revoke(data_dir: str, name: str, reason: str) -> None:
    """Revoke token NAME: the API refuses it (and its sessions) from now on."""
    name = _name(name)

    async def record() -> None:
        async with connected(settings_for(data_dir)) as log:
            live, position = await _live(log)
            if name not in live:
                raise click.ClickException(f"no token {name!r} (or it is revoked already)")
            event = new_event(
                TokenRevoked(name=name, reason=reason), app=names.SYSTEM_APP, actor=log.actor
            )
            await _append_at(log, event, position)

    run(record())
    click.echo(f"token {name} revoked")


async def _append_at(log: EventLog, event: Envelope, position: int) -> None:
    """Append a token event if Wake's own records are still at `position` (what was
    checked against them); else ask for the command to be run again."""
    try:
        await log.append(event, expected_last_seq=position, on_subjects=SYSTEM_SUBJECTS)
    except ConcurrencyConflict:
        raise click.ClickException(
            "Wake's own records changed meanwhile; run the command again"
        ) from None
