"""Signing and verifying webhook bodies (pure)."""

from __future__ import annotations

import pytest

from services.notifier.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    BadSignature,
    Secret,
    sign,
    signed_headers,
    verified_body,
    verify,
)

# RFC 2104 HMAC-SHA256 of this text under the key "key", as published widely.
FOX = b"The quick brown fox jumps over the lazy dog"
FOX_SIGNATURE = "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"


def test_the_signature_is_the_hex_hmac_sha256_of_the_body():
    assert sign(FOX, "key") == FOX_SIGNATURE
    assert sign(FOX, b"key") == FOX_SIGNATURE
    assert sign(FOX, Secret("key")) == FOX_SIGNATURE


def test_a_correct_signature_verifies():
    assert verify(FOX, FOX_SIGNATURE, "key")
    assert verified_body(FOX, FOX_SIGNATURE, "key") == FOX


@pytest.mark.parametrize(
    ("body", "header", "secret"),
    [
        (FOX + b".", FOX_SIGNATURE, "key"),  # body changed
        (FOX, FOX_SIGNATURE, "other key"),  # wrong secret
        (FOX, FOX_SIGNATURE.upper(), "key"),  # scheme and hex must be as sent
        (FOX, FOX_SIGNATURE.removeprefix("sha256="), "key"),  # no scheme
        (FOX, "sha1=" + FOX_SIGNATURE.removeprefix("sha256="), "key"),  # other scheme
        (FOX, FOX_SIGNATURE[:-1], "key"),  # truncated
        (FOX, FOX_SIGNATURE[:-1] + "\u00e9", "key"),  # not ASCII
        (FOX, "", "key"),
        (FOX, None, "key"),
        (FOX, sign(FOX, ""), ""),  # an empty key proves nothing
    ],
)
def test_anything_else_does_not_verify(body, header, secret):
    assert not verify(body, header, secret)
    with pytest.raises(BadSignature) as raised:
        verified_body(body, header, secret)
    assert "key" not in str(raised.value)


def test_headers_carry_type_delivery_id_and_signature():
    headers = signed_headers(FOX, event_type="ApplySucceeded", event_id="e-1", secret=Secret("key"))
    assert headers == {
        "Content-Type": "application/json",
        EVENT_HEADER: "ApplySucceeded",
        DELIVERY_HEADER: "e-1",
        SIGNATURE_HEADER: FOX_SIGNATURE,
    }


def test_without_a_secret_there_is_no_signature_header():
    headers = signed_headers(FOX, event_type="ApplySucceeded", event_id="e-1", secret=Secret(""))
    assert SIGNATURE_HEADER not in headers


def test_a_secret_never_shows_itself():
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret)
    assert "hunter2" not in str(secret)
    assert "hunter2" not in f"{secret} {[secret]}"
