"""Request bodies in Kubernetes' protobuf encoding, read into the JSON objects the store keeps.

kubectl's typed `create` subcommands (`kubectl create namespace|configmap|
secret|deployment|service|job|...`) send `application/vnd.kubernetes.protobuf`
and accept a JSON answer (their Accept header lists both), so only decoding is
needed here. The body is the API server's envelope: the magic `k8s\\x00`, then
a `runtime.Unknown` message whose `typeMeta` names apiVersion and kind and
whose `raw` is the kind's own message.

A small wire-format reader (varints, fixed 32/64-bit, length-delimited) walks
those bytes along the hand-written field tables of `protobuf_schema.py` and
builds what `json.Marshal` of the Go type would: field names from the tables,
zero values left out as `omitempty` leaves them out (except for the pointer
fields the tables mark, whose presence is their meaning), bytes in base64,
times in RFC 3339, quantities and int-or-strings as in JSON.

Pure: bytes in, dict out. Anything it cannot read faithfully -- a kind or a
field the tables do not know, a malformed message -- raises ProtobufError
naming it; nothing is guessed or silently dropped.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from services.sandbox.protobuf_schema import (
    BYTES,
    INT_OR_STRING,
    KINDS,
    MESSAGES,
    QUANTITY,
    SCALARS,
    STATUS,
    STRING,
    TIME,
    Field,
)

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_VARINT, _FIXED64, _LENGTH, _START_GROUP, _END_GROUP, _FIXED32 = range(6)


def accepts_json(accept: str) -> bool:
    """Whether a client sending `accept` can read a JSON answer (kubectl lists JSON second)."""
    if not accept.strip():
        return True
    for item in accept.split(","):
        media = item.split(";")[0].strip().lower()
        if media in ("application/json", "application/*", "*/*", "*"):
            return True
    return False


class ProtobufError(ValueError):
    """A body the emulator cannot read. `unsupported`: well-formed but beyond its tables."""

    def __init__(self, message: str, *, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


# --- wire format -------------------------------------------------------------------


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ProtobufError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            raise ProtobufError("varint longer than 10 bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field of one message, in wire order."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ProtobufError("field number 0 is not valid")
        value: int | bytes
        if wire == _VARINT:
            value, pos = _varint(data, pos)
        elif wire == _FIXED64:
            if pos + 8 > len(data):
                raise ProtobufError(f"truncated 64-bit value of field {number}")
            value, pos = struct.unpack_from("<Q", data, pos)[0], pos + 8
        elif wire == _FIXED32:
            if pos + 4 > len(data):
                raise ProtobufError(f"truncated 32-bit value of field {number}")
            value, pos = struct.unpack_from("<I", data, pos)[0], pos + 4
        elif wire == _LENGTH:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError(f"field {number} runs past the end of its message")
            value, pos = data[pos : pos + size], pos + size
        else:
            raise ProtobufError(f"field {number} has wire type {wire}, which Kubernetes never uses")
        yield number, wire, value


def _signed(value: int) -> int:
    """A varint read as two's complement (int32 and int64 are not zigzag-encoded)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


# --- messages to JSON --------------------------------------------------------------


def decode(body: bytes) -> dict[str, Any]:
    """The JSON object of a `k8s\\x00`-prefixed protobuf body (ProtobufError if it cannot)."""
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not start with the Kubernetes protobuf magic k8s\\x00")
    type_meta: dict[str, Any] = {}
    raw, encoding = b"", ""
    for number, wire, value in _fields(body[len(MAGIC) :]):
        if number == 1:
            type_meta = _message(_expect_bytes(wire, value, "Unknown.typeMeta"), "runtime.TypeMeta")
        elif number == 2:
            raw = _expect_bytes(wire, value, "Unknown.raw")
        elif number == 3:
            encoding = _scalar(STRING, wire, value, "Unknown.contentEncoding")
    api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
    if encoding:
        raise ProtobufError(f"content encoding {encoding!r} is not supported", unsupported=True)
    message = KINDS.get((api_version, kind))
    if message is None:
        known = ", ".join(f"{k} ({v})" for v, k in sorted(KINDS))
        raise ProtobufError(
            f"the emulator cannot read {kind or 'an unnamed kind'} "
            f"({api_version or 'no apiVersion'}) in protobuf; it reads {known}. "
            "Send JSON or YAML instead (e.g. kubectl create -f FILE)",
            unsupported=True,
        )
    obj = _message(raw, message)
    return {"apiVersion": api_version, "kind": kind, **obj}


