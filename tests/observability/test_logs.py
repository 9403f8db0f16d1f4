"""Structured logs: JSON lines with trace ids, URLs without credentials, nats-py at WARNING."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from services.wiring import logs


@pytest.fixture(autouse=True)
def _restore_logging():
    """Logging is the process's: put back what these tests change."""
    root, nats_logger = logging.getLogger(), logging.getLogger("nats.aio.client")
    levels = root.level, nats_logger.level
    yield
    root.setLevel(levels[0])
    nats_logger.setLevel(levels[1])
    for handler in [h for h in root.handlers if getattr(h, "_wake", False)]:
        root.removeHandler(handler)


def test_urls_lose_their_credentials():
    text = "fetching https://user:s3cret@git.example/repo.git and nats://wake:pw@127.0.0.1:4222"
    clean = logs.without_credentials(text)
    assert "s3cret" not in clean and "pw@" not in clean
    assert "https://***@git.example/repo.git" in clean and "nats://***@127.0.0.1:4222" in clean
    assert logs.without_credentials("http://127.0.0.1:8080/x") == "http://127.0.0.1:8080/x"


def _capture(log_format: str) -> tuple[logging.Handler, io.StringIO]:
    logs.setup_logging("planner", "INFO", log_format)
    (handler,) = [h for h in logging.getLogger().handlers if getattr(h, "_wake", False)]
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    return handler, stream


def test_json_lines_carry_service_app_event_and_trace():
    handler, stream = _capture("json")
    provider = trace.get_tracer_provider()
    tracer = (provider if isinstance(provider, TracerProvider) else TracerProvider()).get_tracer(
        "t"
    )
    try:
        with (
            tracer.start_as_current_span("process PlanApproved") as span,
            logs.handling_event("demo", "0190-event"),
        ):
            logging.getLogger("services.planner").info(
                "cloning %s", "https://bot:token@git.example/r.git"
            )
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 4222)")
        except OSError:
            logging.getLogger("nats.aio.client").error("nats: encountered error", exc_info=True)
    finally:
        logging.getLogger().removeHandler(handler)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["service"] == "planner" and first["level"] == "INFO"
    assert first["app"] == "demo" and first["event_id"] == "0190-event"
    assert first["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert first["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert first["message"] == "cloning https://***@git.example/r.git"
    assert "time" in first and first["logger"] == "services.planner"
    # nats-py's reconnect chatter is seen, as a warning
    assert second["level"] == "WARNING" and "Connect call failed" in second["message"]
    assert "exception" not in second  # one line, not a traceback per reconnect attempt
    assert "trace_id" not in second


def test_text_stays_the_default():
    handler, stream = _capture("text")
    try:
        logging.getLogger("services.applier").warning("plain")
    finally:
        logging.getLogger().removeHandler(handler)
    line = stream.getvalue().strip()
    assert line.endswith("WARNING planner services.applier: plain") and not line.startswith("{")
