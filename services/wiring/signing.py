"""Signing keys on disk, the signer of a process, and the keys its readers trust.

The pure parts (canonical bytes, batch signatures, verification, the fold of
the key events) are `events/signing.py`; this module does their I/O:

- key files: `DATA_DIR/credentials/signing/` (0700), one JSON file (0600) per
  identity -- each service, `admin`, the person who ran `wake up`
  (`user:<os user>`, role `operator`) -- made once by `wake up` / `wake infra
  up` (`ensure_signing_keys`) and registered on the log by the admin
  (`register_keys`);
- `KeySigner`: what an `EventLog` signs its appends with; it stamps each
  event's `actor` with its identity, so an actor is always the signer's;
- `Trust`: the keys a reader accepts, anchored on the admin public key and
  learnt from the `_wake` key subjects. It folds them once, then again only
  when a reader meets an event stored after the last time it looked
  (`as_of`): an event is thus always judged with every key event stored
  before it -- a key revoked just before a forged event refuses it, whatever
  a follower's lag -- at the cost of three small requests per newer batch of
  the log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import getpass
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events import names, ownership
from events.envelope import Envelope, derived_event_id, new_event
from events.payloads import KeyRegistered, KeyRevoked
from events.signing import (
    ADMIN_IDENTITY,
    KEY_TYPES,
    KeyDirectory,
    SigningKey,
    UnverifiedEvent,
    Verifier,
    decode_public_key,
    encode_key,
    private_bytes,
    sign_batch,
)

if TYPE_CHECKING:
    from services.wiring.eventlog import EventLog
    from services.wiring.settings import Settings

SIGNING_DIR = Path("credentials") / "signing"
"""Where, under the data dir, the signing keys live."""
ADMIN_FILE = "admin.json"
ADMIN_PUBLIC_FILE = "admin.pub"
ENV_SIGNING_KEY = "WAKE_SIGNING_KEY"
ENV_ADMIN_PUBLIC_KEY = "WAKE_ADMIN_PUBLIC_KEY"
KEY_SUBJECTS = tuple(names.subject(names.SYSTEM_APP, t) for t in sorted(KEY_TYPES))


class SigningKeyError(RuntimeError):
    """A signing key or trust anchor that cannot be used; the message names the file or setting."""


# --- key files ---------------------------------------------------------------------


def person_identity() -> str:
    """The identity of the person running this process: `user:<os user>`."""
    return f"user:{getpass.getuser()}"


def file_name(identity: str) -> str:
    """`service:planner` -> `planner.json`, `user:ana` -> `user-ana.json`."""
    if identity.startswith("service:"):
        identity = identity.removeprefix("service:")
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in identity) + ".json"


def service_identity(service: str) -> str:
    return f"service:{service}"


def write_key_file(path: Path, key: SigningKey) -> None:
    """Write `key` to `path`, mode 0600 from the start; an existing file is kept."""
    document = {
        "identity": key.identity,
        "role": key.role,
        "key_id": key.key_id,
        "public_key": encode_key(key.public),
        "private_key": encode_key(private_bytes(key.private)),
    }
    if key.vouches_for:
        document["vouches_for"] = list(key.vouches_for)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(descriptor, "w") as handle:
        handle.write(json.dumps(document, indent=2) + "\n")


def load_key_file(path: Path | str) -> SigningKey:
    """The signing key in `path`; SigningKeyError naming the file if it is not one or is
    readable by others."""
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode & 0o777
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise SigningKeyError(
            f"signing key file {path} not found (`wake up` / `wake infra up` make the data "
            f"dir's; `wake key add` makes a person's)"
        ) from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SigningKeyError(f"signing key file {path} is unreadable: {exc}") from None
    # Group-readable is allowed (a Kubernetes secret mounted for the pod's fsGroup),
    # readable by others is not.
    if mode & 0o037:
        raise SigningKeyError(
            f"signing key file {path} has mode {mode:o}: others could sign as its identity; "
            f"make it 0600 (chmod 600 {path})"
        )
    try:
        identity, role = document["identity"], document["role"]
        raw = base64.b64decode(document["private_key"], validate=True)
        private = Ed25519PrivateKey.from_private_bytes(raw)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise SigningKeyError(
            f"signing key file {path} does not hold an identity, role and Ed25519 "
            f"private_key: {exc}"
        ) from None
    if not isinstance(identity, str) or role not in ownership.IDENTITIES:
        raise SigningKeyError(f"signing key file {path}: unknown role {role!r}")
    vouches_for = document.get("vouches_for", [])
    if not isinstance(vouches_for, list) or not set(vouches_for) <= ownership.VOUCHABLE:
        raise SigningKeyError(
            f"signing key file {path}: vouches_for must be a list of "
            f"{sorted(ownership.VOUCHABLE)}, not {vouches_for!r}"
        )
    return SigningKey(identity=identity, role=role, private=private, vouches_for=tuple(vouches_for))


@dataclass(frozen=True)
class DataDirKeys:
    """The signing keys of a data dir: where they are, and each one."""

    directory: Path
    admin: SigningKey
    services: dict[str, SigningKey]
    person: SigningKey

    def file(self, identity: str) -> Path:
        return self.directory / file_name(identity)

    def all(self) -> list[SigningKey]:
        return [self.admin, *self.services.values(), self.person]


def ensure_signing_keys(directory: Path, *, person: str | None = None) -> DataDirKeys:
    """The signing keys in `directory`, making the missing ones (dir 0700, files 0600).

    One per service, the admin (the trust anchor), and the person `person`
    (default: this OS user) with the role `operator`. Existing files are kept.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    wanted = [
        (ADMIN_IDENTITY, ownership.ADMIN),
        *((service_identity(s), s) for s in ownership.SERVICES),
        (person or person_identity(), ownership.OPERATOR),
    ]
    loaded: list[SigningKey] = []
    for identity, role in wanted:
        path = directory / file_name(identity)
        vouches = ownership.VOUCHES.get(role, ()) if identity != ADMIN_IDENTITY else ()
        if path.exists():
            os.chmod(path, 0o600)
            if set(load_key_file(path).vouches_for) != set(vouches):
                # A key made before its service became a gateway: a new one that
                # vouches (the old one stays registered, as do the events it signed).
                path.unlink()
        if not path.exists():
            write_key_file(path, SigningKey.generate(identity, role, vouches_for=vouches))
        os.chmod(path, 0o600)
        key = load_key_file(path)
        if key.identity != identity or key.role != role or set(key.vouches_for) != set(vouches):
            raise SigningKeyError(
                f"{path} holds the key of {key.identity} ({key.role}, vouching for "
                f"{list(key.vouches_for)}), not of {identity} ({role}, vouching for "
                f"{list(vouches)}); remove it to have a new one made"
            )
        loaded.append(key)
    return DataDirKeys(
        directory=directory,
        admin=loaded[0],
        services={s: k for s, k in zip(ownership.SERVICES, loaded[1:-1], strict=True)},
        person=loaded[-1],
    )


