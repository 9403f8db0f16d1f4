"""Prometheus metrics of a Wake process (prometheus-client, the process's default registry).

Names follow Prometheus conventions: counters end in `_total`, durations are
histograms in `_seconds`. Each process serves its own on `/metrics`
(`health.py`); endpoints.json's `metrics` says where. The shells feed them
through the few functions below, so the services' modules stay free of
metric objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence

import nats.errors
import nats.js.errors as js_errors
from prometheus_client import Counter, Gauge, Histogram

from events import names
from events.envelope import Envelope

log = logging.getLogger(__name__)

# Handlers and Kubernetes round trips: milliseconds to minutes.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

EVENTS_APPENDED = Counter(
    "wake_events_appended_total", "Events this process appended to the log, by type.", ["type"]
)
EVENTS_HANDLED = Counter(
    "wake_events_handled_total",
    "Events handled by this process's consumers, by consumer, type and outcome "
    "(ok, deferred, retry, rejected; skipped: of a type the consumer never acts on, "
    "acknowledged unread).",
    ["consumer", "type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "wake_handler_duration_seconds",
    "Time a handler took for one event, by consumer and type.",
    ["consumer", "type"],
    buckets=_BUCKETS,
)
CONSUMER_PENDING = Gauge(
    "wake_consumer_pending_messages", "Messages not yet delivered (consumer info).", ["consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "wake_consumer_ack_pending_messages",
    "Messages delivered and not yet acknowledged (consumer info).",
    ["consumer"],
)
CONSUMER_REDELIVERED = Gauge(
    "wake_consumer_redelivered_messages",
    "Messages delivered more than once and not yet acknowledged (consumer info).",
    ["consumer"],
)
RENDER_SECONDS = Histogram(
    "wake_render_duration_seconds",
    "Time one render took, by renderer kind and outcome.",
    ["kind", "outcome"],
    buckets=_BUCKETS,
)
DRY_RUN_SECONDS = Histogram(
    "wake_dry_run_duration_seconds",
    "Time the server-side dry runs of one plan or drift check took.",
    ["purpose"],
    buckets=_BUCKETS,
)
APPLY_SECONDS = Histogram(
    "wake_apply_duration_seconds",
    "Time one apply took, by outcome.",
    ["outcome"],
    buckets=_BUCKETS,
)
APPS_BY_SYNC = Gauge("wake_apps_by_sync_status", "Applications by sync status.", ["status"])
APPS_BY_HEALTH = Gauge("wake_apps_by_health_status", "Applications by health status.", ["status"])
DRIFT_DETECTED = Counter(
    "wake_drift_detected_total", "Drift this process detected, by app.", ["app"]
)
WEBHOOK_REQUESTS = Counter(
    "wake_webhook_requests_total",
    "Webhook requests received, by provider and HTTP status answered.",
    ["provider", "status"],
)
NOTIFICATIONS = Counter(
    "wake_notifications_total",
    "Notification deliveries, by channel and result (sent, failed).",
    ["channel", "result"],
)
PROJECTOR_LAG = Gauge(
    "wake_projector_lag_events",
    "Events in the log the read models have not folded yet.",
)
PROJECTOR_POSITION = Gauge(
    "wake_projector_position", "The stream sequence the read models have reached."
)


def appended(events: Sequence[Envelope]) -> None:
    """Count events this process appended (stored, or already there)."""
    for event in events:
        EVENTS_APPENDED.labels(event.type).inc()
        payload = event.payload
        if event.type == "DriftDetected":
            DRIFT_DETECTED.labels(event.app).inc()
        elif event.type in ("NotificationSent", "NotificationFailed"):
            result = "sent" if event.type == "NotificationSent" else "failed"
            NOTIFICATIONS.labels(getattr(payload, "channel", ""), result).inc()


@contextlib.contextmanager
def handling(consumer: str, event_type: str) -> Iterator[list[str]]:
    """Time a handler; the caller sets `outcome[0]` (ok unless it says otherwise)."""
    outcome = ["ok"]
    started = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        if outcome[0] == "ok":
            outcome[0] = "retry"
        raise
    finally:
        HANDLER_SECONDS.labels(consumer, event_type).observe(time.perf_counter() - started)
        EVENTS_HANDLED.labels(consumer, event_type, outcome[0]).inc()


@contextlib.contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[dict[str, str]]:
    """Observe the block's duration; the caller may change `labels` (an outcome) inside."""
    started = time.perf_counter()
    outcome = dict(labels)
    try:
        yield outcome
    except BaseException:
        if outcome.get("outcome") == "ok":
            outcome["outcome"] = "error"
        raise
    finally:
        histogram.labels(**outcome).observe(time.perf_counter() - started)


