"""The span store (WAKE_SPANS) on a secured bus: each identity writes only its own spans,
only the operator reads them, and a process's exporter sends them over its connection."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from events import names
from services.wiring.spanstore import SpanStoreExporter, read_trace, to_otlp_json
from tests.security.test_bus import SecuredBus, bus, refused, violation
from tests.waiting import eventually

__all__ = ["bus"]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_a_service_publishes_its_own_spans_and_no_one_elses(bus: SecuredBus) -> None:
    # When the renderer publishes spans under the planner's name
    subject = names.spans_subject("planner", TRACE)
    errors = await refused(bus, "renderer", subject, b"spans")
    # Then the server refuses it
    assert violation(subject) in errors


@pytest.mark.parametrize("identity", ["renderer", "notifier", "projector"])
async def test_only_the_operator_reads_the_span_store(bus: SecuredBus, identity: str) -> None:
    subject = f"$JS.API.DIRECT.GET.{names.SPANS_STREAM}"
    errors = await refused(bus, identity, subject, b'{"seq": 1}')
    assert violation(subject) in errors


async def test_spans_exported_by_a_service_are_read_back_by_the_operator(bus: SecuredBus):
    # Given the applier's exporter attached to its own connection
    applier = await bus.log("applier")
    operator = await bus.log("operator")
    exporter = SpanStoreExporter("applier")
    provider = TracerProvider(resource=Resource.create({"service.name": "wake-applier"}))
    tracer = provider.get_tracer("test")
    try:
        exporter.attach(applier.nc)
        # When it exports two spans of one trace
        with tracer.start_as_current_span("process PlanApproved") as parent:
            with tracer.start_as_current_span("PATCH"):
                pass
        trace_id = f"{parent.get_span_context().trace_id:032x}"
        exporter.export([parent])  # an ended SDK span is a ReadableSpan
        await exporter.drain()

        # Then the operator reads them back, as OTLP, ids in hex in its JSON form
        async def stored() -> bool:
            return bool(await read_trace(operator.js, trace_id))

        await eventually(stored, what="spans in WAKE_SPANS")
        document = to_otlp_json(await read_trace(operator.js, trace_id))
        (resource,) = document["resourceSpans"]
        (span,) = resource["scopeSpans"][0]["spans"]
        assert span["traceId"] == trace_id and span["name"] == "process PlanApproved"
        assert {a["key"] for a in resource["resource"]["attributes"]} >= {"service.name"}
        # and another trace has nothing there
        assert await read_trace(operator.js, "0" * 31 + "1") == []
    finally:
        exporter.detach()
        await applier.close()
        await operator.close()
