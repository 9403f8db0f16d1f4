"""Wake's event contracts: the envelope, every payload, subjects and headers.

This package does no I/O and imports no client library (STYLE 2).
"""

from events.envelope import (
    Envelope,
    InvalidEvent,
    UnknownPayload,
    decode,
    derived_event_id,
    encode,
    new_event,
    new_event_id,
)
from events.names import AppName, InvalidName, app_name, app_subjects, subject
from events.payloads import BY_TYPE, PAYLOAD_TYPES, Payload

__all__ = [
    "BY_TYPE",
    "PAYLOAD_TYPES",
    "AppName",
    "Envelope",
    "InvalidEvent",
    "InvalidName",
    "Payload",
    "UnknownPayload",
    "app_name",
    "app_subjects",
    "decode",
    "derived_event_id",
    "encode",
    "new_event",
    "new_event_id",
    "subject",
]