class ConsumerWatch:
    """Reads the info of this process's durable consumers every `interval` seconds.

    Feeds the pending / ack-pending / redelivered gauges, and tells readiness
    whether every consumer is bound (exists and answered lately).
    """

    def __init__(self, js, consumers: Sequence[str], *, interval: float = 5.0) -> None:
        self.js = js
        self.consumers = list(consumers)
        self.interval = interval
        self.bound_at: float | None = None
        self.error = "consumer info not read yet"

    def bound(self) -> tuple[bool, str]:
        if not self.consumers:
            return True, "no durable consumer"
        if self.bound_at is None or time.monotonic() - self.bound_at > 3 * self.interval:
            return False, self.error
        return True, f"{len(self.consumers)} consumer(s) bound"

    async def check(self) -> None:
        for name in self.consumers:
            info = await self.js.consumer_info(names.STREAM, name, timeout=2.0)
            CONSUMER_PENDING.labels(name).set(info.num_pending or 0)
            CONSUMER_ACK_PENDING.labels(name).set(info.num_ack_pending or 0)
            CONSUMER_REDELIVERED.labels(name).set(info.num_redelivered or 0)
        self.bound_at = time.monotonic()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except (TimeoutError, nats.errors.Error, js_errors.Error) as exc:
                self.error = f"consumer info: {exc!r}"
                self.bound_at = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


SERVER_UP = Gauge(
    "wake_server_up", "Whether an embedded server's process is running (1) or not (0).", ["server"]
)
SERVER_RESTARTS = Counter(
    "wake_server_restarts_total", "Restarts of an embedded server by `wake up`.", ["server"]
)
STREAM_MESSAGES = Gauge("wake_stream_messages", "Messages in a JetStream stream.", ["stream"])
STREAM_BYTES = Gauge("wake_stream_bytes", "Bytes in a JetStream stream.", ["stream"])


class InfraWatch:
    """`wake up`'s view of its embedded NATS and PostgreSQL, every `interval` seconds:
    processes up, restarts, the streams' sizes (read as the admin)."""

    def __init__(self, infrastructure, *, interval: float = 5.0) -> None:
        self.infrastructure = infrastructure
        self.interval = interval
        self._nc = None
        self._restarts: dict[str, int] = {}

    def nats_ready(self) -> tuple[bool, str]:
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False, "not connected"
        return True, "connected"

    async def postgres_ready(self) -> tuple[bool, str]:
        from urllib.parse import urlsplit

        url = urlsplit(self.infrastructure.endpoints.database_url)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(url.hostname, url.port or 5432), 1.0
            )
        except (OSError, TimeoutError) as exc:
            return False, f"unreachable: {exc!r}"
        writer.close()
        return True, "reachable"

    def _servers(self) -> None:
        infrastructure = self.infrastructure
        nodes = infrastructure.nats_nodes
        for index, node in enumerate(nodes):
            name = "nats-server" if len(nodes) == 1 else f"nats-server n{index + 1}"
            SERVER_UP.labels(name).set(1 if node.process.poll() is None else 0)
        SERVER_UP.labels("postgres").set(1 if infrastructure.postgres.process.poll() is None else 0)
        for name, count in infrastructure.restarts().items():
            delta = count - self._restarts.get(name, 0)
            if delta > 0:
                SERVER_RESTARTS.labels(name).inc(delta)
            self._restarts[name] = count

    async def _connect(self):
        from services.wiring.credentials import client_tls, load_connect_kwargs
        from services.wiring.eventlog import EventLog

        endpoints = self.infrastructure.endpoints
        credentials = load_connect_kwargs(endpoints.nats_admin) if endpoints.nats_admin else None
        tls = client_tls(os.environ.get("WAKE_NATS_TLS_CA", ""))
        return await EventLog.connect(
            endpoints.nats_url, name="wake-up-metrics", credentials=credentials, tls=tls
        )

    async def run(self) -> None:
        event_log = None
        try:
            while True:
                self._servers()
                try:
                    if event_log is None:
                        event_log = await asyncio.wait_for(self._connect(), 5.0)
                        self._nc = event_log.nc
                    for stream in (names.STREAM, names.BUNDLES_STREAM, names.SPANS_STREAM):
                        info = await event_log.js.stream_info(stream)
                        STREAM_MESSAGES.labels(stream).set(info.state.messages or 0)
                        STREAM_BYTES.labels(stream).set(info.state.bytes or 0)
                except (OSError, TimeoutError, nats.errors.Error) as exc:
                    log.debug("infra metrics: %r", exc)
                await asyncio.sleep(self.interval)
        finally:
            if event_log is not None:
                await event_log.close()
