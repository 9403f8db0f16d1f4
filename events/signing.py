"""Signed events: canonical bytes, Ed25519 signatures over batches, and their verification.

Pure (STYLE 2): no I/O; the key files and the reading of the key events sit in
`services/wiring/signing.py`.

**What is signed.** An event's canonical bytes are its envelope exactly as the
writer encoded it (`events.envelope.encode`), `signer` (the key id) included.
The signature is then appended as a last JSON member, `...,"sig":"<value>"}`:
a reader cuts that member off the stored bytes and has the signed bytes back,
byte for byte, without re-encoding anything (a reader re-encoding would lose
the fields of a newer writer it does not know, and the signature with them).
The stored message is still one JSON object, which every reader decodes as
before (`sig` is a field it ignores), and it survives export and re-import
as long as its bytes do. The cut is unambiguous: `,"sig":"` cannot occur
inside a JSON string (its quotes would be escaped), and the object must end
right after the member's value.

**Batches.** Signing each event would cost a group commit of 1000 events 1000
Ed25519 signatures, and a replay of a million events a million verifications
(tens of microseconds each). A batch is signed once instead: the leaves of a
Merkle tree are the hashes of its events' signed bytes, the root is signed,
and each event carries its index, the batch's size, the root's signature and
its proof (the sibling hashes on its way to the root). An event alone is thus
verifiable; a reader that reads the whole batch verifies the signature once
and remembers the tree's nodes it has checked (per key), so each further event
of the batch costs a hash or two. A single event is a batch of one.

    sig = "<n>.<i>.<base64 root signature>.<base64 proof>"
    leaf = sha256(signed bytes)[:16]; node = sha256(0x01 | left | right)[:16]
    root signature = Ed25519(b"wake-batch-v1" | n as 4 bytes | root)

A level with an odd number of nodes passes its last one up unchanged. Nodes are
the first 128 bits of their sha256: what a forger needs is a second preimage of a
node someone else's key signed (2^128 work); collisions (2^64) would need the
signer to sign both colliding events, whose bytes it makes itself (a random
UUIDv7, its clock) -- and a signer can sign whatever it may anyway. Halving the
hashes keeps a proof of a 1000-event batch at 160 bytes: every byte is read
again by every reader of every event. A leaf
needs no prefix of its own: signed bytes are a JSON object (they start with
`{`), never the 33 bytes of a node starting with 0x01.

**Who may sign what.** The keys are registered by `KeyRegistered` events signed
by an admin key; the first admin key (the trust anchor) is configured, never
read from the log. A key's `role` must be entitled to the event's type
(events/ownership.py, the table that also makes the NATS permissions), and an
event's `actor` must be the key's identity -- or, for a gateway (the chat
service, the API), a person it vouches for: a key registered with
`vouches_for=("matrix",)` may sign events whose actor is `matrix:@ana:server`
(namespaces in ownership.VOUCHABLE), so an approval given in chat names the
person who gave it and is signed by what heard it. A revoked key's signature stays
valid on events stored before its `KeyRevoked` (lower sequence), not after.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from events import names, ownership
from events.envelope import Envelope, InvalidEvent, decode
from events.payloads import KeyRegistered, KeyRevoked

SIG_MEMBER = b',"sig":"'
_SIG_AT = len(SIG_MEMBER)
_SIG_END = b'"}'
_PREFIX = f"{names.SUBJECT_PREFIX}."
_ROOT_PREFIX = b"wake-batch-v1"
_NODE = b"\x01"
_NODE_BYTES = 16
_sha256 = hashlib.sha256
_PUBLIC_KEY_BYTES = 32
# Largest batch a signature may cover (publishing caps batches far lower).
MAX_BATCH = 1 << 20
# Verified tree nodes remembered per key before the memory is started afresh.
_REMEMBERED_NODES = 200_000

ADMIN_IDENTITY = "admin"
"""The actor of events signed by the trust anchor (the admin key of the data dir)."""

KEY_TYPES = frozenset((KeyRegistered.event_type, KeyRevoked.event_type))


class UnverifiedEvent(InvalidEvent):
    """An event whose signature does not make it acceptable: unsigned, badly signed, signed
    by a key unknown, revoked or not entitled to its type, or by someone other than its actor.

    Readers treat it exactly as an undecodable message (skipped, recorded once,
    never acted on). `unknown_key`: the key may just not be known *yet*.
    """

    def __init__(
        self,
        message: str,
        *,
        seq: int = 0,
        event_id: str | None = None,
        signer: str = "",
        reason: str = "",
        unknown_key: bool = False,
    ) -> None:
        super().__init__(message, field="$.sig", event_id=event_id)
        self.seq = seq
        self.signer = signer
        self.reason = reason
        self.unknown_key = unknown_key


# --- keys -----------------------------------------------------------------------


def key_id(public_key: bytes) -> str:
    """The id of an Ed25519 public key (its 32 raw bytes): 16 hex digits of its sha256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def public_bytes(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def private_bytes(key: Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def decode_public_key(text: str) -> bytes:
    """The 32 raw bytes of a base64 public key; ValueError if it is not one."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"not a base64 Ed25519 public key: {text[:60]!r}") from None
    if len(raw) != _PUBLIC_KEY_BYTES:
        raise ValueError(f"an Ed25519 public key has 32 bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True)
class SigningKey:
    """A private key and who signs with it: `identity` (the events' actor) as `role`."""

    identity: str
    role: str
    private: Ed25519PrivateKey
    vouches_for: tuple[str, ...] = ()
    """Namespaces of actors it signs for beside its identity (ownership.VOUCHABLE)."""

    @property
    def public(self) -> bytes:
        return public_bytes(self.private.public_key())

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    @classmethod
    def generate(cls, identity: str, role: str, *, vouches_for: tuple[str, ...] = ()) -> SigningKey:
        return cls(
            identity=identity,
            role=role,
            private=Ed25519PrivateKey.generate(),
            vouches_for=vouches_for,
        )

    def may_sign_for(self, actor: str) -> bool:
        """Whether events of `actor` keep that actor when this key signs them."""
        return actor == self.identity or (ownership.vouched_namespace(actor) in self.vouches_for)

    def registration(self) -> KeyRegistered:
        """The payload that registers this key (to be signed by an admin key)."""
        return KeyRegistered(
            key_id=self.key_id,
            identity=self.identity,
            role=self.role,
            public_key=encode_key(self.public),
            vouches_for=list(self.vouches_for),
        )


# --- signing --------------------------------------------------------------------


def _leaf(signed: bytes) -> bytes:
    return hashlib.sha256(signed).digest()[:_NODE_BYTES]


def _root_message(size: int, root: bytes) -> bytes:
    return _ROOT_PREFIX + size.to_bytes(4, "big") + root


def sign_batch(key: SigningKey, signed: Sequence[bytes]) -> list[bytes]:
    """The stored bytes of each of `signed` (canonical bytes of envelopes that name
    `key` as their signer), one signature covering all of them."""
    size = len(signed)
    if not 0 < size <= MAX_BATCH:
        raise ValueError(f"a signed batch holds 1 to {MAX_BATCH} events, not {size}")
    levels = [[_leaf(item) for item in signed]]
    while len(levels[-1]) > 1:
        below = levels[-1]
        above = [
            hashlib.sha256(_NODE + below[at] + below[at + 1]).digest()[:_NODE_BYTES]
            for at in range(0, len(below) - 1, 2)
        ]
        if len(below) % 2:
            above.append(below[-1])
        levels.append(above)
    signature = encode_key(key.private.sign(_root_message(size, levels[-1][0])))
    head = f"{size}.".encode()
    stored = []
    for index, item in enumerate(signed):
        if not item.endswith(b"}"):
            raise ValueError("canonical bytes of an event end with '}'")
        proof = []
        at = index
        for level in levels[:-1]:
            sibling = at ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            at >>= 1
        value = b"%s%d.%s.%s" % (
            head,
            index,
            signature.encode(),
            base64.b64encode(b"".join(proof)),
        )
        stored.append(item[:-1] + SIG_MEMBER + value + _SIG_END)
    return stored


def split_signature(data: bytes) -> tuple[bytes, bytes] | None:
    """(signed bytes, signature value) of stored bytes; None if they carry no signature."""
    at = data.rfind(SIG_MEMBER)
    if at < 0 or not data.endswith(_SIG_END):
        return None
    value = data[at + len(SIG_MEMBER) : -len(_SIG_END)]
    if b'"' in value or b"\\" in value:
        return None
    return data[:at] + b"}", value


# --- who is who -------------------------------------------------------------------


@dataclass(eq=False)
class KnownKey:
    """A key a reader trusts, and what it has verified with it."""

    key_id: str
    identity: str
    role: str
    public: Ed25519PublicKey
    registered_seq: int
    revoked_seq: int | None = None
    nodes: set[bytes] = field(default_factory=set)
    """Hashes of tree nodes (leaves included) proven to lie under a root this key signed."""
    types: frozenset[str] | None = None
    """The event types its role may append; None: any (the admin)."""
    vouches_for: frozenset[str] = frozenset()
    """Namespaces of actors it may sign for beside its identity."""

    def speaks_for(self, actor: str) -> bool:
        return actor == self.identity or (
            bool(self.vouches_for) and ownership.vouched_namespace(actor) in self.vouches_for
        )

    def __post_init__(self) -> None:
        if self.role != ownership.ADMIN:
            self.types = ownership.PUBLISHES.get(self.role, frozenset())


class KeyDirectory:
    """The keys a reader trusts: the anchor, then those the key events register.

    Folded from `KeyRegistered` / `KeyRevoked` events that were themselves
    verified (signed by an admin key). The first registration of a key id
    stands; a revocation is final.
    """

    def __init__(self, anchor: bytes) -> None:
        self.anchor_id = key_id(anchor)
        self.keys: dict[str, KnownKey] = {
            self.anchor_id: KnownKey(
                key_id=self.anchor_id,
                identity=ADMIN_IDENTITY,
                role=ownership.ADMIN,
                public=Ed25519PublicKey.from_public_bytes(anchor),
                registered_seq=0,
            )
        }
        self.reached = 0
        """The stream sequence of the last key event folded."""

    def fold(self, seq: int, event: Envelope) -> str | None:
        """Fold one verified key event; a reason if it was ignored, else None."""
        self.reached = max(self.reached, seq)
        payload = event.payload
        if isinstance(payload, KeyRegistered):
            try:
                raw = decode_public_key(payload.public_key)
            except ValueError as exc:
                return f"KeyRegistered {event.event_id}: {exc}"
            if key_id(raw) != payload.key_id:
                return (
                    f"KeyRegistered {event.event_id}: key id {payload.key_id} is not the id "
                    f"of its public key ({key_id(raw)})"
                )
            if payload.role not in ownership.IDENTITIES:
                return f"KeyRegistered {event.event_id}: unknown role {payload.role!r}"
            unvouchable = sorted(set(payload.vouches_for) - ownership.VOUCHABLE)
            if unvouchable:
                return (
                    f"KeyRegistered {event.event_id}: may not vouch for {unvouchable} "
                    f"(only {sorted(ownership.VOUCHABLE)})"
                )
            if payload.key_id in self.keys:
                return None
            self.keys[payload.key_id] = KnownKey(
                key_id=payload.key_id,
                identity=payload.identity,
                role=payload.role,
                public=Ed25519PublicKey.from_public_bytes(raw),
                registered_seq=seq,
                vouches_for=frozenset(payload.vouches_for),
            )
        elif isinstance(payload, KeyRevoked):
            known = self.keys.get(payload.key_id)
            if known is None:
                return f"KeyRevoked {event.event_id}: no key {payload.key_id} is registered"
            if known.key_id == self.anchor_id:
                return f"KeyRevoked {event.event_id}: the trust anchor is not revoked by an event"
            if known.revoked_seq is None:
                known.revoked_seq = seq
        return None

    def active(self) -> list[KnownKey]:
        return [k for k in self.keys.values() if k.revoked_seq is None]


class Verifier:
    """Turns stored bytes into an event only if its signature makes it acceptable."""

    def __init__(self, directory: KeyDirectory) -> None:
        self.directory = directory
        self._keys = directory.keys
        self.signatures = 0
        """Ed25519 verifications made (one per batch read, whatever its size)."""

    def verify(self, data: bytes, *, seq: int, subject: str = "") -> Envelope:
        """The event stored at `seq` as `data`, or UnverifiedEvent (InvalidEvent if it
        does not even decode) naming the sequence, the event id, the signer and why."""
        # Hot: every event every reader reads comes through here (a replay of a
        # million events spends its budget per event in microseconds), so the
        # accepted path is one pass; a refusal then finds its reason in order.
        at = data.rfind(SIG_MEMBER)
        end = len(data) - 2
        if (
            at < 0
            or not data.endswith(_SIG_END)
            # a quote would end the member early and smuggle in another one
            or data.find(b'"', at + _SIG_AT, end) >= 0
            or data.find(b"\\", at + _SIG_AT, end) >= 0
        ):
            signed = value = None
        else:
            value = data[at + _SIG_AT : end]
            signed = data[:at] + b"}"
        try:
            # The signed bytes are the event without its `sig`: the same object, shorter.
            event = decode(data if signed is None else signed)
        except InvalidEvent as exc:
            raise InvalidEvent(
                f"stream sequence {seq} ({subject or '?'}): {exc}",
                field=exc.field,
                event_id=exc.event_id,
            ) from None
        key = self._keys.get(event.signer)
        if (
            signed is not None
            and key is not None
            and seq > key.registered_seq
            and (key.revoked_seq is None or seq <= key.revoked_seq)
            and (key.types is None or event.type in key.types)
            and (event.actor == key.identity or key.speaks_for(event.actor))
            and (not subject or subject == f"{_PREFIX}{event.app}.{event.type}")
            and (
                _sha256(signed).digest()[:_NODE_BYTES] in key.nodes
                or self._proven(key, signed, value)
            )
        ):
            return event
        raise self._refusal(event, key, signed, value, seq=seq, subject=subject)

    def _refusal(
        self,
        event: Envelope,
        key: KnownKey | None,
        signed: bytes | None,
        value: bytes | None,
        *,
        seq: int,
        subject: str,
    ) -> UnverifiedEvent:
        """Why `verify` refused `event`, the first reason in order."""
        if signed is None or value is None:
            return self._refused(seq, subject, event, "it is not signed")
        if key is None:
            return self._refused(
                seq,
                subject,
                event,
                f"its key {event.signer or '(none named)'} is not registered",
                unknown_key=True,
            )
        if seq <= key.registered_seq:
            return self._refused(
                seq,
                subject,
                event,
                f"its key was only registered later, at stream sequence {key.registered_seq}",
            )
        if not (_leaf(signed) in key.nodes or self._proven(key, signed, value)):
            return self._refused(seq, subject, event, "its signature does not verify")
        if key.revoked_seq is not None and seq > key.revoked_seq:
            return self._refused(
                seq, subject, event, f"its key was revoked at stream sequence {key.revoked_seq}"
            )
        if key.types is not None and event.type not in key.types:
            return self._refused(
                seq,
                subject,
                event,
                f"{key.identity} (role {key.role}) may not append {event.type}",
            )
        if not key.speaks_for(event.actor):
            vouching = (
                f" (nor one it vouches for: {sorted(key.vouches_for)})" if key.vouches_for else ""
            )
            return self._refused(
                seq,
                subject,
                event,
                f"its actor {event.actor!r} is not its signer {key.identity!r}{vouching}",
            )
        return self._refused(
            seq, subject, event, f"it is an event of {event.app}.{event.type}, moved here"
        )

    def _refused(
        self, seq: int, subject: str, event: Envelope, why: str, *, unknown_key: bool = False
    ) -> UnverifiedEvent:
        who = event.signer or "nobody"
        return UnverifiedEvent(
            f"stream sequence {seq} ({subject or event.type}): event {event.event_id} "
            f"signed by {who} refused: {why}",
            seq=seq,
            event_id=event.event_id,
            signer=event.signer,
            reason=why,
            unknown_key=unknown_key,
        )

    def _proven(self, key: KnownKey, signed: bytes, value: bytes) -> bool:
        """Whether `signed` lies under a root `key` signed, as `value` says."""
        fields = value.split(b".")
        if len(fields) != 4:
            return False
        try:
            size, index = int(fields[0]), int(fields[1])
        except ValueError:
            return False
        if not (0 < size <= MAX_BATCH and 0 <= index < size):
            return False
        node = _leaf(signed)
        nodes = key.nodes
        try:
            proof = base64.b64decode(fields[3], validate=True)
        except (binascii.Error, ValueError):
            return False
        # Every node met on the way, and every sibling, lies under the root once
        # the root verifies: a reader of the whole batch then finds most leaves
        # (each one's sibling's) already proven, at the cost of one hash.
        met = [node]
        taken = 0
        at, width = index, size
        sha256 = hashlib.sha256
        while width > 1:
            if at & 1 or at + 1 < width:
                sibling = proof[taken : taken + _NODE_BYTES]
                if len(sibling) != _NODE_BYTES:
                    return False
                taken += _NODE_BYTES
                if at & 1:
                    node = sha256(_NODE + sibling + node).digest()[:_NODE_BYTES]
                else:
                    node = sha256(_NODE + node + sibling).digest()[:_NODE_BYTES]
                met.append(sibling)
                if node in nodes:
                    nodes.update(met)
                    return True
                met.append(node)
            at >>= 1
            width = (width + 1) >> 1
        if taken != len(proof):
            return False
        try:
            signature = base64.b64decode(fields[2], validate=True)
            key.public.verify(signature, _root_message(size, node))
        except (binascii.Error, ValueError, InvalidSignature):
            return False
        self.signatures += 1
        if len(nodes) > _REMEMBERED_NODES:
            nodes.clear()
        nodes.update(met)
        return True
