"""`wake key`: register, revoke and list the keys events are signed with (as the admin)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import click
import nats.errors

from events import ownership
from events.signing import SigningKey, decode_public_key, encode_key, key_id
from services.cli.connecting import data_dir_option, run, settings_for
from services.wiring import signing
from services.wiring.credentials import CredentialsError, client_tls, load_connect_kwargs
from services.wiring.eventlog import EventLog
from services.wiring.settings import Settings, SettingsError, read_endpoints, require_nats

_ADMIN_KEY = click.option(
    "--admin-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The admin's signing key (default: DATA_DIR/credentials/signing/admin.json).",
)


@click.group()
def key() -> None:
    """Register, revoke and list the keys events are signed with.

    A person's key has the role `operator`: the events of the CLI (and, later,
    the API and chat) signed with it carry its identity as their actor.
    Rotation: `wake key add` a new key for the identity, then `wake key revoke`
    the old one; events signed before the revocation stay valid.
    """


@contextlib.asynccontextmanager
async def _as_admin(settings: Settings, admin_key: Path | None) -> AsyncIterator[EventLog]:
    """The log, connected and signing as the admin (only the admin registers keys)."""
    try:
        url = require_nats(settings)
        endpoints = read_endpoints(settings.data_path)
        credentials_file = endpoints.get("nats_admin")
        credentials = load_connect_kwargs(credentials_file) if credentials_file else None
        tls = client_tls(settings.nats_tls_ca)
        admin = signing.load_key_file(
            admin_key or settings.data_path / signing.SIGNING_DIR / signing.ADMIN_FILE
        )
    except (SettingsError, CredentialsError, signing.SigningKeyError) as exc:
        raise click.ClickException(str(exc)) from None
    if admin.role != ownership.ADMIN:
        raise click.ClickException(f"{admin_key} is the key of {admin.identity}, not the admin's")
    try:
        log = await asyncio.wait_for(
            EventLog.connect(url, name="wake-key", credentials=credentials, tls=tls), timeout=5
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        detail = exc or type(exc).__name__
        raise click.ClickException(f"cannot reach NATS at {url}: {detail}") from None
    try:
        try:
            signing.use_signing(log, settings, key_file=None)
        except signing.SigningKeyError as exc:
            raise click.ClickException(str(exc)) from None
        trust = log.require_trust()
        if trust.directory.anchor_id != admin.key_id:
            raise click.ClickException(
                f"the admin key {admin.key_id} is not this Wake's trust anchor "
                f"({trust.directory.anchor_id})"
            )
        log.signer = signing.KeySigner(admin)
        await trust.catch_up(log, await log.stream_end() + 1)
        yield log
    finally:
        await log.close()


@key.command()
@data_dir_option
@click.argument("identity")
@click.option(
    "--role",
    type=click.Choice(ownership.IDENTITIES),
    default=ownership.OPERATOR,
    show_default=True,
    help="What its events may be (events/ownership.py); a person is an operator.",
)
@click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file holding the Ed25519 public key (base64 of its 32 bytes) to register; "
    "without it a new key pair is made and its private key written to --out.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write a new private key file (mode 0600; default: "
    "DATA_DIR/credentials/signing/<identity>.json).",
)
@click.option(
    "--vouch-for",
    "vouches_for",
    multiple=True,
    type=click.Choice(sorted(ownership.VOUCHABLE)),
    help="A gateway's key (chat, API): it may also sign events whose actor is a person "
    "of this namespace (e.g. matrix:@ana:example.org). Repeatable.",
)
@_ADMIN_KEY
def add(
    data_dir: str,
    identity: str,
    role: str,
    vouches_for: tuple[str, ...],
    public_key_file: Path | None,
    out: Path | None,
    admin_key: Path | None,
) -> None:
    """Register a signing key for IDENTITY (e.g. user:ana)."""
    if not identity or identity != identity.strip() or len(identity) > 200:
        raise click.BadParameter(f"invalid identity {identity!r}", param_hint="IDENTITY")
    settings = settings_for(data_dir)
    new_key: SigningKey | None = None
    if public_key_file is not None:
        try:
            raw = decode_public_key(public_key_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise click.BadParameter(
                f"{public_key_file}: {exc}", param_hint="--public-key"
            ) from None
        registration = signing.KeyRegistered(
            key_id=key_id(raw),
            identity=identity,
            role=role,
            public_key=encode_key(raw),
            vouches_for=list(vouches_for),
        )
    else:
        new_key = SigningKey.generate(identity, role, vouches_for=vouches_for)
        registration = new_key.registration()
        out = out or settings.data_path / signing.SIGNING_DIR / signing.file_name(identity)
        if out.exists():
            raise click.ClickException(f"{out} exists; choose another file with --out")
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        signing.write_key_file(out, new_key)

    async def go() -> int:
        async with _as_admin(settings, admin_key) as log:
            known = log.require_trust().directory.keys.get(registration.key_id)
            if known is not None:
                raise click.ClickException(
                    f"key {registration.key_id} is already registered to {known.identity}"
                )
            appended = await log.append(signing.registration_of(registration))
            return appended.seq

    seq = run(go())
    click.echo(f"registered key {registration.key_id} for {identity} ({role}) at seq {seq}")
    if new_key is not None:
        click.echo(f"its private key is in {out} (mode 0600): sign with WAKE_SIGNING_KEY={out}")


@key.command()
@data_dir_option
@click.argument("key_id_or_identity")
@click.option("--reason", default="", help="Why it is revoked (kept in the log).")
@_ADMIN_KEY
def revoke(data_dir: str, key_id_or_identity: str, reason: str, admin_key: Path | None) -> None:
    """Revoke a key, by its id or its identity (every active key of it): events it signs
    from now on are refused; those it signed before stay valid."""
    settings = settings_for(data_dir)

    async def go() -> list[str]:
        async with _as_admin(settings, admin_key) as log:
            directory = log.require_trust().directory
            targets = [
                k
                for k in directory.active()
                if key_id_or_identity in (k.key_id, k.identity) and k.key_id != directory.anchor_id
            ]
            if not targets:
                raise click.ClickException(
                    f"no active key {key_id_or_identity!r} (see `wake key list`; the admin "
                    "key, the trust anchor, is not revoked by an event)"
                )
            events = [signing.revocation_event(k.key_id, k.identity, reason) for k in targets]
            await log.append_many(events)
            return [f"{k.key_id} ({k.identity})" for k in targets]

    for revoked in run(go()):
        click.echo(f"revoked key {revoked}")


@key.command(name="list")
@data_dir_option
@click.option("--all", "show_all", is_flag=True, help="Revoked keys too.")
def list_keys(data_dir: str, show_all: bool) -> None:
    """List the registered keys: id, identity, role, since which sequence."""
    from services.cli.connecting import connected

    settings = settings_for(data_dir)

    async def go() -> list[str]:
        async with connected(settings) as log:
            trust = log.require_trust()
            await trust.catch_up(log, await log.stream_end() + 1)
            keys = trust.directory.keys.values() if show_all else trust.directory.active()
            lines = [signing.describe_key(k) for k in keys]
            lines += [f"ignored: {why}" for why in trust.ignored]
            return lines

    for line in run(go()):
        click.echo(line)
