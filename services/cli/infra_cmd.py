"""`wake infra`: run or provision the servers Wake's services share (NATS, PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import shlex
from pathlib import Path

import click

from services.wiring import infra as infra_wiring
from services.wiring.credentials import CREDENTIALS_DIR

_DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=infra_wiring.ENV_DATA_DIR,
    default=infra_wiring.DEFAULT_DATA_DIR,
    show_default=True,
    show_envvar=True,
    help="Where the servers keep their data, lock and endpoints.json.",
)


@click.group()
def infra() -> None:
    """Run or provision NATS JetStream and PostgreSQL for Wake."""


@infra.command()
@_DATA_DIR
@click.option("--nats-port", type=click.IntRange(1, 65535), help="Default: a free port.")
@click.option("--postgres-port", type=click.IntRange(1, 65535), help="Default: a free port.")
@click.option(
    "--nats-cluster",
    type=click.IntRange(1, 7),
    default=1,
    show_default=True,
    help="NATS nodes: more than one runs a JetStream cluster on loopback (ports of its "
    "own, --nats-port unused) with the stream and object store replicated on every node.",
)
@click.option(
    "--server-restarts",
    type=click.IntRange(0),
    default=5,
    show_default=True,
    envvar="WAKE_SERVER_RESTARTS",
    show_envvar=True,
    help="Attempts in a row at restarting a server that died before giving up.",
)
def up(
    data_dir: Path,
    nats_port: int | None,
    postgres_port: int | None,
    nats_cluster: int,
    server_restarts: int,
) -> None:
    """Start NATS (JetStream) and PostgreSQL on 127.0.0.1 and keep them up until Ctrl-C.

    Creates the WAKE_EVENTS stream and the WAKE_BUNDLES object store, then
    publishes the servers' URLs in DATA_DIR/endpoints.json for other `wake`
    commands (and `wake infra env`). A server that dies is restarted with
    backoff; one that cannot be brought back stops both (exit code 1).
    SIGINT or SIGTERM stops both cleanly.
    """

    if nats_cluster > 1 and nats_port is not None:
        raise click.UsageError(
            "--nats-port is the port of a single NATS server; with --nats-cluster each node "
            "gets free ports of its own (see endpoints.json)"
        )

    def on_ready(running: infra_wiring.RunningInfra) -> None:
        endpoints = running.endpoints
        click.echo(f"Wake infrastructure is up in {running.data_dir}")
        if endpoints.nats_pids:
            for url, pid in zip(endpoints.nats_url.split(","), endpoints.nats_pids, strict=True):
                click.echo(f"  NATS        {url}  (pid {pid})")
        else:
            click.echo(f"  NATS        {endpoints.nats_url}  (pid {endpoints.nats_pid})")
        click.echo(
            "              stream WAKE_EVENTS, object store WAKE_BUNDLES"
            f" (replicas {endpoints.stream_replicas})"
        )
        click.echo(f"  PostgreSQL  {endpoints.database_url}  (pid {endpoints.postgres_pid})")
        click.echo(f"  endpoints   {running.data_dir / infra_wiring.ENDPOINTS_FILE}")
        click.echo(f"  identities  {running.data_dir / CREDENTIALS_DIR} (NATS, one per process)")
        click.echo("Press Ctrl-C to stop.")

    def on_stopping(reason: str) -> None:
        click.echo(f"Stopping ({reason}) ...")

    try:
        asyncio.run(
            infra_wiring.serve(
                data_dir,
                nats_port=nats_port,
                postgres_port=postgres_port,
                nats_cluster=nats_cluster,
                restart_attempts=server_restarts,
                on_ready=on_ready,
                on_stopping=on_stopping,
            )
        )
    except infra_wiring.InfraError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("Stopped.")


@infra.command()
@click.option(
    "--nats-url",
    envvar=infra_wiring.ENV_NATS_URL,
    required=True,
    show_envvar=True,
    help="The NATS server to provision.",
)
@click.option(
    "--replicas",
    type=click.IntRange(1, 5),
    default=1,
    show_default=True,
    envvar="WAKE_STREAM_REPLICAS",
    show_envvar=True,
    help="Replicas of the stream and object store (3 on a NATS cluster).",
)
@click.option(
    "--wait",
    type=click.FloatRange(0),
    default=30.0,
    show_default=True,
    help="Seconds to keep retrying while the server is not reachable yet.",
)
@click.option(
    "--credentials",
    envvar="WAKE_NATS_CREDENTIALS",
    show_envvar=True,
    type=click.Path(dir_okay=False),
    help="The admin's connect-kwargs file (JSON): only the admin may create streams and "
    "consumers. Without it, the server must accept unauthenticated clients.",
)
@click.option(
    "--signing-keys",
    "signing_keys",
    envvar="WAKE_SIGNING_KEYS_DIR",
    show_envvar=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="A directory of signing keys (`wake infra signing-keys`): registers on the log "
    "every one not registered yet, signed by its admin key.",
)
def provision(
    nats_url: str,
    replicas: int,
    wait: float,
    credentials: str | None,
    signing_keys: Path | None,
) -> None:
    """Create or update the WAKE_EVENTS stream, WAKE_BUNDLES object store and every
    service's durable consumers, then exit.

    Idempotent; for a NATS server Wake did not start (docker compose, a cluster).
    Services connected with their own identity may not create these themselves.
    """
    from services.wiring import signing
    from services.wiring.credentials import CredentialsError, client_tls, load_connect_kwargs

    try:
        kwargs = load_connect_kwargs(credentials) if credentials else {}
        tls = client_tls(os.environ.get(infra_wiring.ENV_NATS_TLS_CA, ""))
        keys = signing.load_key_dir(signing_keys) if signing_keys else []
    except (CredentialsError, signing.SigningKeyError) as exc:
        raise click.ClickException(str(exc)) from None
    admin_keys = [k for k in keys if k.identity == signing.ADMIN_IDENTITY]
    if signing_keys and len(admin_keys) != 1:
        raise click.ClickException(f"{signing_keys} holds no admin signing key (admin.json)")
    if tls is not None:
        kwargs["tls"] = tls
    try:
        asyncio.run(
            infra_wiring.provision_log(
                nats_url,
                replicas=replicas,
                wait=wait,
                connect_kwargs=kwargs,
                admin_key=admin_keys[0] if admin_keys else None,
                register=keys,
            )
        )
    except infra_wiring.InfraError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"Provisioned WAKE_EVENTS, WAKE_BUNDLES and the services' consumers on {nats_url} "
        f"(replicas {replicas})."
    )


@infra.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where to write the files (made 0700; files 0600).",
)
@click.option(
    "--partitions",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Durable consumers per service (with replicas): each partition's gets permissions.",
)
def credentials(directory: Path, partitions: int) -> None:
    """Make NATS credentials for a server Wake does not start (docker compose, Kubernetes).

    Writes, once, one connect-kwargs file per identity (`<identity>.json`: the
    keyword arguments of nats.connect, for WAKE_NATS_CREDENTIALS) and
    `nats-auth.conf`, the server's `authorization` section with every
    identity's permissions, to include from nats-server.conf. Files that exist
    are kept (run again after changing --partitions to update the permissions).
    """
    from events.ownership import IDENTITIES
    from services.wiring.credentials import CredentialsError, write_server_auth

    try:
        written = write_server_auth(directory, partitions=partitions)
    except (CredentialsError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for identity in IDENTITIES:
        click.echo(f"  {identity:<12} {directory / f'{identity}.json'}")
    click.echo(f"  server       {written} (nats-server.conf includes it: infra/nats)")


@infra.command(name="signing-keys")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Where to write the keys (made 0700; files 0600).",
)
@click.option(
    "--person",
    default=None,
    help="The identity of the person whose key `wake` commands sign with (default: user:<login>).",
)
def signing_keys_command(directory: Path, person: str | None) -> None:
    """Make the signing keys of an install Wake does not start (docker compose, Kubernetes).

    Writes, once, one key file per service, the admin's (the trust anchor) and the
    person's (role operator), and `admin.pub`, the admin's public key every
    process trusts (WAKE_ADMIN_PUBLIC_KEY_FILE). `wake infra provision
    --signing-keys DIR` registers them on the log. Files that exist are kept.
    """
    from events.signing import encode_key
    from services.wiring import signing

    try:
        made = signing.ensure_signing_keys(directory, person=person)
        anchor = directory / signing.ADMIN_PUBLIC_FILE
        anchor.write_text(encode_key(made.admin.public) + "\n")
    except (OSError, signing.SigningKeyError) as exc:
        raise click.ClickException(str(exc)) from None
    for key in made.all():
        click.echo(f"  {key.identity:<22} {made.file(key.identity)} ({key.role}, {key.key_id})")
    click.echo(f"  trust anchor           {anchor}: {encode_key(made.admin.public)}")


@infra.command(name="keys")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def keys_command(directory: Path) -> None:
    """Make the secret files of an install in DIRECTORY, once; existing files are kept.

    The bundle keyring, the digest key and the PostgreSQL passwords (superuser
    and service role), each mode 0600 in a 0700 directory: docker-compose's
    secrets. `wake up` and `wake infra up` make their own under DATA_DIR/keys.
    """
    from services.wiring import keys
    from services.wiring.embedded_postgres import ensure_password_files

    keys.ensure_key_files(directory)
    ensure_password_files(directory)
    for path in sorted(directory.iterdir()):
        click.echo(f"{path} ({path.stat().st_mode & 0o777:o})")


@infra.command(name="rotate-keys")
@_DATA_DIR
@click.option(
    "--keyring",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="WAKE_BUNDLE_KEYRING_FILE",
    show_envvar=True,
    help="The bundle keyring (default: DATA_DIR/keys/bundles.keyring).",
)
def rotate_keys(data_dir: Path, keyring: Path | None) -> None:
    """Add a new bundle key: new bundles are sealed with it, older ones still open.

    Restart the services (they read the keyring at start) for it to take effect.
    The digest key is not rotated: every Secret digest would change with it.
    """
    from services.wiring import keys

    path = keyring or keys.keys_dir(data_dir.expanduser().resolve()) / keys.BUNDLE_KEYRING
    try:
        key_id = keys.rotate_bundle_key(path)
    except keys.KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Added bundle key {key_id} to {path}; restart the services to seal with it.")


@infra.command()
@_DATA_DIR
def env(data_dir: Path) -> None:
    """Print shell exports of WAKE_NATS_URL and WAKE_DATABASE_URL of a running `infra up`.

    Use as: eval "$(wake infra env)"
    """
    try:
        endpoints = infra_wiring.load_endpoints(data_dir)
    except infra_wiring.InfraError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"export {infra_wiring.ENV_NATS_URL}={shlex.quote(endpoints.nats_url)}")
    click.echo(f"export {infra_wiring.ENV_DATABASE_URL}={shlex.quote(endpoints.database_url)}")
    click.echo(f"export {infra_wiring.ENV_STREAM_REPLICAS}={endpoints.stream_replicas}")
