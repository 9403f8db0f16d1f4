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
    "(ok, deferred, retry, rejected).",
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