def load_key_dir(directory: Path) -> list[SigningKey]:
    """Every signing key file (`*.json`) in `directory`."""
    paths = sorted(Path(directory).glob("*.json"))
    if not paths:
        raise SigningKeyError(f"no signing key file (*.json) in {directory}")
    return [load_key_file(path) for path in paths]


# --- signing appends -------------------------------------------------------------------


class Signer(Protocol):
    """What an EventLog signs its appends with."""

    identity: str

    async def seal(self, log: EventLog, events: Sequence[Envelope]) -> list[tuple[Envelope, bytes]]:
        """Each event as appended (actor and signer stamped) and its stored bytes."""
        ...


class KeySigner:
    """Signs as one identity: every event's actor becomes the key's identity,
    but for a person the key vouches for (a gateway's key: `SigningKey.vouches_for`)."""

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.identity = key.identity
        self._key_id = key.key_id

    async def seal(self, log: EventLog, events: Sequence[Envelope]) -> list[tuple[Envelope, bytes]]:
        if not self.key.vouches_for:
            return seal_as(self.key, events, actor=self.identity)
        vouched = [
            e if self.key.may_sign_for(e.actor) else msgspec.structs.replace(e, actor=self.identity)
            for e in events
        ]
        return seal_as(self.key, vouched)


