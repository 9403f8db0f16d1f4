"""Observability end to end: one trace per change in a real OTLP/HTTP receiver and in
`wake trace`, Prometheus metrics of every process, `/readyz` following NATS.

Wake runs as `wake up --sandbox` does (the supervisor of `start_wake`), with
the standard OTEL_EXPORTER_OTLP_ENDPOINT pointing at a receiver that decodes
what arrives with the official OTLP protobuf messages (opentelemetry-proto).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from prometheus_client.parser import text_string_to_metric_families

from events import names
from events.payloads import RevisionDetected
from services.demo.sample import APP_PATH, first_commit
from services.wiring import spanstore
from tests.e2e.harness import WakeUnderTest, running_wake
from tests.waiting import eventually

SERVICES = ("git-watcher", "renderer", "planner", "applier", "notifier")


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf, decoded as sent."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []  # (service.name, span)
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.endpoint = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.endpoint = f"http://127.0.0.1:{port}"

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        self.requests += 1
        for resource_spans in message.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append((attributes.get("service.name", ""), span))
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")

    def trace(self, trace_id: str) -> list[tuple[str, Span]]:
        return [(service, span) for service, span in self.spans if span.trace_id.hex() == trace_id]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    await otlp.start()
    yield otlp
    await otlp.stop()


@pytest.fixture(scope="module")
async def wake(
    tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> AsyncIterator[WakeUnderTest]:
    async with running_wake(
        tmp_path_factory.mktemp("observability"),
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "WAKE_NOTIFY_EVENTS": "ApplySucceeded",
            "WAKE_LOG_FORMAT": "json",
        },
    ) as running:
        yield running


async def _journey(wake: WakeUnderTest, app: str) -> tuple[str, str]:
    """Register `app` on a fresh repository and wait for its commit's notification;
    (commit, trace id of its detection)."""
    repo = wake.repository(app)
    commit = first_commit(repo, namespace=app)
    start = await wake.position()
    await wake.wake("app", "add", app, "--repo", repo.url, "--path", APP_PATH, "--namespace", app)
    applied = await wake.next_event(
        app, "ApplySucceeded", after=start, where=lambda s: s.event.payload.commit == commit
    )
    await wake.next_event(
        app,
        "NotificationSent",
        after=applied.seq,
        where=lambda s: s.event.payload.about_event_id == applied.event.event_id,
    )
    detected = next(
        s.event
        for s in await wake.events(app, after=start)
        if isinstance(s.event.payload, RevisionDetected) and s.event.payload.commit == commit
    )
    return commit, detected.traceparent.split("-")[1]


def _by_id(spans: list[tuple[str, Span]]) -> dict[bytes, tuple[str, Span]]:
    return {span.span_id: (service, span) for service, span in spans}


def _ancestors(span: Span, by_id: dict[bytes, tuple[str, Span]]) -> list[tuple[str, Span]]:
    chain = []
    while span.parent_span_id and span.parent_span_id in by_id:
        service, span = by_id[span.parent_span_id]
        chain.append((service, span))
    return chain


def _complete(spans: list[tuple[str, Span]]) -> bool:
    """Every service's spans are in, and every span's parent has arrived."""
    by_id = _by_id(spans)
    services = {service for service, _ in spans}
    if not {f"wake-{s}" for s in SERVICES} <= services:
        return False
    notified = any(
        service == "wake-notifier"
        and span.kind == Span.SPAN_KIND_CONSUMER
        and any(
            a.key == "wake.event_type" and a.value.string_value == "ApplySucceeded"
            for a in span.attributes
        )
        for service, span in spans
    )
    orphans = [s for _, s in spans if s.parent_span_id and s.parent_span_id not in by_id]
    return notified and not orphans


async def test_one_commit_is_one_trace_across_five_services_in_an_otlp_backend(
    wake: WakeUnderTest, receiver: OtlpReceiver
):
    # Given Wake exporting to an OTLP/HTTP receiver, when a commit is applied
    _, trace_id = await _journey(wake, "traced")
    # Then the receiver gets one trace with spans of git-watcher, renderer,
    # planner, applier and notifier, every parent among them
    await eventually(
        lambda: _complete(receiver.trace(trace_id)), timeout=30, what="the whole trace exported"
    )
    spans = receiver.trace(trace_id)
    by_id = _by_id(spans)
    roots = [(service, span) for service, span in spans if not span.parent_span_id]
    assert [(service, span.name) for service, span in roots] == [
        ("wake-git-watcher", "detect revision")
    ]
    # and every CONSUMER span is a child of a PRODUCER span, with the messaging conventions
    consumers = [(s, span) for s, span in spans if span.kind == Span.SPAN_KIND_CONSUMER]
    assert {s for s, _ in consumers} >= {f"wake-{s}" for s in SERVICES[1:]}
    for _, span in consumers:
        _, parent = by_id[span.parent_span_id]
        assert parent.kind == Span.SPAN_KIND_PRODUCER, (span.name, parent.name)
        attributes = {a.key: a.value.string_value for a in span.attributes}
        assert attributes["messaging.system"] == "nats"
        assert attributes["messaging.destination.name"].startswith("wake.evt.traced.")
    # and at least one Kubernetes request span under the applier's span
    kube_requests = [
        span
        for service, span in spans
        if service == "wake-applier"
        and span.kind == Span.SPAN_KIND_CLIENT
        and any(a.key == "wake.kube.operation" for a in span.attributes)
    ]
    assert kube_requests
    applier_handling = [
        span
        for span in kube_requests
        if any(
            service == "wake-applier" and parent.kind == Span.SPAN_KIND_CONSUMER
            for service, parent in _ancestors(span, by_id)
        )
    ]
    assert applier_handling, "no Kubernetes request span under the applier's CONSUMER span"
    methods = {
        a.value.string_value
        for span in kube_requests
        for a in span.attributes
        if a.key == "http.request.method"
    }
    assert "PATCH" in methods
    # and the renderer's git and the planner's dry runs have child spans too
    names_by_service = {(service, span.name) for service, span in spans}
    assert any(s == "wake-planner" and n == "PATCH" for s, n in names_by_service)
    # and the notifier's webhook POST is a CLIENT span of the trace
    assert ("wake-notifier", "POST") in names_by_service
    # and a health change later is a trace of its own, linked to the apply's span
    health = await wake.next_event("traced", "HealthChanged", after=0)
    health_trace = health.event.traceparent.split("-")[1]
    assert health_trace != trace_id

    def health_span() -> Span | None:
        return next(
            (span for _, span in receiver.trace(health_trace) if span.name == "health changed"),
            None,
        )

    await eventually(lambda: health_span() is not None, timeout=30, what="health span exported")
    (link,) = health_span().links
    assert link.trace_id.hex() == trace_id and link.span_id in by_id


async def test_wake_trace_prints_the_journey_then_falls_back_on_the_log(wake: WakeUnderTest):
    # Given a commit applied
    commit, trace_id = await _journey(wake, "viewed")

    # When `wake trace` is asked for it, once every service's spans are in the span store
    async def every_service_shown() -> bool:
        shown = (await wake.wake("trace", "viewed", commit[:10])).stdout
        return all(f" {service} " in shown for service in SERVICES)

    await eventually(every_service_shown, timeout=30, what="every service in `wake trace`")
    shown = (await wake.wake("trace", "viewed", commit[:10])).stdout
    # Then it prints every service's spans in start order
    assert f"trace {trace_id}" in shown
    section = shown.split(f"trace {trace_id}")[1].split("\ntrace ")[0]
    offsets = [float(match.group(1)) for match in re.finditer(r"^\s+(\d+\.\d)ms ", section, re.M)]
    assert all(f" {service} " in section for service in SERVICES)
    assert offsets == sorted(offsets) and len(offsets) > 10
    # and each span that appended events names them
    assert "-> RevisionDetected" in section and re.search(r"-> .*ApplySucceeded", section)
    # and --json gives the spans in OTLP JSON, ids in hex
    document = json.loads((await wake.wake("trace", "viewed", commit, "--json")).stdout)
    json_spans = [
        span
        for resource in document["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    assert any(span["traceId"] == trace_id for span in json_spans)
    assert all(re.fullmatch(r"[0-9a-f]{16}", span["spanId"]) for span in json_spans)

    # and the CLI's `wake app add` was a trace of its own, in the span store too
    registered = await wake.next_event("viewed", "ApplicationRegistered", after=0)
    cli_trace = registered.event.traceparent.split("-")[1]
    assert cli_trace != trace_id
    stored = spanstore.to_otlp_json(await spanstore.read_trace(wake.log.js, cli_trace))
    cli_spans = {
        span["name"]
        for resource in stored["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    }
    assert {"wake app add", "send ApplicationRegistered"} <= cli_spans

    # When the span store loses its spans (aged out)
    # (a span that ends late is exported up to a second after it ends: purge until none comes)
    async def purged() -> bool:
        await wake.log.js.purge_stream(names.SPANS_STREAM)
        output = (await wake.wake("trace", "viewed", commit[:10])).stdout
        return "event timings from the log only" in output

    await eventually(purged, timeout=30, what="no spans left")
    fallback = (await wake.wake("trace", "viewed", commit[:10])).stdout
    # Then the journey still shows, from the log's event timings, and says so
    assert "event timings from the log only" in fallback
    for event_type in ("RevisionDetected", "ManifestsRendered", "PlanCreated", "ApplySucceeded"):
        assert event_type in fallback
    # and a REF that names nothing is a clear error
    missing = await wake.wake("trace", "viewed", "ffffffffff", check=False)
    assert missing.returncode != 0 and "no commit, plan or apply" in missing.stderr


async def _scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """Every sample of `url` as name{labels} -> value, parsed by prometheus_client."""
    async with session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def _total(samples: dict[str, float], name: str, **labels: str) -> float:
    # Whole labels only: `server=nats-server` is not `server=nats-server n1` (a
    # cluster that an earlier test of this process ran left its gauges behind).
    wanted = [f"{k}={v}" for k, v in labels.items()]

    def labelled(key: str) -> bool:
        return all(
            f"{{{w}," in key or f",{w}," in key or f"{{{w}}}" in key or f",{w}}}" in key
            for w in wanted
        )

    return sum(
        value for key, value in samples.items() if key.startswith(name + "{") and labelled(key)
    )


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as response:
            return response.status
    return 0


async def test_metrics_of_every_service_move_and_readyz_follows_nats(wake: WakeUnderTest):
    # Given endpoints.json's metrics URL of every service (and of `wake up` itself)
    endpoints = json.loads((wake.running.data_dir / "endpoints.json").read_text())
    metrics = endpoints["metrics"]
    assert set(metrics) >= {*SERVICES, "projector", "infra"}
    async with aiohttp.ClientSession() as session:
        before = {name: await _scrape(session, url) for name, url in metrics.items()}
        for name, url in metrics.items():
            assert await _status(session, url.replace("/metrics", "/healthz")) == 200, name
            assert await _status(session, url.replace("/metrics", "/readyz")) == 200, name
        # When a commit is applied
        await _journey(wake, "measured")

        # Then the counters of every service have moved
        async def moved() -> bool:
            now = {name: await _scrape(session, url) for name, url in metrics.items()}
            handled = "wake_events_handled_total"
            return (
                _total(now["git-watcher"], "wake_events_appended_total", type="RevisionDetected")
                > _total(
                    before["git-watcher"], "wake_events_appended_total", type="RevisionDetected"
                )
                and all(
                    _total(now[s], handled) > _total(before[s], handled)
                    for s in ("renderer", "planner", "applier", "notifier")
                )
                and _total(now["applier"], "wake_apply_duration_seconds_count")
                > _total(before["applier"], "wake_apply_duration_seconds_count")
                and _total(now["renderer"], "wake_render_duration_seconds_count")
                > _total(before["renderer"], "wake_render_duration_seconds_count")
                and _total(now["notifier"], "wake_notifications_total", result="sent")
                > _total(before["notifier"], "wake_notifications_total", result="sent")
                and _total(now["projector"], "wake_projector_position")
                > _total(before["projector"], "wake_projector_position")
            )

        await eventually(moved, timeout=30, what="counters moved after a commit")
        applier = await _scrape(session, metrics["applier"])
        assert any(k.startswith("wake_consumer_pending_messages{") for k in applier)
        assert any(k.startswith("wake_handler_duration_seconds_bucket{") for k in applier)
        infra = await _scrape(session, metrics["infra"])
        assert _total(infra, "wake_server_up", server="nats-server") == 1

        # When NATS stops (supervision paused, so nothing brings it back yet)
        wake.running.infrastructure.on_restarted = lambda _: None
        await wake.pause_supervision()
        nats_node = wake.running.infrastructure.nats_nodes[0]
        nats_node.process.kill()
        await asyncio.to_thread(nats_node.process.wait)

        # Then every service's /readyz says not ready, naming NATS; /healthz stays 200
        async def all_status(path: str, status: int) -> bool:
            codes = [
                await _status(session, url.replace("/metrics", path))
                for name, url in metrics.items()
            ]
            return all(code == status for code in codes)

        await eventually(lambda: all_status("/readyz", 503), timeout=30, what="not ready")
        async with session.get(metrics["planner"].replace("/metrics", "/readyz")) as response:
            assert "nats: FAIL" in await response.text()
        assert await all_status("/healthz", 200)
        # When NATS is back
        await wake.resume_supervision()
        # Then every service is ready again
        await eventually(lambda: all_status("/readyz", 200), timeout=60, what="ready again")


def test_json_logs_carry_trace_ids(wake: WakeUnderTest):
    # Given the services log with WAKE_LOG_FORMAT=json (this module's Wake)
    lines = (wake.root / "logs" / "applier.log").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    # Then each line is one JSON object with time, level, service and message
    assert records and all({"time", "level", "service", "message"} <= r.keys() for r in records)
    assert {r["service"] for r in records} == {"applier"}
    # and records logged while handling an event name it, its app and the trace
    handled = [r for r in records if "event_id" in r]
    assert handled and all({"app", "trace_id", "span_id"} <= r.keys() for r in handled)
    assert not any(
        "://" in r["message"] and "@" in r["message"].split("://")[1].split("/")[0]
        for r in records
        if "***@" not in r["message"]
    )
