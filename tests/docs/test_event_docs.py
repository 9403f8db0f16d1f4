"""The event reference and the example consumer that outside teams start from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from events import new_event
from events.payloads import ApplySucceeded, SyncRequested
from events.reference import events_reference
from events.samples import BUNDLE, COMMIT, INVENTORY
from services.wiring.embedded_nats import EmbeddedNats
from services.wiring.eventlog import EventLog

ROOT = Path(__file__).resolve().parents[2]


def test_docs_events_md_is_generated_from_the_contracts():
    committed = (ROOT / "docs" / "events.md").read_text()
    assert committed == events_reference(), "docs/events.md is stale: run `wake events docs`"


def deploy(app: str, n: int):
    payload = ApplySucceeded(
        apply_id=f"apply-{n}",
        plan_id=f"plan-{n}",
        commit=COMMIT,
        bundle_digest=BUNDLE,
        inventory=INVENTORY,
    )
    return new_event(payload, app=app, actor="service:applier")


def run_example(url: str, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "deploys_per_app.py"), "--nats-url", url, *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.splitlines()


async def test_the_example_consumer_counts_deploys_per_app_and_resumes(
    event_log: EventLog, nats_server: EmbeddedNats
):
    appended = await event_log.append_many(
        [
            deploy("shop", 1),
            new_event(SyncRequested(), app="shop", actor="t"),
            deploy("shop", 2),
            deploy("cart", 3),
        ]
    )
    first = run_example(nats_server.url)
    assert first[-2:] == ["cart: 1 deploys", "shop: 2 deploys"]
    assert len(first) == 5
    await event_log.append(deploy("cart", 4))
    again = run_example(nats_server.url)
    assert again[-1] == "cart: 1 deploys" and len(again) == 2
    second = str(appended[2].seq)  # shop's second deploy
    from_start = run_example(nats_server.url, "--durable", "other", "--from-seq", second)
    assert from_start[-2:] == ["cart: 2 deploys", "shop: 1 deploys"]