def seal_as(
    key: SigningKey, events: Sequence[Envelope], *, actor: str | None = None
) -> list[tuple[Envelope, bytes]]:
    """`events` stamped with `key` as signer (and `actor`, if given), signed as one batch."""
    from services.wiring.eventlog import checked_bytes

    key_id = key.key_id
    stamped = [
        msgspec.structs.replace(e, signer=key_id, actor=e.actor if actor is None else actor)
        for e in events
    ]
    stored = sign_batch(key, [checked_bytes(e) for e in stamped])
    return list(zip(stamped, stored, strict=True))


# --- trusting keys -----------------------------------------------------------------------


class Trust:
    """The keys one reader accepts, and the verifier that applies them."""

    def __init__(self, anchor: bytes) -> None:
        self.directory = KeyDirectory(anchor)
        self.verifier = Verifier(self.directory)
        self.as_of = 0
        """Every key event stored at or before this sequence is folded."""
        self.ignored: list[str] = []
        """Key events not folded, and why (bad registration, not signed by an admin)."""
        self._lock = asyncio.Lock()

    @classmethod
    def from_text(cls, anchor: str, *, source: str) -> Trust:
        try:
            return cls(decode_public_key(anchor.strip()))
        except ValueError as exc:
            raise SigningKeyError(f"{source}: {exc}") from None

    async def catch_up(self, log: EventLog, seq: int) -> None:
        """Fold every key event stored before `seq` (and up to the log's end now)."""
        async with self._lock:
            if seq <= self.as_of:
                return
            # The end first: a key event before it is then visible to what follows.
            end = await log.stream_end()
            positions = await asyncio.gather(*(log.position(s) for s in KEY_SUBJECTS))
            last = max(positions)
            if last > self.directory.reached:
                reading = log.read_raw(
                    from_seq=self.directory.reached + 1, subjects=KEY_SUBJECTS, until_seq=last
                )
                async for key_seq, subject, data in reading:
                    self._fold(key_seq, subject, data)
            self.as_of = max(end, seq, last)

    def _fold(self, seq: int, subject: str, data: bytes) -> None:
        try:
            event = self.verifier.verify(data, seq=seq, subject=subject)
        except UnverifiedEvent as exc:
            self.ignored.append(str(exc))
            self.directory.reached = max(self.directory.reached, seq)
            return
        except Exception as exc:
            self.ignored.append(f"stream sequence {seq} ({subject}): {exc}")
            self.directory.reached = max(self.directory.reached, seq)
            return
        why = self.directory.fold(seq, event)
        if why is not None:
            self.ignored.append(f"stream sequence {seq}: {why}")

    async def open(self, log: EventLog, data: bytes, *, seq: int, subject: str = "") -> Envelope:
        if seq > self.as_of:
            await self.catch_up(log, seq)
        return self.verifier.verify(data, seq=seq, subject=subject)


# --- registering keys --------------------------------------------------------------------


def registration_event(key: SigningKey) -> Envelope:
    """The KeyRegistered of `key` (to be appended by an admin)."""
    return registration_of(key.registration())


def registration_of(payload: KeyRegistered) -> Envelope:
    """`payload` as an event on the system app; its id is derived from the key id, so
    re-registering the same key within the duplicate window stores nothing."""
    return new_event(
        payload,
        app=names.SYSTEM_APP,
        actor=ADMIN_IDENTITY,
        event_id=derived_event_id(f"key/{payload.key_id}", KeyRegistered.event_type),
    )


