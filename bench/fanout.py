"""Fan-out: one monorepo commit changes 1000 apps; how long until all are applied.

    python bench/fanout.py [--apps 1000] [--latency-ms 15] [--poll 2] [--replicas N]

The shape of Flux's published benchmark: every app has 4 objects (a Deployment
scaled to 0, a ServiceAccount, a Service, an Ingress) under apps/<app>/ of one
repository. A real Wake (every service its own process, embedded NATS and
PostgreSQL) and a sandbox cluster at --latency-ms per API request. The apps are
registered and applied at commit 1 (the first fan-out), then commit 2 changes
every app and git-watcher's next poll finds it (the second fan-out). Prints the
time from each commit until every app has ApplySucceeded, and the peak RSS of
each service process.

With `--replicas N` (N > 1) the whole run is made twice, once with one process
per service and once with N (`start_wake(replicas=N)`), and the figures are
printed side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil

from events import new_event
from events.names import STREAM
from events.payloads import ApplicationRegistered, AppSpec
from services.demo.sample import SampleRepo
from services.wiring.credentials import load_connect_kwargs
from services.wiring.eventlog import EventLog
from services.wiring.signing import sign_as_admin
from services.wiring.supervision import RunningWake, start_wake


def app_files(app: str, generation: int) -> dict[str, str]:
    base = f"apps/{app}"
    labels = f"  labels:\n    app: {app}\n    generation: '{generation}'\n"
    return {
        f"{base}/serviceaccount.yaml": f"apiVersion: v1\nkind: ServiceAccount\nmetadata:\n"
        f"  name: {app}\n{labels}",
        f"{base}/service.yaml": f"apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\n{labels}"
        f"spec:\n  selector:\n    app: {app}\n  ports:\n    - port: 80\n",
        f"{base}/deployment.yaml": f"apiVersion: apps/v1\nkind: Deployment\nmetadata:\n"
        f"  name: {app}\n{labels}spec:\n  replicas: 0\n  selector:\n    matchLabels:\n"
        f"      app: {app}\n  template:\n    metadata:\n      labels:\n        app: {app}\n"
        f"    spec:\n      serviceAccountName: {app}\n      containers:\n"
        f"        - name: app\n          image: nginx:1.27\n",
        f"{base}/ingress.yaml": f"apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n"
        f"  name: {app}\n{labels}spec:\n  rules:\n    - host: {app}.example.com\n"
        f"      http:\n        paths:\n          - path: /\n            pathType: Prefix\n"
        f"            backend:\n              service:\n                name: {app}\n"
        f"                port:\n                  number: 80\n",
    }


class PeakRss:
    """Samples the RSS of every service process; keeps each one's peak, and its CPU time."""

    def __init__(self, running: RunningWake) -> None:
        self.running = running
        self.peaks: dict[str, int] = {}
        self.cpu: dict[str, float] = {}

    def processes(self) -> dict[str, int]:
        pids = {name: child.pid for name, child in self.running.services.items() if child.pid}
        if self.running.sandbox is not None and self.running.sandbox.pid:
            pids["sandbox"] = self.running.sandbox.pid
        pids["nats-server"] = self.running.infrastructure.endpoints.nats_pid
        return pids

    def sample(self) -> None:
        for name, pid in self.processes().items():
            try:
                process = psutil.Process(pid)
                rss = process.memory_info().rss
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            if name not in ("sandbox", "nats-server"):
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
            self.cpu[name] = times.user + times.system


async def wait_all_applied(
    log: EventLog, apps: set[str], commit: str, after: int, rss: PeakRss, timeout: float
) -> float:
    """Seconds until every app has ApplySucceeded for `commit`."""
    started = time.perf_counter()
    pending = set(apps)
    last_sample = 0.0
    async with asyncio.timeout(timeout):
        async for stored in log.read(
            subjects=[
                "wake.evt.*.ApplySucceeded",
                "wake.evt.*.ApplyFailed",
                "wake.evt.*.RenderFailed",
            ],
            from_seq=after + 1,
            follow=True,
        ):
            if time.perf_counter() - last_sample > 0.5:
                rss.sample()
                last_sample = time.perf_counter()
            event = stored.event
            if event.type != "ApplySucceeded":
                raise RuntimeError(f"{event.app}: {event.type}: {event.payload}")
            if event.payload.commit == commit:
                pending.discard(event.app)
                if not pending:
                    return time.perf_counter() - started
    raise RuntimeError("the log ended")


STAGES = ("RevisionDetected", "ManifestsRendered", "PlanCreated", "ApplyStarted", "ApplySucceeded")


