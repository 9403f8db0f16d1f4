"""What every `wake` command that talks to a running Wake shares: finding it, connecting."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from typing import Any, TypeVar

import click
import nats.errors

from events import names, ownership
from services.wiring import keys, signing, telemetry
from services.wiring.credentials import CredentialsError, client_tls, load_connect_kwargs
from services.wiring.eventlog import EventLog, NotSigning
from services.wiring.settings import (
    Settings,
    SettingsError,
    load_settings,
    read_endpoints,
    require_nats,
)

T = TypeVar("T")

data_dir_option = click.option(
    "--data-dir",
    envvar="WAKE_DATA_DIR",
    default=".wake",
    show_default=True,
    show_envvar=True,
    type=click.Path(file_okay=False),
    help="The data dir of the running Wake (its endpoints.json says where NATS is).",
)


def settings_for(data_dir: str | None, **overrides: Any) -> Settings:
    try:
        return load_settings({"data_dir": data_dir, **overrides})
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


@contextlib.asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[EventLog]:
    """The event log of the running Wake; a clear error if there is none."""
    try:
        url = require_nats(settings)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        credentials = operator_credentials(settings)
        tls = client_tls(settings.nats_tls_ca)
    except CredentialsError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        log = await asyncio.wait_for(
            EventLog.connect(url, name="wake-cli", credentials=credentials, tls=tls), timeout=5
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        raise click.ClickException(
            f"cannot reach NATS at {url}: {exc or type(exc).__name__}"
        ) from None
    tracing = telemetry.setup_tracing(
        "cli", settings.otel_exporter, identity=log.identity or ownership.OPERATOR
    )
    await tracing.attach(log.nc)
    try:
        try:
            keys.use_install_keys(log, settings)
            signing.use_signing(log, settings, key_file=signing.person_key_file(settings))
        except (keys.KeyFileError, signing.SigningKeyError) as exc:
            raise click.ClickException(str(exc)) from None
        with _command_trace(log.actor):
            yield log
    finally:
        if log.nc.is_connected:
            await tracing.flush(timeout=2.0)
        await log.close()


# Commands that append: each starts a trace of its own (`wake approve` ...).
_APPENDING = {"approve", "reject", "rollback", "sync", "add", "set", "remove"}


@contextlib.contextmanager
def _command_trace(actor: str) -> Iterator[None]:
    context = click.get_current_context(silent=True)
    if context is None or context.info_name not in _APPENDING:
        yield
        return
    # "wake app add", whatever the program was called as (`python -m services.cli`).
    words = []
    while context.parent is not None:
        words.insert(0, context.info_name or "")
        context = context.parent
    with telemetry.new_trace(" ".join(["wake", *words]), **{"wake.actor": actor}):
        yield


def operator_credentials(settings: Settings) -> dict[str, Any] | None:
    """The identity `wake` commands connect as: WAKE_NATS_CREDENTIALS, else the operator's
    file that the running Wake named in endpoints.json (`nats_operator`), else none."""
    path = settings.nats_credentials or read_endpoints(settings.data_path).get("nats_operator")
    return load_connect_kwargs(path) if path else None


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; Ctrl-C ends it quietly."""
    try:
        return asyncio.run(coroutine)
    except KeyboardInterrupt:
        raise click.Abort() from None
    except NotSigning as exc:
        raise click.ClickException(str(exc)) from None


def echo_columns(table: list[tuple[str, ...]]) -> None:
    """Print rows in columns, each as wide as its longest value (a long name never
    shifts the others); the last column is left ragged."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [f"{value:<{width}}" for value, width in zip(line, widths, strict=False)]
        click.echo("  ".join([*cells, line[-1]]))


def checked_app_name(name: str) -> str:
    """NAME as an application name, or a usage error saying what is wrong with it."""
    try:
        return names.app_name(name)
    except names.InvalidName as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None


def checked_approvers(values: Iterable[str]) -> list[str]:
    """`--approver` values as stored (`cli:ana` is `user:ana`; '' is dropped), or BadParameter
    naming the one of no known form."""
    from services.projects.approvers import InvalidApprover, checked_approver

    try:
        return [checked_approver(v) for v in values if v]
    except InvalidApprover as exc:
        raise click.BadParameter(str(exc), param_hint="--approver") from None
