"""Commit to ApplySucceeded: how long one revision takes through Wake's five services.

    python bench/commit_to_applied.py [--runs 20] [--resources 20] [--latency-ms 15]
                                      [--tracing-overhead [--rounds 3]]

Starts a real Wake (embedded NATS and PostgreSQL, every service its own
process) with a sandbox cluster that waits `--latency-ms` per API request,
registers one app of `--resources` resources, then `--runs` times: commits a
change to every ConfigMap of the app and triggers the check as `wake sync`
does (a SyncRequested event), and measures from the commit to ApplySucceeded.
Prints p50/p95 of the whole and the median time each stage was reached. Every event
is signed by the service that appends it and verified by every reader.

With `--tracing-overhead` it measures three Wakes in turn: spans exported over
OTLP/HTTP (to a local receiver) and to Wake's span store, the span store only
(`OTEL_TRACES_EXPORTER=none`), and no tracing at all (`OTEL_SDK_DISABLED=true`),
and prints the overhead of each at p50 against the last.
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

import psutil
from aiohttp import web

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


# CPU seconds the services spent per commit, one entry per `run` (read by tracing_overhead).
CPU_PER_COMMIT: list[float] = []


def services_cpu(running) -> float:
    """User + system CPU seconds the service processes have used so far.

    Unlike wall-clock latency, this barely moves with other load on the machine,
    so it shows what tracing itself costs.
    """
    total = 0.0
    for child in running.services.values():
        if child.pid is None:
            continue
        try:
            times = psutil.Process(child.pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(
    runs: int, resources: int, latency_ms: float, env: dict[str, str] | None = None
) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="wake-bench-") as tmp:
        root = Path(tmp)
        running = await start_wake(
            root / "data",
            sandbox=True,
            sandbox_ready_workloads=True,
            sandbox_latency_ms=latency_ms,
            log_dir=root / "logs",
            extra_env={"WAKE_POLL_INTERVAL": "3600", "WAKE_LOG_LEVEL": "WARNING", **(env or {})},
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
            cpu_before = services_cpu(running)
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
            cpu_per_commit = (services_cpu(running) - cpu_before) / runs
        finally:
            await log.close()
            await running.stop()
    print(
        f"commit -> ApplySucceeded: p50 {statistics.median(totals) * 1000:.0f} ms, "
        f"p95 {percentile(totals, 0.95) * 1000:.0f} ms, "
        f"min {min(totals) * 1000:.0f} ms, max {max(totals) * 1000:.0f} ms "
        "(before events were signed, README: p50 443 ms, p95 476 ms; target p50 <= 1 s)"
    )
    print(f"CPU time of the six services per commit: {cpu_per_commit * 1000:.0f} ms")
    CPU_PER_COMMIT.append(cpu_per_commit)
    print("median time since the commit at which each stage was appended:")
    for stage, values in stages.items():
        if values:
            print(f"  {stage:<18} {statistics.median(values) * 1000:>7.0f} ms")
    return totals


class _OtlpSink:
    """A local OTLP/HTTP receiver that takes every export (and counts them)."""

    def __init__(self) -> None:
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.endpoint = ""

    async def start(self) -> None:
        async def traces(request: web.Request) -> web.Response:
            await request.read()
            self.requests += 1
            return web.Response(status=200, content_type="application/x-protobuf")

        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.endpoint = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def tracing_overhead(runs: int, resources: int, latency_ms: float, rounds: int) -> None:
    sink = _OtlpSink()
    await sink.start()
    try:
        modes = {
            "otlp + span store": {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint,
            },
            "span store only (OTEL_TRACES_EXPORTER=none)": {"OTEL_TRACES_EXPORTER": "none"},
            "no tracing (OTEL_SDK_DISABLED=true)": {"OTEL_SDK_DISABLED": "true"},
        }
        # Modes take turns, a few rounds each, so a change in the machine's load
        # (other processes) weighs on every mode alike.
        totals: dict[str, list[float]] = {mode: [] for mode in modes}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_ in range(rounds):
            for mode, env in modes.items():
                print(f"--- {mode} (round {round_ + 1} of {rounds})")
                totals[mode] += await run(max(1, runs // rounds), resources, latency_ms, env)
                cpu[mode].append(CPU_PER_COMMIT[-1])
        p50 = {mode: statistics.median(values) for mode, values in totals.items()}
        print(f"OTLP exports received: {sink.requests}")
    finally:
        await sink.stop()
    exported, store, off = (p50[mode] for mode in modes)
    cpu_exported, cpu_store, cpu_off = (statistics.median(cpu[mode]) for mode in modes)
    print("tracing overhead on commit -> ApplySucceeded p50:")
    print(
        f"  exported (otlp + span store) vs OTEL_TRACES_EXPORTER=none: "
        f"{(exported / store - 1) * 100:+.1f} % ({exported * 1000:.0f} vs {store * 1000:.0f} ms)"
    )
    print(
        f"  exported (otlp + span store) vs no tracing: "
        f"{(exported / off - 1) * 100:+.1f} % ({exported * 1000:.0f} vs {off * 1000:.0f} ms)"
    )
    print("services' CPU time per commit (median of the rounds; other load barely moves it):")
    for mode, value in (
        ("exported (otlp + span store)", cpu_exported),
        ("span store only", cpu_store),
        ("no tracing", cpu_off),
    ):
        print(f"  {mode:<30} {value * 1000:>6.0f} ms ({(value / cpu_off - 1) * 100:+.1f} %)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--resources", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=15.0)
    parser.add_argument(
        "--tracing-overhead",
        action="store_true",
        help="compare spans exported (OTLP + span store), span store only, and no tracing",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="with --tracing-overhead: turns each mode takes"
    )
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(
        f"app of {args.resources} resources, sandbox latency {args.latency_ms:g} ms per request, "
        f"{args.runs} runs"
    )
    if args.tracing_overhead:
        asyncio.run(tracing_overhead(args.runs, args.resources, args.latency_ms, args.rounds))
    else:
        asyncio.run(run(args.runs, args.resources, args.latency_ms))


if __name__ == "__main__":
    main()