def revocation_event(key_id: str, identity: str, reason: str) -> Envelope:
    return new_event(
        KeyRevoked(key_id=key_id, identity=identity, reason=reason),
        app=names.SYSTEM_APP,
        actor=ADMIN_IDENTITY,
        event_id=derived_event_id(f"key/{key_id}", KeyRevoked.event_type),
    )


async def register_keys(log: EventLog, keys: Iterable[SigningKey]) -> list[SigningKey]:
    """Register every key of `keys` the log does not know yet (as the admin: `log` signs
    with an admin key); return those registered now."""
    trust = log.require_trust()
    await trust.catch_up(log, await log.stream_end() + 1)
    known = trust.directory.keys
    missing = [k for k in keys if k.key_id not in known]
    if missing:
        await log.append_many([registration_event(k) for k in missing])
    return missing


# --- what a process uses --------------------------------------------------------------------


def configured_anchor(settings: Settings) -> str:
    """The admin public key a process trusts: WAKE_ADMIN_PUBLIC_KEY, else endpoints.json's
    `admin_public_key`; SigningKeyError if neither names one."""
    anchor = settings.admin_public_key
    if not anchor:
        raise SigningKeyError(
            f"no trust anchor: set {ENV_ADMIN_PUBLIC_KEY} (the admin's public key) or run "
            "against a data dir whose endpoints.json names `admin_public_key`; without it no "
            "event on the log can be verified"
        )
    return anchor


def use_signing(log: EventLog, settings: Settings, *, key_file: Path | str | None) -> None:
    """Give `log` the process's trust anchor and, with `key_file`, its signer."""
    log.trust = Trust.from_text(
        configured_anchor(settings),
        source=f"{ENV_ADMIN_PUBLIC_KEY} (or endpoints.json's admin_public_key)",
    )
    if key_file:
        log.signer = KeySigner(load_key_file(key_file))


def service_key_file(service: str, settings: Settings) -> Path:
    """WAKE_SIGNING_KEY, else the data dir's key of `service`."""
    if settings.signing_key:
        return Path(settings.signing_key).expanduser()
    return settings.data_path / SIGNING_DIR / file_name(service_identity(service))


def person_key_file(settings: Settings) -> Path | None:
    """WAKE_SIGNING_KEY, else the key the running Wake named for its person
    (endpoints.json `signing_key`); None if neither."""
    from services.wiring.settings import read_endpoints

    if settings.signing_key:
        return Path(settings.signing_key).expanduser()
    named = read_endpoints(settings.data_path).get("signing_key")
    return Path(str(named)) if named else None


def describe_key(key: Any) -> str:
    revoked = f", revoked at seq {key.revoked_seq}" if key.revoked_seq is not None else ""
    vouches = getattr(key, "vouches_for", ())
    vouching = f", vouches for {', '.join(sorted(vouches))}" if vouches else ""
    return (
        f"{key.key_id}  {key.identity} ({key.role}{vouching}), "
        f"registered at seq {key.registered_seq}{revoked}"
    )


def sign_as_admin(log: EventLog, data_dir: Path, anchor: str) -> EventLog:
    """`log` trusting `anchor` and signing with the admin key of `data_dir` (scripts and
    tests that drive a running Wake as its admin)."""
    log.trust = Trust.from_text(anchor, source="endpoints.json")
    log.signer = KeySigner(load_key_file(data_dir / SIGNING_DIR / ADMIN_FILE))
    return log


def sign_with_new_admin(log: EventLog) -> SigningKey:
    """Make `log` trust and sign with a fresh admin key of its own (a benchmark's own server)."""
    admin = SigningKey.generate(ADMIN_IDENTITY, ownership.ADMIN)
    log.trust = Trust(admin.public)
    log.signer = KeySigner(admin)
    return admin
