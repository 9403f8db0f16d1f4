"""OpenTelemetry: one trace per change, across processes, kept where Wake can read it.

Configured by the standard variables (`OTEL_TRACES_EXPORTER`,
`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER[_ARG]`, `OTEL_BSP_*`, `OTEL_SDK_DISABLED`), read by the
SDK itself where it can. Exporters: `otlp` (OTLP over HTTP/protobuf, batched),
`console`, `none`; with none set and no endpoint, none. Whatever they are,
finished spans also go to Wake's span store, the WAKE_SPANS stream
(`spanstore.py`), so `wake trace` works without a tracing backend.

How a journey stays one trace: appending an event opens a PRODUCER span whose
context travels in the message's `traceparent`/`tracestate` headers; a
service handling the message opens a CONSUMER span under it (`consuming`), and
the events it appends carry that span's context in their envelope. Child spans
(git, render, Kubernetes, HTTP, SQL) hang off whatever is current. What starts
later on its own -- drift found, health changing, a CLI command -- starts a new
trace with a link to the one it concerns (`new_trace`), so no trace grows
forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Iterator, Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from events import names
from events.envelope import Envelope

log = logging.getLogger(__name__)

_propagator = TraceContextTextMapPropagator()

EXPORTERS = ("otlp", "console", "none")
ENV_EXPORTER = "OTEL_TRACES_EXPORTER"
ENV_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
ENV_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
ENV_DISABLED = "OTEL_SDK_DISABLED"
MESSAGING_SYSTEM = "nats"

TRACER = "wake"


class TracingError(ValueError):
    """A tracing variable holds something Wake cannot use; the message names it."""


def exporters_from_env(environ: Mapping[str, str], fallback: str = "none") -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names (comma-separated), checked.

    Unset: `fallback` (WAKE_OTEL_EXPORTER) if it names one, else otlp when an
    OTLP endpoint is set, else none. The specification's default is otlp, but a
    process that sends to a collector nobody runs would only log failures.
    """
    raw = environ.get(ENV_EXPORTER, "").strip()
    if not raw:
        if fallback and fallback != "none":
            raw = fallback
        elif environ.get(ENV_ENDPOINT) or environ.get(ENV_TRACES_ENDPOINT):
            raw = "otlp"
        else:
            raw = "none"
    chosen = [part.strip().lower() for part in raw.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in EXPORTERS]
    if unknown:
        raise TracingError(
            f"{ENV_EXPORTER}={raw!r}: unknown exporter {unknown[0]!r}; use otlp, console or none"
        )
    return [part for part in chosen if part != "none"]


def disabled(environ: Mapping[str, str]) -> bool:
    return environ.get(ENV_DISABLED, "").strip().lower() == "true"


class Tracing:
    """This process's tracer provider and its span store exporter."""

    def __init__(self, provider: TracerProvider | None, store) -> None:
        self.provider = provider
        self.store = store

    async def attach(self, nc) -> None:
        """Send the span store's spans over `nc` from now on (the process's connection)."""
        if self.store is not None:
            self.store.attach(nc)

    async def flush(self, timeout: float = 5.0) -> None:
        """Export every finished span, to every exporter and the span store, now."""
        if self.provider is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.to_thread(self.provider.force_flush, int(timeout * 1000)), timeout
            )
        if self.store is not None:
            await self.store.drain(timeout)

    async def shutdown(self, timeout: float = 5.0) -> None:
        await self.flush(timeout)
        if self.store is not None:
            self.store.detach()


_tracing: Tracing | None = None


