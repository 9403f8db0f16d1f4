"""How a Secret value is shown wherever Wake shows one: as a keyed digest, never itself.

A plan's diff, `wake diff` and every event show each `data` / `stringData`
value of a Secret as `<redacted hmac-sha256:abcd1234>`: a changed value shows
as changed, and nothing else is revealed. The digest is keyed (HMAC-SHA256
with the install's digest key, `<data dir>/keys/digest.key`) because a plain
sha256 of a weak value -- a short password, a port, `true` -- is confirmed
offline by hashing guesses; without the key, guesses cannot be checked.

Pure: the process installs its key once at start (`use_digest_key`, from the
shell); until then a random key of this process is used, so a digest is never
unkeyed -- it is then only comparable within this process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Eight hex digits: enough to tell two values apart in a diff, too short to
# be worth attacking even with the key.
DIGEST_CHARS = 8

_key: bytes = secrets.token_bytes(32)


def use_digest_key(key: bytes) -> None:
    """Make `key` (the install's digest key) the key of every digest this process shows."""
    global _key
    _key = bytes(key)


def secret_digest(text: str) -> str:
    """The short keyed digest that stands for a Secret value."""
    return hmac.new(_key, text.encode(), hashlib.sha256).hexdigest()[:DIGEST_CHARS]


def keyed_hexdigest(data: bytes) -> str:
    """The full HMAC-SHA256 of `data` with the digest key: a keyed content digest."""
    return hmac.new(_key, data, hashlib.sha256).hexdigest()


def redacted_value(text: str) -> str:
    return f"<redacted hmac-sha256:{secret_digest(text)}>"
