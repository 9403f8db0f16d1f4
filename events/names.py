"""Names on the wire: the stream, the object store, subjects and headers.

Pure constants and the checkers that make the values that go into a subject.
No I/O here (STYLE 2): the JetStream client sits beside this package, in
`services/wiring/`.
"""

from __future__ import annotations

import re
from typing import Annotated, NewType

import msgspec

STREAM = "WAKE_EVENTS"
BUNDLES = "WAKE_BUNDLES"
# The JetStream stream that holds the WAKE_BUNDLES object store (nats.py names it so).
BUNDLES_STREAM = f"OBJ_{BUNDLES}"
SUBJECT_PREFIX = "wake.evt"
ALL_SUBJECTS = f"{SUBJECT_PREFIX}.>"

# Wake's span store: finished OpenTelemetry spans, OTLP protobuf, one message
# per (publisher, trace) batch, on `wake.spans.<identity>.<trace id>`.
SPANS_STREAM = "WAKE_SPANS"
SPANS_PREFIX = "wake.spans"
ALL_SPANS = f"{SPANS_PREFIX}.>"


def spans_subject(identity: str, trace_id: str) -> str:
    """Where `identity` publishes its spans of trace `trace_id` (32 hex digits)."""
    return f"{SPANS_PREFIX}.{identity}.{trace_id}"


def trace_spans(trace_id: str) -> str:
    """The filter of every identity's spans of one trace."""
    return f"{SPANS_PREFIX}.*.{trace_id}"


# The app token for events that concern no single application (for example a
# garbage message whose subject names no valid app).
SYSTEM_APP = "_wake"

# JetStream headers (the server's) and Wake's own.
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQ_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"

# Application names are DNS-1123 labels, as Kubernetes object names are: they
# are used as a subject token, as a label value and as a directory name, and a
# DNS label is valid as all three.
APP_NAME_PATTERN = r"^(?:[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?|_wake)$"
_APP_NAME_RE = re.compile(APP_NAME_PATTERN)
_EVENT_TYPE_RE = re.compile(r"^[A-Z][A-Za-z0-9]{0,63}$")

AppName = NewType("AppName", str)
"""An application name that `app_name()` has checked."""

AppNameField = Annotated[str, msgspec.Meta(pattern=APP_NAME_PATTERN, max_length=63)]
"""The same rule, enforced by msgspec when an event is decoded."""


class InvalidName(ValueError):
    """A name that cannot be used where it was given."""


def app_name(value: str) -> AppName:
    """Return `value` as an AppName, or raise InvalidName saying what is wrong."""
    if not _APP_NAME_RE.match(value):
        raise InvalidName(
            f"invalid application name {value!r}: use 1 to 63 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return AppName(value)


def registrable_app_name(value: str) -> AppName:
    """`app_name(value)` that a user may register: never the reserved SYSTEM_APP.

    The log files Wake's own events (rejections of garbage, for example) under
    `_wake`; an application of that name would mix its history with them.
    """
    name = app_name(value)
    if name == SYSTEM_APP:
        raise InvalidName(
            f"application name {value!r} is reserved for Wake's own events; choose another"
        )
    return name


def subject(app: AppName | str, event_type: str) -> str:
    """The subject an event of `event_type` for `app` is stored under."""
    if not _EVENT_TYPE_RE.match(event_type):
        raise InvalidName(f"invalid event type {event_type!r}")
    return f"{SUBJECT_PREFIX}.{app_name(app)}.{event_type}"


def app_subjects(app: AppName | str) -> str:
    """The subject filter that matches every event of one application."""
    return f"{SUBJECT_PREFIX}.{app_name(app)}.>"


def type_subjects(event_type: str) -> str:
    """The subject filter that matches every event of one type, for any app."""
    return f"{SUBJECT_PREFIX}.*.{event_type}"


def parse_subject(value: str) -> tuple[str, str] | None:
    """Split `wake.evt.<app>.<Type>` into (app, type); None if it is not of that form."""
    parts = value.split(".")
    if len(parts) != 4 or f"{parts[0]}.{parts[1]}" != SUBJECT_PREFIX:
        return None
    return parts[2], parts[3]