def setup_tracing(
    service: str,
    exporter: str = "none",
    *,
    identity: str | None = None,
    environ: Mapping[str, str] | None = None,
    span_store: bool = True,
) -> Tracing:
    """Install this process's tracer provider, once; later calls return the same.

    `exporter`: WAKE_OTEL_EXPORTER, used when OTEL_TRACES_EXPORTER is unset.
    `identity`: who the process is on the bus, which names its span store subject.
    """
    global _tracing
    if _tracing is not None:
        return _tracing
    environ = os.environ if environ is None else environ
    if disabled(environ):
        _tracing = Tracing(None, None)
        return _tracing
    chosen = exporters_from_env(environ, exporter)
    attributes = {"service.namespace": "wake", "wake.service": service}
    resource = Resource.create(attributes)
    if not environ.get("OTEL_SERVICE_NAME"):
        # Resource.create reads OTEL_RESOURCE_ATTRIBUTES; our default name goes
        # under them only where neither they nor OTEL_SERVICE_NAME name one.
        named = resource.attributes.get("service.name", "")
        if not named or str(named).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": f"wake-{service}"}))
    # The sampler comes from OTEL_TRACES_SAMPLER / _ARG (the SDK reads them).
    provider = TracerProvider(resource=resource)
    if "otlp" in chosen:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if "console" in chosen:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    store = None
    if span_store:
        from services.wiring.spanstore import SpanStoreExporter

        store = SpanStoreExporter(identity or service)
        # A second apart at most: `wake trace` right after a change should find it.
        provider.add_span_processor(BatchSpanProcessor(store, schedule_delay_millis=1000))
    trace.set_tracer_provider(provider)
    _tracing = Tracing(provider, store)
    return _tracing


_tracer: trace.Tracer | None = None


def tracer() -> trace.Tracer:
    """Wake's tracer, made once: the SDK builds a new one (and compares scopes) per call.

    Before `setup_tracing` it is the API's proxy, which follows the provider set later.
    """
    global _tracer
    if _tracer is None:
        _tracer = trace.get_tracer(TRACER)
    return _tracer


