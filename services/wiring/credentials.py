"""NATS credentials of a data dir: one identity per service, the operator, the admin.

`wake up` and `wake infra up` make them once per data dir (`ensure_credentials`)
and hand each process its own: a file, mode 0600, holding the keyword
arguments of `nats.connect(url, **kwargs)` that authenticate as that identity
(user, strong random password, and the identity's reply inbox prefix). The
server's configuration is generated from the same passwords and
`services/wiring/permissions.py`. Whoever can read a file is that identity:
keep the data dir to the user that runs Wake (the directory is 0700).

Rotation: remove the directory and start Wake again (new passwords for all);
see docs/security.md.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from events import ownership
from services.wiring.permissions import authorization_block, inbox_prefix

CREDENTIALS_DIR = Path("credentials") / "nats"
"""Where, under the data dir, the credentials live."""
ROUTE_SECRET = "cluster-route.secret"
AUTH_CONF = "nats-auth.conf"
ENV_CREDENTIALS = "WAKE_NATS_CREDENTIALS"


class CredentialsError(RuntimeError):
    """A credentials file that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class BusCredentials:
    """The identities of one data dir and where each one's connect-kwargs file is."""

    directory: Path
    passwords: Mapping[str, str]
    route_password: str

    def file(self, identity: str) -> Path:
        return self.directory / f"{identity}.json"

    def kwargs(self, identity: str) -> dict[str, Any]:
        return connect_kwargs(identity, self.passwords[identity])

    def authorization(self, *, partitions: int = 1) -> str:
        return authorization_block(self.passwords, partitions=partitions)


def connect_kwargs(identity: str, password: str) -> dict[str, Any]:
    """What an identity's file holds: `nats.connect(url, **these)` authenticates as it."""
    return {"user": identity, "password": password, "inbox_prefix": inbox_prefix(identity)}


def _write_private(path: Path, text: str) -> None:
    """Write `path` with mode 0600 from the start (never readable by others, not even briefly)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def ensure_credentials(
    directory: Path, identities: Iterable[str] = ownership.IDENTITIES
) -> BusCredentials:
    """The credentials in `directory`, making the missing ones (0700 dir, 0600 files).

    Existing files are kept, so scripts and running clients keep working across
    restarts of Wake; a file that is not an identity's is an error naming it.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    passwords: dict[str, str] = {}
    for identity in identities:
        path = directory / f"{identity}.json"
        if path.exists():
            kwargs = load_connect_kwargs(path)
            password = kwargs.get("password")
            if kwargs.get("user") != identity or not isinstance(password, str):
                raise CredentialsError(
                    f"{path} does not hold the credentials of {identity!r} "
                    "(remove it to have new ones made)"
                )
            os.chmod(path, 0o600)
        else:
            password = secrets.token_urlsafe(32)
            _write_private(path, json.dumps(connect_kwargs(identity, password), indent=2) + "\n")
        passwords[identity] = password
    route_path = directory / ROUTE_SECRET
    if route_path.exists():
        route_password = route_path.read_text().strip()
    else:
        route_password = secrets.token_urlsafe(32)
        _write_private(route_path, route_password + "\n")
    return BusCredentials(directory=directory, passwords=passwords, route_password=route_password)


def write_server_auth(directory: Path, *, partitions: int = 1) -> Path:
    """Credentials in `directory` (made once) and the server's authorization section beside them."""
    credentials = ensure_credentials(directory)
    path = directory / AUTH_CONF
    _write_private(path, credentials.authorization(partitions=partitions))
    return path


def load_connect_kwargs(path: Path | str) -> dict[str, Any]:
    """The keyword arguments of `nats.connect` in a credentials file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CredentialsError(f"NATS credentials file {path} not found") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CredentialsError(f"NATS credentials file {path} is unreadable: {exc}") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise CredentialsError(f"NATS credentials file {path} is not a JSON object of options")
    return raw


def client_tls(ca_file: str) -> ssl.SSLContext | None:
    """A TLS context trusting `ca_file` (WAKE_NATS_TLS_CA), or None without one."""
    if not ca_file:
        return None
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise CredentialsError(f"NATS TLS CA file {ca_file} is unusable: {exc}") from None
