"""Signing for tests: one admin key per test session, and a keychain that holds a key for anyone.

Every reader verifies every event (events/signing.py), in tests as in
production. A test's log signs through a `Keychain`: each event is signed by
the key of its actor -- `service:planner` with a key of role `planner`,
`user:ana` with one of role `operator` -- which the keychain registers on the
test's server (signed by the session's admin key, the trust anchor) before
its first use. So a test can still append an approval by `user:ana` and a
plan by `service:planner` through one log, and both are verified as they
would be from two processes each holding its own key. An actor that is no
identity of Wake's (`tests`, `bench`) signs with a key of role `admin`.

Production never signs so: a process holds one key, and its events' actor is
that key's identity (`services/wiring/signing.KeySigner`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import secrets
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events import ownership
from events.envelope import Envelope
from events.signing import ADMIN_IDENTITY, SigningKey, encode_key
from services.wiring.eventlog import EventLog
from services.wiring.signing import (
    ENV_ADMIN_PUBLIC_KEY,
    ENV_SIGNING_KEY,
    Trust,
    registration_event,
    seal_as,
    write_key_file,
)

# Keys derive from one seed per test session, inherited by the processes a test
# starts (a consumer worker, a `wake` command): they sign and trust alike.
_SEED = os.environ.setdefault("WAKE_TEST_SIGNING_SEED", secrets.token_hex(32))
_KEYS: dict[str, SigningKey] = {}
_BEFORE_ALL = datetime(2000, 1, 1, tzinfo=UTC)


def role_of(identity: str) -> str:
    if identity.startswith("service:") and identity[8:] in ownership.SERVICES:
        return identity[8:]
    if identity.startswith("user:"):
        return ownership.OPERATOR
    return ownership.ADMIN


def key_of(identity: str) -> SigningKey:
    """The session's key of `identity`."""
    key = _KEYS.get(identity)
    if key is None:
        private = Ed25519PrivateKey.from_private_bytes(
            hashlib.sha256(f"{_SEED}/{identity}".encode()).digest()
        )
        key = _KEYS[identity] = SigningKey(
            identity=identity, role=role_of(identity), private=private
        )
    return key


ADMIN = key_of(ADMIN_IDENTITY)
"""This test session's admin key: the trust anchor of every test's log."""
ANCHOR = encode_key(ADMIN.public)


class Keychain:
    """Signs each event as its actor, registering that actor's key on first use per log."""

    identity = "tests"

    def __init__(self) -> None:
        self._registered: weakref.WeakKeyDictionary[EventLog, set[str]] = (
            weakref.WeakKeyDictionary()
        )

    async def seal(self, log: EventLog, events: Sequence[Envelope]) -> list[tuple[Envelope, bytes]]:
        sealed: list[tuple[Envelope, bytes]] = []
        for actor, group in itertools.groupby(events, key=lambda e: e.actor or self.identity):
            key = key_of(actor)
            await register(log, key)
            sealed.extend(seal_as(key, list(group), actor=actor))
        return sealed

    def registered(self, log: EventLog) -> set[str]:
        return self._registered.setdefault(log, set())


KEYCHAIN = Keychain()


async def register(log: EventLog, key: SigningKey) -> None:
    """Register `key` on the log's server (once per log), signed by the session's admin."""
    done = KEYCHAIN.registered(log)
    if key is ADMIN or key.key_id in done:
        return
    # Dated before any test's history (synthetic histories use fixed past times, and
    # `wake replay --until TIME` stops at the first event after TIME): the session's
    # keys exist before everything they sign.
    registration = msgspec.structs.replace(registration_event(key), occurred_at=_BEFORE_ALL)
    ((event, data),) = seal_as(ADMIN, [registration])
    await log.js.publish(
        f"wake.evt.{event.app}.{event.type}", data, headers={"Nats-Msg-Id": event.event_id}
    )
    done.add(key.key_id)


def trusting(log: EventLog) -> EventLog:
    """`log`, trusting the session's admin key and signing through the keychain."""
    log.trust = Trust(ADMIN.public)
    log.signer = KEYCHAIN
    return log


async def connect(url: str, **kwargs) -> EventLog:
    """`EventLog.connect`, then `trusting`."""
    return trusting(await EventLog.connect(url, **kwargs))


PERSON = "user:tester"
"""Who runs the `wake` commands of tests: the `event_log` fixture registers their key."""


def cli_env(directory: Path, identity: str = PERSON) -> dict[str, str]:
    """Environment for a `wake` command run by `identity` against a test's server: its key
    (written under `directory`) and the session's anchor. The key must be registered on
    that server: PERSON's is (`event_log`); another's, with `register(log, key_of(...))`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{identity.replace(':', '-')}.key.json"
    write_key_file(path, key_of(identity))
    return {ENV_SIGNING_KEY: str(path), ENV_ADMIN_PUBLIC_KEY: ANCHOR}