def traceparent() -> str:
    """The W3C traceparent of the current span, or "" outside any."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent", "")


def trace_id_of(traceparent_value: str) -> str:
    """The trace id (32 hex digits) of a traceparent, or "" if it is not one."""
    parts = traceparent_value.split("-")
    return parts[1] if len(parts) >= 4 and len(parts[1]) == 32 else ""


def span_id_of(traceparent_value: str) -> str:
    parts = traceparent_value.split("-")
    return parts[2] if len(parts) >= 4 and len(parts[2]) == 16 else ""


def _context_of(carrier: Mapping[str, str]) -> otel_context.Context | None:
    if not carrier.get("traceparent"):
        return None
    return _propagator.extract(dict(carrier))


def _link_to(traceparent_value: str) -> list[Link]:
    parent = _context_of({"traceparent": traceparent_value}) if traceparent_value else None
    if parent is None:
        return []
    span_context = trace.get_current_span(parent).get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def _event_attributes(event: Envelope) -> dict[str, str]:
    return {
        "wake.app": event.app,
        "wake.event_id": event.event_id,
        "wake.event_type": event.type,
        "wake.correlation_id": event.correlation_id,
    }


# --- messaging: PRODUCER and CONSUMER spans ---------------------------------------


@contextlib.contextmanager
def producing(events: Sequence[Envelope], headers: Sequence[dict[str, str]]) -> Iterator[None]:
    """A PRODUCER span around appending `events`; their headers get its context.

    Parent: the current span, else the first event's own traceparent (an event
    built outside any span, as a CLI command without one). A batch is one span,
    `messaging.batch.message_count` events.
    """
    first = events[0]
    current = trace.get_current_span().get_span_context()
    parent = None if current.is_valid else _context_of({"traceparent": first.traceparent})
    destination = names.subject(first.app, first.type)
    attributes: dict[str, object] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": destination,
        **_event_attributes(first),
    }
    if len(events) > 1:
        attributes["messaging.batch.message_count"] = len(events)
        attributes["wake.event_types"] = sorted({e.type for e in events})
    else:
        attributes["messaging.message.id"] = first.event_id
    with tracer().start_as_current_span(
        f"send {first.type}", context=parent, kind=SpanKind.PRODUCER, attributes=attributes
    ):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        for header in headers:
            header.update(carrier)
        yield


@contextlib.contextmanager
def consuming(
    event: Envelope,
    consumer: str,
    *,
    headers: Mapping[str, str] | None = None,
    subject: str = "",
    seq: int = 0,
    delivery: int = 1,
) -> Iterator[trace.Span]:
    """A CONSUMER span handling `event`, child of the PRODUCER span that appended it.

    The message headers carry the producer's context; an event appended before
    they did (or read without headers) falls back on its envelope's traceparent.
    """
    carrier = dict(headers or {})
    if not carrier.get("traceparent") and event.traceparent:
        carrier = {"traceparent": event.traceparent}
    attributes: dict[str, object] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": subject or names.subject(event.app, event.type),
        "messaging.consumer.group.name": consumer,
        "messaging.message.id": event.event_id,
        **_event_attributes(event),
    }
    if seq:
        attributes["messaging.nats.stream.sequence"] = seq
    if delivery > 1:
        attributes["messaging.nats.delivery"] = delivery
    with tracer().start_as_current_span(
        f"process {event.type}",
        context=_context_of(carrier),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


# --- journeys -------------------------------------------------------------------


@contextlib.contextmanager
def root_span(name: str, **attributes: str) -> Iterator[trace.Span]:
    """A span that starts a journey (a commit detected): a new trace."""
    with tracer().start_as_current_span(
        name, context=otel_context.Context(), attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def new_trace(
    name: str, *, link: str = "", links: Sequence[str] = (), **attributes: object
) -> Iterator[trace.Span]:
    """A new trace linked to the span of traceparent `link` (the apply it concerns),
    and to those of `links`.

    For what happens later on its own: drift found, health changing, a
    command given, a batch of events folded. Their events carry this trace,
    not the linked one.
    """
    linked = [found for value in (link, *links) for found in _link_to(value)]
    with tracer().start_as_current_span(
        name, context=otel_context.Context(), links=linked, attributes=attributes
    ) as span:
        yield span


def add_link(traceparent_value: str) -> None:
    """Link the current span to the span of `traceparent_value` (what a command acts on)."""
    span = trace.get_current_span()
    for link in _link_to(traceparent_value):
        span.add_link(link.context)


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Spans started inside are not recorded (an unsampled parent): for polling that
    runs on its own for a long time, such as a rollout's health reads, which would
    otherwise grow the trace of the apply that started it for as long as it runs."""
    quiet = trace.NonRecordingSpan(
        trace.SpanContext(
            trace_id=random.getrandbits(128) or 1,
            span_id=random.getrandbits(64) or 1,
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.DEFAULT),
        )
    )
    token = otel_context.attach(trace.set_span_in_context(quiet, otel_context.Context()))
    try:
        yield
    finally:
        otel_context.detach(token)


# --- child spans: git, render, Kubernetes, HTTP, SQL ----------------------------


@contextlib.contextmanager
def child_span(
    name: str,
    attributes: Mapping[str, object] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    record_exception: bool = True,
) -> Iterator[trace.Span]:
    """A span under the current one; an exception marks it failed (and propagates),
    recorded with its traceback unless `record_exception` is False."""
    clean = {key: value for key, value in (attributes or {}).items() if value not in ("", None)}
    with tracer().start_as_current_span(
        name,
        kind=kind,
        attributes=clean,
        record_exception=record_exception,
        set_status_on_exception=True,
    ) as span:
        yield span


def http_client_span(method: str, url: str, attributes: Mapping[str, object] | None = None):
    """A CLIENT span of an HTTP request, by the HTTP semantic conventions (no credentials).

    An error answer is in its status code; the exception it raises is not recorded
    with a traceback (a 404 is how a client learns an object is absent, often).
    """
    from services.wiring.logs import without_credentials

    return child_span(
        method.upper(),
        {
            "http.request.method": method.upper(),
            "url.full": without_credentials(url),
            **(attributes or {}),
        },
        kind=SpanKind.CLIENT,
        record_exception=False,
    )


def record_status(span: trace.Span, status_code: int) -> None:
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 400:
        span.set_status(Status(StatusCode.ERROR))


def mark_failed(span: trace.Span, description: str) -> None:
    span.set_status(Status(StatusCode.ERROR, description))
