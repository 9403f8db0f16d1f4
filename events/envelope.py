"""The envelope every event travels in, its ids, and its wire codec.

An event on the log is the JSON encoding of an `Envelope`. Decoding happens in
two steps: the envelope first, with its payload left raw, then the payload by
the envelope's `type`. That keeps an event of a type this reader does not know
(written by a newer Wake) readable as an envelope, and lets an error name the
exact field at fault.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import msgspec
import uuid_utils

from events.names import SUBJECT_PREFIX, AppNameField, app_name, parse_subject
from events.payloads import BY_TYPE, Payload

# Fixed namespace for deterministic (uuid5) ids of derived events. Never change it:
# ids already in the log were made with it.
WAKE_NAMESPACE = uuid.UUID("6f1b1e3c-5a63-4f0e-9b5e-7c8f0d2a9e41")


EventIdField = Annotated[
    str, msgspec.Meta(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
]


Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]


class UnknownPayload(Payload, frozen=True, kw_only=True):
    """The payload of an event type this version of Wake does not know."""

    event_type: ClassVar[str] = ""
    raw: dict[str, Any]


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """One event: who did what to which app, when, and in consequence of what."""

    event_id: EventIdField
    type: str
    schema_version: int = 1
    app: AppNameField
    occurred_at: Timestamp
    correlation_id: str
    causation_id: str | None = None
    actor: str = ""
    traceparent: str = ""
    # The process (replica) that appended it, e.g. "planner-host-4242": with
    # several replicas of a service, which one did what.
    instance: str = ""
    # The id of the key that signed it (events/signing.py): inside the signed
    # bytes, so a signature cannot be moved to another key.
    signer: str = ""
    payload: Payload


class _WireEnvelope(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope as read off the wire, payload not decoded yet."""

    event_id: EventIdField
    type: str
    schema_version: int = 1
    app: AppNameField
    occurred_at: Timestamp
    correlation_id: str
    causation_id: str | None = None
    actor: str = ""
    traceparent: str = ""
    instance: str = ""
    signer: str = ""
    payload: msgspec.Raw


class InvalidEvent(ValueError):
    """A message that is not a valid Wake event. `field` names what is at fault."""

    def __init__(self, message: str, *, field: str = "", event_id: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.event_id = event_id


def new_event_id() -> str:
    """A fresh, time-ordered event id (UUIDv7)."""
    return str(uuid_utils.uuid7())


def derived_event_id(causation_id: str, event_type: str, key: str = "") -> str:
    """The id of the `event_type` event caused by `causation_id`.

    Deterministic, so a redelivered input re-derives the same id and JetStream's
    dedupe (Nats-Msg-Id) stores its consequence once. `key` tells apart several
    events of one type derived from one cause (one ResourceApplied per resource).
    """
    return str(uuid.uuid5(WAKE_NAMESPACE, f"{causation_id}/{event_type}/{key}"))


def now() -> datetime:
    return datetime.now(UTC)


def new_event(
    payload: Payload,
    *,
    app: str,
    actor: str,
    cause: Envelope | None = None,
    event_id: str | None = None,
    correlation_id: str | None = None,
    occurred_at: datetime | None = None,
    traceparent: str = "",
    key: str = "",
) -> Envelope:
    """Wrap `payload` in an envelope.

    With `cause`, the event is derived: its id is deterministic (unless given),
    and it inherits the cause's correlation id and trace. Without, it starts a
    journey: a fresh UUIDv7 that is also its correlation id unless one is given.
    """
    if cause is not None:
        event_id = event_id or derived_event_id(cause.event_id, payload.event_type, key)
        correlation_id = correlation_id or cause.correlation_id
        traceparent = traceparent or cause.traceparent
    else:
        event_id = event_id or new_event_id()
        correlation_id = correlation_id or event_id
    return Envelope(
        event_id=event_id,
        type=payload.event_type,
        schema_version=payload.schema_version,
        app=app_name(app),
        occurred_at=occurred_at or now(),
        correlation_id=correlation_id,
        causation_id=cause.event_id if cause is not None else None,
        actor=actor,
        traceparent=traceparent,
        payload=payload,
    )


_encoder = msgspec.json.Encoder()
_wire_decoder = msgspec.json.Decoder(_WireEnvelope)
_payload_decoders = {name: msgspec.json.Decoder(cls) for name, cls in BY_TYPE.items()}
_unknown_decoder = msgspec.json.Decoder(dict[str, Any])


def encode(event: Envelope) -> bytes:
    """The event's bytes on the log."""
    return _encoder.encode(event)


def decode(data: bytes) -> Envelope:
    """Decode an event, or raise InvalidEvent naming the field at fault.

    Fields this reader does not know are ignored; a type it does not know
    decodes with an UnknownPayload.
    """
    try:
        wire = _wire_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidEvent(f"invalid envelope: {exc}", field=_field_of(exc)) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(f"not a JSON event: {exc}") from None
    decoder = _payload_decoders.get(wire.type)
    try:
        if decoder is None:
            payload: Payload = UnknownPayload(raw=_unknown_decoder.decode(wire.payload))
        else:
            payload = decoder.decode(wire.payload)
    except msgspec.ValidationError as exc:
        field = _field_of(exc).replace("$", "$.payload", 1)
        message = str(exc).replace("`$", "`$.payload", 1)
        raise InvalidEvent(
            f"invalid {wire.type} payload in event {wire.event_id}: {message}",
            field=field,
            event_id=wire.event_id,
        ) from None
    except msgspec.DecodeError as exc:
        raise InvalidEvent(
            f"undecodable payload in event {wire.event_id}: {exc}", event_id=wire.event_id
        ) from None
    return Envelope(
        event_id=wire.event_id,
        type=wire.type,
        schema_version=wire.schema_version,
        app=wire.app,
        occurred_at=wire.occurred_at,
        correlation_id=wire.correlation_id,
        causation_id=wire.causation_id,
        actor=wire.actor,
        traceparent=wire.traceparent,
        instance=wire.instance,
        signer=wire.signer,
        payload=payload,
    )


def decode_stored(seq: int, subject: str, data: bytes) -> Envelope:
    """The event stored at `seq` on `subject`, or InvalidEvent naming both.

    Besides decoding, the event must be the one its subject says: a message
    whose envelope names another app or type than the subject it was published
    on (a publisher allowed one subject forging an event of another) is refused
    like garbage, since readers filter by subject and act by envelope.
    """
    try:
        event = decode(data)
    except InvalidEvent as exc:
        raise InvalidEvent(
            f"stream sequence {seq} ({subject}): {exc}", field=exc.field, event_id=exc.event_id
        ) from None
    if subject != f"{SUBJECT_PREFIX}.{event.app}.{event.type}":
        raise InvalidEvent(
            f"stream sequence {seq} ({subject}): event {event.event_id} is a {event.type} "
            f"of app {event.app}, not what its subject says",
            field="$.app" if (parse_subject(subject) or ("",))[0] != event.app else "$.type",
            event_id=event.event_id,
        )
    return event


def _field_of(exc: msgspec.ValidationError) -> str:
    # msgspec ends its messages with "- at `$.path.to.field`".
    message = str(exc)
    marker = "- at `"
    if marker in message:
        return message.rsplit(marker, 1)[1].rstrip("`")
    return "$"
