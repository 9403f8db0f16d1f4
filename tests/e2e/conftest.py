from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.demo.walkthrough import WEBHOOK_SECRET, WebhookReceiver
from services.wiring.eventlog import EventLog
from services.wiring.kube import Kube
from services.wiring.supervision import start_wake
from tests.e2e.harness import WakeUnderTest


@pytest.fixture(scope="package")
async def wake(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WakeUnderTest]:
    """One Wake for the end-to-end tests; each test uses apps and namespaces of its own."""
    root = tmp_path_factory.mktemp("e2e")
    receiver = WebhookReceiver()
    await receiver.start()
    running = await start_wake(
        root / "data",
        sandbox=True,
        # A little latency per request, as a real API server has, so that an
        # apply takes long enough to be interrupted.
        sandbox_latency_ms=20,
        log_dir=root / "logs",
        extra_env={
            "WAKE_NOTIFY_URL": receiver.url,
            "WAKE_NOTIFY_SECRET": WEBHOOK_SECRET,
            "WAKE_NOTIFY_EVENTS": "ApplySucceeded,ApplyFailed,RenderFailed,ApprovalRequested",
        },
    )
    stop = asyncio.Event()
    supervising = asyncio.create_task(running.supervise(stop))
    log = await EventLog.connect(running.endpoints.nats_url, name="e2e")
    kube = await Kube.connect(kubeconfig=running.kubeconfig)
    try:
        yield WakeUnderTest(running=running, log=log, kube=kube, receiver=receiver, root=root)
    finally:
        stop.set()
        await supervising
        await kube.close()
        await log.close()
        await running.stop()
        await receiver.stop()
        _print_logs_on_failure(root / "logs")


def _print_logs_on_failure(logs: Path) -> None:
    # Shown by pytest only when a test failed (captured output of the teardown).
    for path in sorted(logs.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-40:]
        print(f"--- {path.name} (last {len(tail)} lines)")
        print("\n".join(tail))
