"""Signing webhook bodies, and checking a signature as a receiver does. Pure.

A body is signed with HMAC-SHA256 under the channel's secret; the hex digest
travels in `X-Wake-Signature: sha256=<hex>` (the scheme GitHub uses for its
own webhooks, so existing receivers adapt with one line). The signature covers
the exact bytes of the body: a receiver must check it before parsing them.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NewType

SIGNATURE_HEADER = "X-Wake-Signature"
EVENT_HEADER = "X-Wake-Event"
DELIVERY_HEADER = "X-Wake-Delivery"
SCHEME = "sha256="

VerifiedBody = NewType("VerifiedBody", bytes)
"""A webhook body whose signature `verified_body()` has checked."""


class Secret:
    """A signing key that never shows itself in a repr, a log line or an f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        self._value = value.encode() if isinstance(value, str) else bytes(value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def key(self) -> bytes:
        """The key's bytes, for HMAC only."""
        return self._value


class BadSignature(ValueError):
    """A body whose signature header is missing, malformed or does not match."""


def _as_secret(secret: Secret | str | bytes) -> Secret:
    return secret if isinstance(secret, Secret) else Secret(secret)


def sign(body: bytes, secret: Secret | str | bytes) -> str:
    """The X-Wake-Signature value of `body`: `sha256=` and the hex HMAC-SHA256 under `secret`."""
    digest = hmac.new(_as_secret(secret).key(), body, hashlib.sha256).hexdigest()
    return SCHEME + digest


def signed_headers(
    body: bytes, *, event_type: str, event_id: str, secret: Secret | None
) -> dict[str, str]:
    """The headers a webhook POST of `body` carries.

    `X-Wake-Delivery` is the event's id: the same on every retry and every
    redelivery, so a receiver drops duplicates by it. Without a secret the
    signature header is left out rather than made with an empty key, which
    anyone could forge.
    """
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: event_type,
        DELIVERY_HEADER: event_id,
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    return headers


def verify(body: bytes, header: str | None, secret: Secret | str | bytes) -> bool:
    """True if `header` is the X-Wake-Signature of exactly `body` under `secret`.

    Compares in constant time, so the time a refusal takes tells an attacker
    nothing about how much of a forged signature was right. A missing,
    malformed or non-ASCII header is simply not valid.
    """
    if not header or not header.isascii() or not header.startswith(SCHEME):
        return False
    if not _as_secret(secret):
        return False
    return hmac.compare_digest(sign(body, secret), header.strip())


def verified_body(body: bytes, header: str | None, secret: Secret | str | bytes) -> VerifiedBody:
    """`body`, once its signature is checked; BadSignature if it fails.

    The error says only that the check failed (STYLE 12): which part was
    wrong is of use to a forger, not to the sender, who knows its secret.
    """
    if not verify(body, header, secret):
        raise BadSignature(f"{SIGNATURE_HEADER} missing or not valid for this body")
    return VerifiedBody(body)
