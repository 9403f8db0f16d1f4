"""`wake trace`'s pure part: which journey a REF names, and the waterfall."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from events import new_event
from events.payloads import ApplyStarted, PlanCreated, RevisionDetected
from services.catalog import tracing

C1 = "a1" * 20
C2 = "a2" * 20
T1 = "1" * 32


def _detected(commit: str, traceparent: str):
    return new_event(
        RevisionDetected(
            repo_url="https://git.example/r.git",
            ref="main",
            commit=commit,
            committed_at=datetime(2026, 1, 1, tzinfo=UTC),
        ),
        app="demo",
        actor="service:git-watcher",
        traceparent=traceparent,
    )


def _journey():
    detected = _detected(C1, f"00-{T1}-{'a' * 16}-01")
    plan = new_event(
        PlanCreated(plan_id="plan-1", commit=C1, bundle_digest="d" * 64, changes=[]),
        app="demo",
        actor="service:planner",
        cause=detected,
        traceparent=f"00-{T1}-{'b' * 16}-01",
    )
    started = new_event(
        ApplyStarted(apply_id="apply-1", plan_id="plan-1", commit=C1, bundle_digest="d" * 64),
        app="demo",
        actor="service:applier",
        cause=plan,
        traceparent=f"00-{'2' * 32}-{'c' * 16}-01",
    )
    other = _detected(C2, f"00-{'3' * 32}-{'d' * 16}-01")
    return [detected, plan, started, other]


def test_a_ref_names_a_commit_prefix_a_plan_or_an_apply():
    events = _journey()
    assert tracing.anchor(events, C1[:8]).event_id == events[0].event_id
    assert tracing.anchor(events, "plan-1").event_id == events[1].event_id
    assert tracing.anchor(events, "apply-1").event_id == events[2].event_id
    with pytest.raises(tracing.TraceRefError, match="ambiguous"):
        tracing.anchor(events, "a")
    with pytest.raises(tracing.TraceRefError, match="no commit, plan or apply 'ffff'"):
        tracing.anchor(events, "ffff")


def test_the_journey_and_its_traces_in_order():
    events = _journey()
    journey = tracing.journey(events, tracing.anchor(events, "apply-1"))
    assert [e.type for e in journey] == ["RevisionDetected", "PlanCreated", "ApplyStarted"]
    assert tracing.trace_ids(journey) == [T1, "2" * 32]


def _span(span_id: str, parent: str, start_ms: int, end_ms: int, **attributes) -> tracing.SpanRow:
    return tracing.SpanRow(
        trace_id=T1,
        span_id=span_id,
        parent_span_id=parent,
        service="planner",
        name=f"span {span_id[0]}",
        kind="consumer" if parent else "",
        start_ns=start_ms * 1_000_000,
        end_ns=end_ms * 1_000_000,
        status="",
        attributes=attributes,
    )


def test_the_waterfall_is_in_start_order_indented_with_the_events_appended():
    events = _journey()
    spans = [
        _span("b" * 16, "a" * 16, 5, 40, **{"wake.kube.operation": "apply"}),
        _span("a" * 16, "", 0, 50),
    ]
    header, first, second = tracing.waterfall(spans, events)
    assert "service" in header
    assert first.lstrip().startswith("0.0ms") and "span a" in first
    assert "-> RevisionDetected" in first
    assert "  span b [consumer]" in second and "wake.kube.operation=apply" in second
    assert "-> PlanCreated" in second and second.lstrip().startswith("5.0ms")


def test_the_event_timeline_without_spans():
    detected, plan, *_ = _journey()
    later = msgspec.structs.replace(plan, occurred_at=detected.occurred_at + timedelta(seconds=2))
    header, first, second = tracing.event_timeline([(detected, None), (later, None)])
    assert "event" in header
    assert "0.0ms" in first and "RevisionDetected" in first
    assert "2000.0ms" in second and "PlanCreated" in second
