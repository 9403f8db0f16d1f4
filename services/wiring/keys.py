"""Wake's per-install keys: the bundle keyring (AES-256-GCM) and the digest key (HMAC-SHA256).

One file per purpose, under `<data dir>/keys/` (mode 0700), each mode 0600,
made by `wake up` / `wake infra up` (`ensure_keys`) and read by every process
that needs it:

- `bundles.keyring` -- one key per line, `<id> <base64 of 32 bytes>`; the last
  line is the key new bundles are sealed with. A sealed bundle names the id of
  its key, so adding a key (`wake infra rotate-keys`) leaves every older
  bundle readable; a key is only ever removed once no bundle sealed with it is
  still needed.
- `digest.key` -- 32 random bytes (base64): the HMAC key of every digest of a
  Secret value shown in a plan or diff. Separate from the bundle keys so that
  rotating those never changes a digest (a digest that changed would show
  every Secret as changed), and so that a process that shows diffs need not
  hold the key that opens bundles.

Why one file per purpose and not one key with derivation: the two have
different readers and different rotation (the keyring grows, the digest key
stays), and a file per purpose lets an operator hand each to only the
processes that need it.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events import redaction
from services.wiring.settings import Settings

if TYPE_CHECKING:
    from services.wiring.eventlog import EventLog

KEYS_DIR = "keys"
BUNDLE_KEYRING = "bundles.keyring"
DIGEST_KEY = "digest.key"

# The first bytes of a sealed bundle. A plain bundle is canonical JSON and
# starts with `{`, so the two can never be confused.
SEALED_MAGIC = b"\x00wake-aes256gcm-1\x00"
_NONCE_BYTES = 12
_KEY_BYTES = 32


class KeyFileError(ValueError):
    """A key file is missing, unreadable, malformed or not private."""


class BundleSealError(ValueError):
    """A sealed bundle cannot be opened: unknown key id, or altered bytes."""


@dataclass(frozen=True)
class BundleKeyring:
    """The keys bundles are sealed with; the last one seals, every one opens."""

    path: Path
    keys: tuple[tuple[str, bytes], ...]

    @property
    def current_id(self) -> str:
        return self.keys[-1][0]

    def seal(self, plaintext: bytes, *, name: str) -> bytes:
        """`plaintext` encrypted with the current key, bound to its object `name`."""
        key_id, key = self.keys[-1]
        nonce = secrets.token_bytes(_NONCE_BYTES)
        header = SEALED_MAGIC + bytes([len(key_id)]) + key_id.encode("ascii") + nonce
        return header + AESGCM(key).encrypt(nonce, plaintext, _aad(name))

    def open(self, sealed: bytes, *, name: str) -> bytes:
        """The plaintext of a bundle `seal` made for `name`; BundleSealError if it cannot be."""
        key_id, nonce, ciphertext = _parse_sealed(sealed)
        key = dict(self.keys).get(key_id)
        if key is None:
            raise BundleSealError(
                f"bundle {name} is sealed with key {key_id!r}, which is not in {self.path} "
                f"(it holds {', '.join(k for k, _ in self.keys)})"
            )
        try:
            return AESGCM(key).decrypt(nonce, ciphertext, _aad(name))
        except InvalidTag:
            raise BundleSealError(
                f"bundle {name} does not open with key {key_id!r}: its bytes were altered "
                "or it was stored under another name"
            ) from None


def is_sealed(data: bytes) -> bool:
    return data.startswith(SEALED_MAGIC)


def sealed_key_id(data: bytes) -> str:
    return _parse_sealed(data)[0]


def _parse_sealed(data: bytes) -> tuple[str, bytes, bytes]:
    at = len(SEALED_MAGIC)
    if len(data) < at + 1:
        raise BundleSealError("a sealed bundle too short to hold its header")
    id_len = data[at]
    key_id = data[at + 1 : at + 1 + id_len].decode("ascii", "replace")
    nonce_at = at + 1 + id_len
    nonce = data[nonce_at : nonce_at + _NONCE_BYTES]
    if len(nonce) != _NONCE_BYTES:
        raise BundleSealError("a sealed bundle too short to hold its nonce")
    return key_id, nonce, data[nonce_at + _NONCE_BYTES :]


def _aad(name: str) -> bytes:
    # Binding the object's name (the sha256 of the plaintext) means a sealed
    # bundle copied under another digest's name does not open.
    return SEALED_MAGIC + name.encode()


def keys_dir(data_dir: Path) -> Path:
    return data_dir / KEYS_DIR


def ensure_keys(data_dir: Path) -> tuple[Path, Path]:
    """Make the keys directory and both key files if missing; return (keyring, digest key).

    Existing files are kept as they are (their keys sealed bundles and made
    digests already); only their modes are narrowed back to private.
    """
    return ensure_key_files(keys_dir(data_dir))


def ensure_key_files(directory: Path) -> tuple[Path, Path]:
    """`ensure_keys` for a directory of keys of its own (docker-compose's secrets)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    keyring = directory / BUNDLE_KEYRING
    digest = directory / DIGEST_KEY
    if not keyring.exists():
        _write_private(keyring, _keyring_line(_new_key_id(), secrets.token_bytes(_KEY_BYTES)))
    if not digest.exists():
        _write_private(digest, base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode() + "\n")
    for path in (keyring, digest):
        os.chmod(path, 0o600)
    return keyring, digest


def rotate_bundle_key(path: Path) -> str:
    """Add a new current key to the keyring at `path`; return its id. Old keys stay."""
    load_keyring(path)
    key_id = _new_key_id()
    with open(path, "a", encoding="ascii") as handle:
        handle.write(_keyring_line(key_id, secrets.token_bytes(_KEY_BYTES)))
    return key_id


def load_keyring(path: Path) -> BundleKeyring:
    """The keyring at `path`; KeyFileError naming the file and line if it is not one."""
    text = _read_private(path)
    keys: list[tuple[str, bytes]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        key = _decode_key(parts[1], path, number) if len(parts) == 2 else None
        if key is None or not parts[0].isascii() or len(parts[0]) > 64:
            raise KeyFileError(f"{path}:{number}: expected `<id> <base64 of 32 bytes>`")
        keys.append((parts[0], key))
    if not keys:
        raise KeyFileError(f"{path}: holds no key")
    return BundleKeyring(path=path, keys=tuple(keys))


def load_digest_key(path: Path) -> bytes:
    """The 32-byte HMAC key at `path`."""
    text = _read_private(path).strip()
    key = _decode_key(text, path, 1)
    if key is None:
        raise KeyFileError(f"{path}: expected the base64 of 32 bytes")
    return key


def _decode_key(text: str, path: Path, line: int) -> bytes | None:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        return None
    return key if len(key) == _KEY_BYTES else None


def _read_private(path: Path) -> str:
    try:
        mode = path.stat().st_mode & 0o777
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: no such key file (`wake up` or `wake infra up` makes it)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"{path}: unreadable key file: {exc}") from None
    if mode & 0o077:
        raise KeyFileError(
            f"{path}: mode {mode:o} lets others read a key; make it 0600 (chmod 600 {path})"
        )
    return text


def _write_private(path: Path, text: str) -> None:
    # Created 0600 from the start (never briefly world-readable), and only if
    # absent: two `wake` processes starting at once cannot both write a key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(text)


def _keyring_line(key_id: str, key: bytes) -> str:
    return f"{key_id} {base64.b64encode(key).decode()}\n"


def _new_key_id() -> str:
    return "k" + secrets.token_hex(4)


def keyring_path(settings: Settings) -> Path:
    if settings.bundle_keyring_file:
        return Path(settings.bundle_keyring_file).expanduser()
    return keys_dir(settings.data_path) / BUNDLE_KEYRING


def digest_key_path(settings: Settings) -> Path:
    if settings.digest_key_file:
        return Path(settings.digest_key_file).expanduser()
    return keys_dir(settings.data_path) / DIGEST_KEY


def configured_keyring(settings: Settings) -> BundleKeyring | None:
    """The keyring the settings name; None if none is set and the data dir has none.

    A keyring set explicitly must load: a typo must not silently store bundles plain.
    """
    path = keyring_path(settings)
    if not settings.bundle_keyring_file and not path.exists():
        return None
    return load_keyring(path)


def configured_digest_key(settings: Settings) -> bytes | None:
    path = digest_key_path(settings)
    if not settings.digest_key_file and not path.exists():
        return None
    return load_digest_key(path)


def use_install_keys(log: EventLog, settings: Settings) -> None:
    """Give this process the install's keys: `log` seals and opens bundles, digests are keyed."""
    log.bundle_keys = configured_keyring(settings)
    digest_key = configured_digest_key(settings)
    if digest_key is not None:
        redaction.use_digest_key(digest_key)
