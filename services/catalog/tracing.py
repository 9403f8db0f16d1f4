"""What `wake trace APP REF` shows: a journey's spans as a waterfall. Pure: no I/O.

A REF is a commit (or a unique prefix of one), a plan id or an apply id. It
names one event of the app (`anchor`); the journey is every event of the app
with that event's correlation id, and its traces are those the events carry.
The spans come from Wake's span store; when they are gone (aged out, tracing
off) the journey's events alone give a timeline (`event_timeline`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from events.envelope import Envelope

SPAN_KINDS = {0: "", 1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
# Attributes worth a glance in the waterfall, in the order shown.
KEY_ATTRIBUTES = (
    "wake.kube.operation",
    "wake.kube.kind",
    "k8s.namespace.name",
    "wake.kube.name",
    "http.request.method",
    "http.response.status_code",
    "url.full",
    "messaging.destination.name",
    "db.operation.name",
    "process.executable.name",
    "process.exit.code",
    "wake.commit",
)


class TraceRefError(LookupError):
    """REF names no event of the app, or several commits."""


@dataclass(frozen=True, slots=True)
class SpanRow:
    trace_id: str
    span_id: str
    parent_span_id: str
    service: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    attributes: dict[str, object] = field(default_factory=dict)
    links: tuple[str, ...] = ()

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


def _trace_id(traceparent: str) -> str:
    parts = traceparent.split("-")
    return parts[1] if len(parts) >= 4 else ""


def _span_id(traceparent: str) -> str:
    parts = traceparent.split("-")
    return parts[2] if len(parts) >= 4 else ""


def anchor(events: Sequence[Envelope], ref: str) -> Envelope:
    """The event REF names: the last detection of a commit, a plan's creation, an apply's start.

    A commit prefix matching several commits is refused, naming them.
    """
    ref = ref.strip().lower()
    if not ref:
        raise TraceRefError("REF is empty: give a commit (or prefix), a plan id or an apply id")
    for field_name, types in (
        ("plan_id", ("PlanCreated",)),
        ("apply_id", ("ApplyStarted",)),
    ):
        for event in reversed(events):
            if event.type in types and getattr(event.payload, field_name, None) == ref:
                return event
    commits = {
        str(getattr(event.payload, "commit", "") or "")
        for event in events
        if str(getattr(event.payload, "commit", "") or "").startswith(ref)
    }
    if len(commits) > 1:
        raise TraceRefError(
            f"commit prefix {ref!r} is ambiguous: {', '.join(sorted(c[:12] for c in commits))}"
        )
    if commits:
        commit = commits.pop()
        candidates = [e for e in events if getattr(e.payload, "commit", None) == commit]
        detections = [e for e in candidates if e.type == "RevisionDetected"]
        return (detections or candidates)[-1]
    raise TraceRefError(f"no commit, plan or apply {ref!r} in this application's log")


def journey(events: Sequence[Envelope], start: Envelope) -> list[Envelope]:
    """The events of `start`'s journey (its correlation id), in log order."""
    return [e for e in events if e.correlation_id == start.correlation_id]


def trace_ids(events: Iterable[Envelope]) -> list[str]:
    """The traces the events carry, in the order they first appear."""
    seen: dict[str, None] = {}
    for event in events:
        trace_id = _trace_id(event.traceparent)
        if trace_id:
            seen.setdefault(trace_id, None)
    return list(seen)


def _depths(spans: Sequence[SpanRow]) -> dict[str, int]:
    by_id = {span.span_id: span for span in spans}
    depths: dict[str, int] = {}

    def depth(span: SpanRow, guard: int = 0) -> int:
        if span.span_id in depths:
            return depths[span.span_id]
        parent = by_id.get(span.parent_span_id)
        value = 0 if parent is None or guard > 64 else depth(parent, guard + 1) + 1
        depths[span.span_id] = value
        return value

    for span in spans:
        depth(span)
    return depths


def _attributes(span: SpanRow) -> str:
    shown = [f"{key}={span.attributes[key]}" for key in KEY_ATTRIBUTES if key in span.attributes]
    return " ".join(shown)


def waterfall(
    spans: Sequence[SpanRow], events: Sequence[Envelope], *, width: int = 24
) -> list[str]:
    """One line per span in start order: offset, duration, bar, service, status, name
    (indented under its parent), key attributes and the events it appended."""
    if not spans:
        return []
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
    origin = ordered[0].start_ns
    total = max(s.end_ns for s in ordered) - origin or 1
    depths = _depths(ordered)
    appended: dict[str, list[str]] = {}
    for event in events:
        appended.setdefault(_span_id(event.traceparent), []).append(event.type)
    lines = [
        f"{'start':>9} {'duration':>9}  {'':<{width}}  {'service':<12} {'status':<6} span",
    ]
    for span in ordered:
        offset = (span.start_ns - origin) / 1e6
        left = int((span.start_ns - origin) / total * width)
        length = max(1, int((span.end_ns - span.start_ns) / total * width))
        bar = (" " * left + "█" * length)[:width].ljust(width)
        name = "  " * depths.get(span.span_id, 0) + span.name
        if span.kind in ("producer", "consumer", "client"):
            name += f" [{span.kind}]"
        line = (
            f"{offset:>7.1f}ms {span.duration_ms:>7.1f}ms  {bar}  "
            f"{span.service:<12} {span.status:<6} {name}"
        )
        extra = _attributes(span)
        if extra:
            line += f"  {extra}"
        if span.span_id in appended:
            line += f"  -> {', '.join(appended[span.span_id])}"
        lines.append(line)
    return lines


def event_timeline(events: Sequence[tuple[Envelope, datetime | None]]) -> list[str]:
    """The journey from the log alone: each event's offset from the first, type and actor."""
    if not events:
        return []
    origin = events[0][0].occurred_at
    lines = [f"{'start':>10}  {'event':<22} actor"]
    for event, _stored in events:
        offset = (event.occurred_at - origin).total_seconds() * 1000
        lines.append(f"{offset:>8.1f}ms  {event.type:<22} {event.actor}")
    return lines
