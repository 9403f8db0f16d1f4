"""Logging of a Wake process: text for a terminal, or one JSON object per line.

`WAKE_LOG_FORMAT=json` writes each record as a JSON object with `time`,
`level`, `service`, `logger`, `message` and, where known, `app`, `event_id`
(of the event being handled: `handling_event`), `trace_id` and `span_id` (of
the current span). URLs in messages lose their credentials (`scheme://***@host`).
nats-py reports a lost connection and each reconnect attempt at ERROR; a
restart of NATS is not an error of Wake's, but it must be seen: they are
logged at WARNING.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

from opentelemetry import trace

FORMATS = ("text", "json")

# scheme://user:password@host or scheme://token@host -> scheme://***@host
_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")

_handling: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "wake_handling", default=None
)


def without_credentials(text: str) -> str:
    """`text` with the user info of every URL in it replaced by ***."""
    return _CREDENTIALS_IN_URL.sub(r"\g<scheme>***@", text)


@contextlib.contextmanager
def handling_event(app: str, event_id: str) -> Iterator[None]:
    """Records logged inside carry this app and event id."""
    token = _handling.set((app, event_id))
    try:
        yield
    finally:
        _handling.reset(token)


class _Context(logging.Filter):
    """Adds app, event id, trace and span ids; scrubs credentials; softens nats-py."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("nats") and record.levelno >= logging.ERROR:
            # One line per lost connection or reconnect attempt, with why: a
            # restart of NATS is expected, its traceback is not news.
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            if record.exc_info and record.exc_info[1] is not None:
                record.msg = f"{record.getMessage()}: {record.exc_info[1]!r}"
                record.args = None
                record.exc_info = record.exc_text = None
        handling = _handling.get()
        if handling is not None:
            record.wake_app = getattr(record, "wake_app", "") or handling[0]
            record.wake_event_id = getattr(record, "wake_event_id", "") or handling[1]
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = f"{span_context.trace_id:032x}"
            record.span_id = f"{span_context.span_id:016x}"
        message = record.getMessage()
        clean = without_credentials(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attribute, key in (
            ("wake_app", "app"),
            ("wake_event_id", "event_id"),
            ("trace_id", "trace_id"),
            ("span_id", "span_id"),
        ):
            value = getattr(record, attribute, "")
            if value:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = without_credentials(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(service: str, level: str, log_format: str = "text") -> None:
    """Configure the root logger of this process (replacing earlier handlers)."""
    if log_format not in FORMATS:
        raise ValueError(f"WAKE_LOG_FORMAT={log_format!r}: use text or json")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s")
        )
    handler.addFilter(_Context())
    handler._wake = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_wake", False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("nats.aio.client").setLevel(logging.WARNING)