async def stage_spans(
    log: EventLog, after: int, committed_at: datetime
) -> dict[str, tuple[float, float]]:
    """When the first and the last event of each stage were appended, since the commit."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    async for stored in log.read(subjects=[f"wake.evt.*.{t}" for t in STAGES], from_seq=after + 1):
        since = (stored.event.occurred_at - committed_at).total_seconds()
        first.setdefault(stored.event.type, since)
        last[stored.event.type] = since
    return {stage: (first[stage], last[stage]) for stage in STAGES if stage in first}


@dataclass
class Figures:
    """What one run measured."""

    replicas: int
    registration: float = 0.0
    fanout: float = 0.0
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


def print_figures(figures: Figures, apps: int, poll: float) -> None:
    print(f"registration of {apps} apps -> all applied: {figures.registration:.1f} s")
    print(
        f"one commit changing {apps} apps -> all applied: {figures.fanout:.1f} s "
        f"(includes up to {poll:g} s until the next poll)"
    )
    print("second fan-out, seconds since the commit (first .. last event of each stage):")
    for stage, (first, last) in figures.stages.items():
        print(f"  {stage:<18} {first:6.1f} .. {last:6.1f}")
    print("peak RSS per service, and CPU seconds used by each process over the whole run:")
    for name in sorted(figures.cpu):
        peak = f"{figures.peaks[name] / 2**20:7.1f} MiB" if name in figures.peaks else " " * 11
        print(f"  {name:<14} {peak}  {figures.cpu[name]:7.1f} s CPU")


def print_side_by_side(runs: list[Figures], apps: int) -> None:
    """The figures of each run in its own column; processes of one service summed (CPU)
    or their largest (RSS), each replica's own figures listed below."""
    heads = [f"{run.replicas} replica{'s' if run.replicas > 1 else ''}" for run in runs]
    print(f"\nside by side ({apps} apps):")
    print(f"  {'':<40}" + "".join(f"{h:>18}" for h in heads))

    def row(label: str, values: list[str]) -> None:
        print(f"  {label:<40}" + "".join(f"{v:>18}" for v in values))

    row("registration -> all applied", [f"{r.registration:.1f} s" for r in runs])
    row("second fan-out -> all applied", [f"{r.fanout:.1f} s" for r in runs])
    for stage in STAGES:
        spans = [r.stages.get(stage) for r in runs]
        row(f"  {stage} first..last", [f"{s[0]:.1f}..{s[1]:.1f} s" if s else "-" for s in spans])
    services = sorted({service_of(n) for r in runs for n in r.cpu})
    for service in services:
        cpu = [sum(c for n, c in r.cpu.items() if service_of(n) == service) for r in runs]
        row(f"{service} CPU (all processes)", [f"{c:.1f} s" for c in cpu])
    for service in services:
        peaks = [
            max((p for n, p in r.peaks.items() if service_of(n) == service), default=0)
            for r in runs
        ]
        if any(peaks):
            row(f"{service} peak RSS (largest process)", [f"{p / 2**20:.1f} MiB" for p in peaks])


def service_of(process: str) -> str:
    """`planner-2` (replica 2 of the planner) -> `planner`; `nats-server` stays itself."""
    head, _, tail = process.rpartition("-")
    return head if head and tail.isdigit() else process


def replicas_supported() -> bool:
    return "replicas" in inspect.signature(start_wake).parameters


async def run(apps: int, latency_ms: float, poll: float, timeout: float, replicas: int) -> Figures:
    figures = Figures(replicas=replicas)
    names = [f"app-{i:04d}" for i in range(apps)]
    with tempfile.TemporaryDirectory(prefix="wake-fanout-") as tmp:
        root = Path(tmp)
        repo = SampleRepo.create(root / "monorepo")
        files: dict[str, str] = {}
        for name in names:
            files.update(app_files(name, 1))
        first = repo.commit("1000 apps", files)
        # Passed only when asked for: a Wake without replicas runs one process per service.
        more = {"replicas": replicas} if replicas > 1 else {}
        running = await start_wake(
            root / "data",
            sandbox=True,
            sandbox_ready_workloads=True,
            sandbox_latency_ms=latency_ms,
            log_dir=root / "logs",
            extra_env={"WAKE_POLL_INTERVAL": str(poll), "WAKE_LOG_LEVEL": "WARNING"},
            **more,
        )
        rss = PeakRss(running)
        log = await EventLog.connect(
            running.endpoints.nats_url,
            name="bench",
            credentials=load_connect_kwargs(running.endpoints.nats_admin),
        )
        sign_as_admin(log, running.data_dir, running.endpoints.admin_public_key)
        try:
            after = (await log.js.stream_info(STREAM)).state.last_seq
            registrations = [
                new_event(
                    ApplicationRegistered(
                        spec=AppSpec(repo_url=repo.url, path=f"apps/{name}", namespace="default")
                    ),
                    app=name,
                    actor="bench",
                )
                for name in names
            ]
            for i in range(0, len(registrations), 500):
                await log.append_many(registrations[i : i + 500])
            figures.registration = await wait_all_applied(
                log, set(names), first, after, rss, timeout
            )

            files = {}
            for name in names:
                files.update(app_files(name, 2))
            after = (await log.js.stream_info(STREAM)).state.last_seq
            committed_at = datetime.now(UTC)
            second = repo.commit("change every app", files)
            figures.fanout = await wait_all_applied(log, set(names), second, after, rss, timeout)
            figures.stages = await stage_spans(log, after, committed_at)
            rss.sample()
        finally:
            await log.close()
            await running.stop()
    figures.peaks, figures.cpu = rss.peaks, rss.cpu
    return figures


async def run_all(apps: int, latency_ms: float, poll: float, timeout: float, replicas: int) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"{apps} apps x 4 objects in one repository, sandbox latency {latency_ms:g} ms/request")
    runs = []
    for count in (1, replicas) if replicas > 1 else (1,):
        if replicas > 1:
            print(f"\n--- {count} process{'es' if count > 1 else ''} per service")
        figures = await run(apps, latency_ms, poll, timeout, count)
        print_figures(figures, apps, poll)
        runs.append(figures)
    if len(runs) > 1:
        print_side_by_side(runs, apps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=15.0)
    parser.add_argument("--poll", type=float, default=2.0, help="git-watcher poll interval")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="also run with this many processes per service, and print both side by side",
    )
    args = parser.parse_args()
    if args.replicas > 1 and not replicas_supported():
        parser.error("this Wake's start_wake has no replicas: run without --replicas")
    asyncio.run(run_all(args.apps, args.latency_ms, args.poll, args.timeout, args.replicas))


if __name__ == "__main__":
    main()