def _message(data: bytes, name: str) -> dict[str, Any]:
    table = MESSAGES[name]
    out: dict[str, Any] = {}
    for number, wire, value in _fields(data):
        spec = table.get(number)
        if spec is None:
            if value in (0, b""):
                # Go's encoder writes every non-pointer field, set or not: an unknown
                # field holding its zero value is one the client never set.
                continue
            raise ProtobufError(
                f"field {number} of {name} is not supported by the emulator's protobuf reader; "
                "send JSON or YAML instead",
                unsupported=True,
            )
        if spec.type == STATUS:
            continue
        decoded = _value(spec, wire, value, f"{name}.{spec.name}")
        if spec.repeated:
            items = out.setdefault(spec.name, [])
            items.extend(decoded if isinstance(decoded, list) else [decoded])
        elif spec.map_of is not None:
            key, item = decoded
            out.setdefault(spec.name, {})[key] = item
        elif spec.inline:
            out.update(decoded)
        elif isinstance(decoded, dict) and isinstance(out.get(spec.name), dict):
            # A singular message field seen twice merges, as protobuf says.
            out[spec.name] = {**out[spec.name], **decoded}
        else:
            out[spec.name] = decoded
    kept = {f.name for f in table.values() if f.presence}
    return {key: value for key, value in out.items() if key in kept or not _empty(value)}


def _empty(value: Any) -> bool:
    """What `omitempty` leaves out of JSON (and the null of a zero Time)."""
    return value is None or (not isinstance(value, float) and value in ("", 0, False, [], {}))


def _value(spec: Field, wire: int, value: int | bytes, where: str) -> Any:
    if spec.map_of is not None:
        entry = _expect_bytes(wire, value, where)
        key, item = "", None
        for number, entry_wire, entry_value in _fields(entry):
            if number == 1:
                key = _scalar(STRING, entry_wire, entry_value, f"{where} key")
            elif number == 2:
                item = _scalar_or_message(spec.map_of, entry_wire, entry_value, where)
        if item is None:
            item = _scalar_or_message(spec.map_of, _LENGTH, b"", where)
        return key, item
    if spec.repeated and spec.type in SCALARS and spec.type not in (BYTES, "string"):
        if wire == _LENGTH:
            # A packed repeated scalar: a run of varints in one length-delimited field.
            packed = _expect_bytes(wire, value, where)
            items, pos = [], 0
            while pos < len(packed):
                raw, pos = _varint(packed, pos)
                items.append(_scalar(spec.type, _VARINT, raw, where))
            return items
    return _scalar_or_message(spec.type, wire, value, where)


def _scalar_or_message(type_: str, wire: int, value: int | bytes, where: str) -> Any:
    if type_ in SCALARS:
        return _scalar(type_, wire, value, where)
    data = _expect_bytes(wire, value, where)
    if type_ == TIME:
        return _time(data, where)
    if type_ == QUANTITY:
        return _message(data, "resource.Quantity").get("string", "")
    if type_ == INT_OR_STRING:
        parts = _message(data, "intstr.IntOrString")
        return parts.get("strVal", "") if parts.get("type") == 1 else parts.get("intVal", 0)
    return _message(data, type_)


def _scalar(type_: str, wire: int, value: int | bytes, where: str) -> Any:
    if type_ in ("string", BYTES):
        data = _expect_bytes(wire, value, where)
        if type_ == BYTES:
            return base64.b64encode(data).decode()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtobufError(f"{where} is not valid UTF-8") from exc
    if wire != _VARINT or not isinstance(value, int):
        raise ProtobufError(f"{where} should be a varint ({type_}), found wire type {wire}")
    if type_ == "bool":
        return bool(value)
    if type_ == "int32":
        number = _signed(value)
        if not -(2**31) <= number < 2**31:
            raise ProtobufError(f"{where} is out of the int32 range")
        return number
    return _signed(value)  # int64


def _expect_bytes(wire: int, value: int | bytes, where: str) -> bytes:
    if wire != _LENGTH or not isinstance(value, bytes):
        raise ProtobufError(f"{where} should be length-delimited, found wire type {wire}")
    return value


def _time(data: bytes, where: str) -> str | None:
    """metav1.Time: seconds since the epoch (nanoseconds are dropped, as its JSON drops them)."""
    if not data:
        return None  # the zero Time: its protobuf form is empty, its JSON form null
    seconds = 0
    for number, wire, value in _fields(data):
        if number == 1:
            seconds = _scalar("int64", wire, value, where)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
