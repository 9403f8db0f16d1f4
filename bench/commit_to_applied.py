"""Commit to ApplySucceeded: how long one revision takes through Wake's five services.

    python bench/commit_to_applied.py [--runs 20] [--resources 20] [--latency-ms 15]

Starts a real Wake (embedded NATS and PostgreSQL, every service its own
process) with a sandbox cluster that waits `--latency-ms` per API request,
registers one app of `--resources` resources, then `--runs` times: commits a
change to every ConfigMap of the app and triggers the check as `wake sync`
does (a SyncRequested event), and measures from the commit to ApplySucceeded.
Prints p50/p95 of the whole and the median time each stage was reached. Every event
is signed by the service that appends it and verified by every reader.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from events import new_event
from events.payloads import ApplicationRegistered, AppSpec, SyncRequested
from services.demo.sample import SampleRepo, deployment_yaml, namespace_yaml
from services.demo.walkthrough import wait_for_journey
from services.wiring.credentials import load_connect_kwargs
from services.wiring.eventlog import EventLog
from services.wiring.signing import sign_as_admin
from services.wiring.supervision import start_wake

APP = "bench"
STAGES = [
    "RevisionDetected",
    "ManifestsRendered",
    "PlanCreated",
    "PlanApproved",
    "ApplyStarted",
    "ApplySucceeded",
]


def manifests(resources: int, generation: int) -> dict[str, str]:
    """`resources` objects: a Namespace, a Deployment, a Service, and ConfigMaps for the rest."""
    files = {
        "app/namespace.yaml": namespace_yaml(APP),
        "app/deployment.yaml": deployment_yaml(replicas=2, image="nginx:1.27"),
        "app/service.yaml": "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
        "spec:\n  selector:\n    app: web\n  ports:\n    - port: 80\n",
    }
    for i in range(resources - 3):
        files[f"app/config-{i:02d}.yaml"] = (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-{i:02d}\n"
            f"data:\n  generation: '{generation}'\n"
        )
    return files


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(runs: int, resources: int, latency_ms: float) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(
        f"app of {resources} resources, sandbox latency {latency_ms:g} ms per request, {runs} runs"
    )
    with tempfile.TemporaryDirectory(prefix="wake-bench-") as tmp:
        root = Path(tmp)
        running = await start_wake(
            root / "data",
            sandbox=True,
            sandbox_ready_workloads=True,
            sandbox_latency_ms=latency_ms,
            log_dir=root / "logs",
            extra_env={"WAKE_POLL_INTERVAL": "3600", "WAKE_LOG_LEVEL": "WARNING"},
        )
        log = await EventLog.connect(
            running.endpoints.nats_url,
            name="bench",
            credentials=load_connect_kwargs(running.endpoints.nats_admin),
        )
        sign_as_admin(log, running.data_dir, running.endpoints.admin_public_key)
        try:
            repo = SampleRepo.create(root / "repo")
            commit = repo.commit("generation 0", manifests(resources, 0))
            spec = AppSpec(repo_url=repo.url, path="app", namespace=APP)
            after = (await log.js.stream_info("WAKE_EVENTS")).state.last_seq
            await log.append(new_event(ApplicationRegistered(spec=spec), app=APP, actor="bench"))
            await wait_for_journey(log, APP, commit, after_seq=after, timeout=120, notified=False)
            totals: list[float] = []
            stages: dict[str, list[float]] = {stage: [] for stage in STAGES}
            for generation in range(1, runs + 1):
                after = (await log.js.stream_info("WAKE_EVENTS")).state.last_seq
                commit = repo.commit(f"generation {generation}", manifests(resources, generation))
                committed_at = datetime.now(UTC)
                started = time.perf_counter()
                await log.append(new_event(SyncRequested(), app=APP, actor="bench"))
                journey = await wait_for_journey(
                    log, APP, commit, after_seq=after, timeout=120, notified=False
                )
                totals.append(time.perf_counter() - started)
                for _, event in journey:
                    if event.type in stages:
                        stages[event.type].append(
                            (event.occurred_at - committed_at).total_seconds()
                        )
        finally:
            await log.close()
            await running.stop()
    print(
        f"commit -> ApplySucceeded: p50 {statistics.median(totals) * 1000:.0f} ms, "
        f"p95 {percentile(totals, 0.95) * 1000:.0f} ms, "
        f"min {min(totals) * 1000:.0f} ms, max {max(totals) * 1000:.0f} ms "
        "(before events were signed, README: p50 443 ms, p95 476 ms; target p50 <= 1 s)"
    )
    print("median time since the commit at which each stage was appended:")
    for stage, values in stages.items():
        if values:
            print(f"  {stage:<18} {statistics.median(values) * 1000:>7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=15.0)
    args = parser.parse_args()
    asyncio.run(run(args.runs, args.resources, args.latency_ms))


if __name__ == "__main__":
    main()
