"""Wake's span store: finished spans in a JetStream stream of their own, WAKE_SPANS.

Separate from the event log (which is indelible and unbounded): bounded by age
(`SPAN_RETENTION`, 7 days) and size (`SPAN_MAX_BYTES`), oldest dropped first.
Every process exports its spans here as well as to its OTLP backend: one
message per batch and trace, an OTLP `ExportTraceServiceRequest` in protobuf,
on `wake.spans.<identity>.<trace id>`, so `wake trace` reads one trace with a
subject filter. Each identity may publish only under its own token
(`permissions.py`); only the admin makes the stream (`eventlog.provision`).

The exporter runs in the SDK's batch thread and only queues bytes; a task on
the process's event loop publishes them over its NATS connection, and
`drain` sends what is queued before the process exits.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import threading
from collections.abc import Sequence

import nats.errors
import nats.js.api as api
import nats.js.errors as js_errors
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from events import names
from services.catalog import tracing

log = logging.getLogger(__name__)

SPAN_RETENTION = 7 * 24 * 3600.0
SPAN_MAX_BYTES = 1024 * 1024 * 1024
# Messages held while the connection is away; beyond, the oldest are dropped.
_QUEUE_LIMIT = 10_000


def span_store_config(*, replicas: int = 1) -> api.StreamConfig:
    """The WAKE_SPANS settings: bounded by age and size, dropping the oldest."""
    return api.StreamConfig(
        name=names.SPANS_STREAM,
        description="Finished OpenTelemetry spans of Wake's processes (OTLP protobuf)",
        subjects=[names.ALL_SPANS],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.OLD,
        max_age=SPAN_RETENTION,
        max_bytes=SPAN_MAX_BYTES,
        max_msg_size=4 * 1024 * 1024,
        num_replicas=replicas,
        allow_direct=True,
    )


class SpanStoreExporter(SpanExporter):
    """Queues finished spans for WAKE_SPANS; `attach` starts sending them."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self._queue: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=_QUEUE_LIMIT)
        self._lock = threading.Lock()
        self._nc = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._warned = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        by_trace: dict[int, list[ReadableSpan]] = {}
        for span in spans:
            by_trace.setdefault(span.context.trace_id, []).append(span)
        with self._lock:
            for trace_id, group in by_trace.items():
                subject = names.spans_subject(self.identity, f"{trace_id:032x}")
                self._queue.append((subject, encode_spans(group).SerializeToString()))
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(wake.set)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True

    def attach(self, nc) -> None:
        """Publish over `nc` from the running loop, until `detach`."""
        self.detach()
        self._nc = nc
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._wake.set()
        self._task = asyncio.create_task(self._publishing())

    def detach(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._task = None
        self._nc = None
        self._loop = None
        self._wake = None

    async def _publishing(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            await wake.wait()
            wake.clear()
            await self._send()

    async def _send(self) -> None:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return
        while True:
            with self._lock:
                if not self._queue:
                    return
                subject, data = self._queue.popleft()
            try:
                # Core publish: the stream stores what arrives on its subjects,
                # and a span is not worth a round trip per batch.
                await nc.publish(subject, data)
            except nats.errors.Error as exc:
                with self._lock:
                    self._queue.appendleft((subject, data))
                if not self._warned:
                    log.warning("span store: cannot publish spans (%r); kept for later", exc)
                    self._warned = True
                return

    async def drain(self, timeout: float = 5.0) -> None:
        """Send everything queued and wait until the server has it."""
        nc = self._nc
        if nc is None:
            return
        await self._send()
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await nc.flush(timeout=max(1, int(timeout)))


async def read_trace(js, trace_id: str) -> list[ExportTraceServiceRequest]:
    """Every stored batch of trace `trace_id`, in the order they were stored.

    Walks the stream with direct gets, next message on the trace's subject
    filter from the last one's sequence: a handful of requests per trace.
    """
    batches: list[ExportTraceServiceRequest] = []
    seq = 1
    subject = names.trace_spans(trace_id)
    while True:
        try:
            message = await js.get_msg(
                names.SPANS_STREAM, seq=seq, subject=subject, next=True, direct=True
            )
        except js_errors.NotFoundError:
            return batches
        request = ExportTraceServiceRequest()
        request.ParseFromString(message.data or b"")
        batches.append(request)
        seq = (message.seq or seq) + 1


def to_otlp_json(requests: Sequence[ExportTraceServiceRequest]) -> dict:
    """One OTLP JSON `ExportTraceServiceRequest` of all of `requests`' spans.

    The protobuf JSON mapping writes bytes in base64; OTLP JSON wants trace and
    span ids in hex, and enum values as integers.
    """
    from google.protobuf.json_format import MessageToDict

    merged = ExportTraceServiceRequest()
    for request in requests:
        merged.resource_spans.extend(request.resource_spans)
    document = MessageToDict(merged, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        if key in link:
                            link[key] = base64.b64decode(link[key]).hex()
    return document


_STATUS = {0: "", 1: "ok", 2: "error"}


def span_rows(requests) -> list[tracing.SpanRow]:
    """The spans of OTLP requests as rows (`services/catalog/tracing.py`), for `wake trace`
    and the console's trace viewer."""
    rows = []
    for request in requests:
        for resource_spans in request.resource_spans:
            attributes = {kv.key: kv.value for kv in resource_spans.resource.attributes}
            service = attributes.get("wake.service") or attributes.get("service.name")
            service_name = (service.string_value if service is not None else "?") or "?"
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    rows.append(
                        tracing.SpanRow(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            service=service_name,
                            name=span.name,
                            kind=tracing.SPAN_KINDS.get(span.kind, ""),
                            start_ns=span.start_time_unix_nano,
                            end_ns=span.end_time_unix_nano,
                            status=_STATUS.get(span.status.code, ""),
                            attributes={kv.key: _value(kv.value) for kv in span.attributes},
                            links=tuple(link.span_id.hex() for link in span.links),
                        )
                    )
    return rows


def _value(value) -> object:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, which) if which else ""
