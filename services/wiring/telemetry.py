"""OpenTelemetry: one trace per revision's journey, across processes.

Every event carries the W3C `traceparent` of the span that appended it. A
service handling an event opens its span as a child of that traceparent and
stamps the events it appends with its own, so the commit's detection, render,
plan, approval, apply and notification form one trace.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from events.envelope import Envelope

_propagator = TraceContextTextMapPropagator()


def setup_tracing(service: str, exporter: str = "none") -> trace.Tracer:
    """Install the tracer provider of this process; `exporter`: none or console."""
    provider = TracerProvider(resource=Resource.create({"service.name": f"wake-{service}"}))
    if exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    elif exporter != "none":
        raise ValueError(f"unknown OpenTelemetry exporter {exporter!r}: use none or console")
    trace.set_tracer_provider(provider)
    return trace.get_tracer("wake")


def traceparent() -> str:
    """The W3C traceparent of the current span, or "" outside any."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def span_for(event: Envelope, operation: str) -> Iterator[trace.Span]:
    """A span handling `event`, child of the span that appended it."""
    parent = _propagator.extract({"traceparent": event.traceparent}) if event.traceparent else None
    tracer = trace.get_tracer("wake")
    with tracer.start_as_current_span(
        f"{operation} {event.type}",
        context=parent,
        attributes={
            "wake.app": event.app,
            "wake.event_id": event.event_id,
            "wake.event_type": event.type,
            "wake.correlation_id": event.correlation_id,
        },
    ) as span:
        yield span


@contextlib.contextmanager
def root_span(name: str, **attributes: str) -> Iterator[trace.Span]:
    """A span that starts a journey (a commit detected, a command given)."""
    with trace.get_tracer("wake").start_as_current_span(name, attributes=attributes) as span:
        yield span
