"""Tracing configured by the standard OTEL_* variables; PRODUCER and CONSUMER spans."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from events import new_event
from events.payloads import PlanApproved
from services.wiring import telemetry


@pytest.mark.parametrize(
    ("environ", "fallback", "expected"),
    [
        ({}, "none", []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "none", ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "none", ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, "none", ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, "none", []),
        ({}, "console", ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "console", ["otlp"]),
    ],
)
def test_exporters_follow_the_standard_variables(environ, fallback, expected):
    assert telemetry.exporters_from_env(environ, fallback) == expected


def test_an_unknown_exporter_is_an_error_naming_the_variable():
    with pytest.raises(telemetry.TracingError, match="OTEL_TRACES_EXPORTER='jaeger'"):
        telemetry.exporters_from_env({"OTEL_TRACES_EXPORTER": "jaeger"})


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """This process's provider, recording in memory (set once per process)."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def test_a_consumer_span_is_the_child_of_the_producer_span_in_the_headers(spans):
    spans.clear()
    event = new_event(PlanApproved(plan_id="p1", via="cli"), app="demo", actor="user:me")
    headers: dict[str, str] = {}
    with telemetry.root_span("approve"), telemetry.producing([event], [headers]):
        pass
    assert headers["traceparent"].startswith("00-")
    with telemetry.consuming(event, "applier", headers=headers, seq=7):
        pass
    by_kind = {s.kind: s for s in spans.get_finished_spans()}
    consumer, producer = by_kind[SpanKind.CONSUMER], by_kind[SpanKind.PRODUCER]
    assert producer.kind is SpanKind.PRODUCER and consumer.kind is SpanKind.CONSUMER
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.context.trace_id == producer.context.trace_id
    assert consumer.attributes["messaging.system"] == "nats"
    assert consumer.attributes["messaging.destination.name"] == "wake.evt.demo.PlanApproved"
    assert consumer.attributes["messaging.consumer.group.name"] == "applier"
    assert producer.attributes["messaging.message.id"] == event.event_id


def test_a_new_trace_links_to_the_span_it_concerns_and_untraced_records_nothing(spans):
    spans.clear()
    with telemetry.root_span("apply") as apply_span:
        apply_parent = telemetry.traceparent()
        with telemetry.new_trace("drift detected", link=apply_parent) as drift:
            assert drift.get_span_context().trace_id != apply_span.get_span_context().trace_id
        with telemetry.untraced(), telemetry.child_span("GET"):
            pass
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert "GET" not in finished
    (link,) = finished["drift detected"].links
    assert link.context.span_id == apply_span.get_span_context().span_id
    assert finished["drift detected"].parent is None
