"""A real Wake under chaos: many apps in one repository, bursts of commits, processes killed.

Used by tests/chaos/test_chaos.py (at a size that fits CI) and bench/chaos.py
(larger sizes). One run:

1. a repository with `apps` apps (apps/<app>/: a ConfigMap whose data carries
   the app's generation, and a ServiceAccount), every service its own process
   supervised as `wake up --sandbox` does, the apps registered and applied;
2. `commits` commits in bursts (1 to 3 commits in quick succession, each
   changing a random subset of the apps, the next burst after a pause) while a
   killer SIGKILLs a random service process every `kill_every` seconds (the
   supervisor restarts it), and, where this Wake can survive it, one node of
   the NATS cluster and PostgreSQL once each;
3. once the commits are in and the killing has stopped: wait (bounded) until
   every app's objects in the cluster carry its last generation, every durable
   consumer has handled everything, and every app is at its latest revision in
   the log;
4. read the whole stream and check it (`invariants.assess`), then run
   `wake replay --verify`.

What a Wake can do is read off `start_wake`'s parameters (`replicas`,
`nats_cluster`, `restart_attempts` -- the last one meaning NATS and PostgreSQL
are restarted when they die): a run asks for what it wants and gets what this
Wake supports; `ChaosRun.notes` says what was left out and why. Nothing is
skipped: every check runs on whatever ran.

The run is paced by the clock on purpose (a kill every K seconds, commits
spread over time): that is the load, not a wait for a state. Every wait for a
state has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import platform
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nats.errors
import nats.js.errors

from events import new_event
from events.envelope import InvalidEvent
from events.names import STREAM
from events.payloads import ApplicationRegistered, AppSpec, ResourceRef
from services.demo.sample import SampleRepo
from services.wiring.credentials import load_connect_kwargs
from services.wiring.eventlog import EventLog
from services.wiring.kube import Kube, KubeError
from services.wiring.signing import sign_as_admin
from services.wiring.supervision import RunningWake, start_wake
from tests.chaos import invariants

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "default"
# Seconds of a quiet log and idle consumers after which an unconverged run is stuck.
QUIET = 20.0


class _Stuck(Exception):
    pass


@dataclass(frozen=True)
class Capabilities:
    """What this Wake's `start_wake` can do, read off its parameters."""

    replicas: bool
    nats_cluster: bool
    server_restarts: bool

    @classmethod
    def of_this_wake(cls) -> Capabilities:
        parameters = inspect.signature(start_wake).parameters
        return cls(
            replicas="replicas" in parameters,
            nats_cluster="nats_cluster" in parameters,
            server_restarts="restart_attempts" in parameters,
        )


@dataclass(frozen=True)
class ChaosConfig:
    apps: int = 20
    commits: int = 100
    kill_every: float = 2.0
    replicas: int = 2
    nats_cluster: int = 3
    kill_nats_node: bool = True
    kill_postgres: bool = True
    seed: int = 0
    # Mean seconds per commit: a burst of n commits is followed by a pause of
    # n * commit_every, so the commits span about commits * commit_every.
    commit_every: float = 0.5
    latency_ms: float = 5.0
    poll: float = 0.5
    converge_timeout: float = 180.0


@dataclass(frozen=True)
class Kill:
    at: float  # seconds since the first commit
    target: str
    pid: int


@dataclass
class ChaosRun:
    """What a run did and what its log says."""

    config: ChaosConfig
    capabilities: Capabilities
    replicas: int = 1
    nats_nodes: int = 1
    notes: list[str] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)
    server_restarts: dict[str, int] = field(default_factory=dict)
    bursts: int = 0
    commits_seconds: float = 0.0
    converge_seconds: float = 0.0
    converged: bool = False
    stuck: bool = False
    stale_in_cluster: list[str] = field(default_factory=list)
    undecodable: list[str] = field(default_factory=list)
    findings: invariants.Findings | None = None
    replay_code: int | None = None
    replay_output: str = ""
    seconds: float = 0.0

    @property
    def replay_passed(self) -> bool:
        return self.replay_code == 0

    def problems(self) -> list[str]:
        """Everything that broke; empty for a run that kept every invariant."""
        lines = [] if self.converged else [self.convergence()]
        lines += [f"cluster: {stale}" for stale in self.stale_in_cluster]
        lines += [f"undecodable event: {u}" for u in self.undecodable]
        if self.findings is None:
            lines.append("the log was not read")
        else:
            lines += self.findings.problems()
        if not self.replay_passed:
            lines.append(f"wake replay --verify exited {self.replay_code}:\n{self.replay_output}")
        return lines

    def convergence(self) -> str:
        if self.converged:
            return f"converged {self.converge_seconds:.1f} s after the last commit"
        if self.stuck:
            return (
                f"NOT converged: stuck {self.converge_seconds:.1f} s after the last commit "
                f"(every service up and idle, nothing appended for {QUIET:g} s)"
            )
        return f"NOT converged within {self.config.converge_timeout:g} s after the last commit"

    def report(self) -> str:
        """The run's figures, as bench/chaos.py prints them and a failed test shows them."""
        c = self.config
        by_target = Counter(kill.target for kill in self.kills)
        kills = ", ".join(f"{name} {n}" for name, n in sorted(by_target.items()))
        lines = [
            f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            f"seed {c.seed}: {c.apps} apps, {c.commits} commits in {self.bursts} bursts over "
            f"{self.commits_seconds:.1f} s, sandbox latency {c.latency_ms:g} ms/request",
            f"replicas per service: {self.replicas}, NATS nodes: {self.nats_nodes}",
            f"SIGKILLs every {c.kill_every:g} s: {len(self.kills)} ({kills or 'none'})",
            f"service restarts by the supervisor: {sum(self.restarts.values())} "
            + str(dict(sorted(self.restarts.items()))),
        ]
        if self.server_restarts:
            lines.append(f"server restarts: {dict(sorted(self.server_restarts.items()))}")
        lines += [f"note: {note}" for note in self.notes]
        lines.append(self.convergence())
        f = self.findings
        if f is not None:
            counts = f.counts
            lines += [
                f"events: {f.events} (seq {f.first_seq}..{f.last_seq}); revisions detected "
                f"{counts['RevisionDetected']}, rendered {counts['ManifestsRendered']}, plans "
                f"{counts['PlanCreated']} ({counts['PlanSuperseded']} superseded), applies "
                f"started {counts['ApplyStarted']}, succeeded {counts['ApplySucceeded']}, "
                f"failed {counts['ApplyFailed']}",
                f"apps at their latest commit: {c.apps - len(f.not_at_latest)}/{c.apps}"
                f" (cluster: {c.apps - len(self.stale_in_cluster)}/{c.apps})",
                f"regressions: {len(f.regressions)}",
                f"duplicate applies: {len(f.duplicates)}",
                f"overlapping applies: {len(f.overlaps)}",
                f"sequence gaps: {len(f.gaps)} ({f.missing} sequences missing)",
            ]
            for event_type, by_instance in sorted(f.instances.items()):
                if event_type in ("PlanCreated", "ApplyStarted"):
                    lines.append(f"{event_type} by instance: {dict(sorted(by_instance.items()))}")
        verdict = "passed" if self.replay_passed else f"FAILED (exit {self.replay_code})"
        lines.append(f"wake replay --verify: {verdict}")
        lines.append(f"duration: {self.seconds:.1f} s")
        return "\n".join(lines)


def app_names(count: int) -> list[str]:
    return [f"chaos-{i:03d}" for i in range(count)]


def app_files(app: str, generation: int) -> dict[str, str]:
    return {
        f"apps/{app}/configmap.yaml": (
            f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}\n  labels:\n"
            f"    app: {app}\ndata:\n  generation: '{generation}'\n"
        ),
        f"apps/{app}/serviceaccount.yaml": (
            f"apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {app}\n  labels:\n"
            f"    app: {app}\n"
        ),
    }


def plan_bursts(config: ChaosConfig, apps: list[str], rng: random.Random) -> list[list[list[str]]]:
    """The commits, as bursts of 1-3 commits, each commit a random subset of the apps.

    A burst's commits overlap on purpose (the subset of the first, give or
    take an app): several revisions of one app in quick succession are what
    reorders them.
    """
    bursts: list[list[list[str]]] = []
    left = config.commits
    largest = max(1, len(apps) // 4)
    while left > 0:
        size = min(left, rng.choice((1, 2, 3)))
        first = rng.sample(apps, rng.randint(1, largest))
        burst = [first]
        for _ in range(size - 1):
            subset = set(first)
            if rng.random() < 0.5:
                subset.symmetric_difference_update({rng.choice(apps)})
            burst.append(sorted(subset or {rng.choice(apps)}))
        bursts.append(burst)
        left -= size
    return bursts


class _Chaos:
    def __init__(self, config: ChaosConfig, running: RunningWake, run: ChaosRun) -> None:
        self.config = config
        self.running = running
        self.run = run
        self.rng = random.Random(config.seed)
        self.started = 0.0

    def _kill(self, target: str, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.run.kills.append(Kill(time.monotonic() - self.started, target, pid))

    async def killer(self, done: asyncio.Event) -> None:
        """A random live service every kill_every seconds; a NATS node and PostgreSQL once."""
        servers: list[str] = []
        if self.run.nats_nodes > 1 and self.config.kill_nats_node:
            servers.append("nats-server")
        if self.run.capabilities.server_restarts and self.config.kill_postgres:
            servers.append("postgres")
        ticks = 0
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.config.kill_every)
            if done.is_set():
                return
            ticks += 1
            # The servers go down a third and two thirds of the way in, so the
            # services meet both while commits are flowing.
            if servers and ticks % 3 == 0:
                server = servers.pop(0)
                endpoints = self.running.infrastructure.endpoints
                if server == "postgres":
                    self._kill("postgres", endpoints.postgres_pid)
                else:
                    nodes = list(getattr(endpoints, "nats_pids", []))
                    self._kill("nats-server", self.rng.choice(nodes))
                continue
            alive = [
                (name, child.pid)
                for name, child in sorted(self.running.services.items())
                if child.pid is not None and child.exited() is None
            ]
            if alive:
                name, pid = self.rng.choice(alive)
                self._kill(name, pid)

    async def committer(self, repo: SampleRepo, generations: dict[str, int]) -> None:
        bursts = plan_bursts(self.config, sorted(generations), self.rng)
        self.run.bursts = len(bursts)
        for burst in bursts:
            for i, apps in enumerate(burst):
                files: dict[str, str] = {}
                for app in apps:
                    generations[app] += 1
                    files.update(app_files(app, generations[app]))
                await asyncio.to_thread(repo.commit, f"chaos: {', '.join(apps)}", files)
                if i < len(burst) - 1:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(self.config.commit_every * len(burst))


async def _read_all(log: EventLog, run: ChaosRun) -> list[invariants.Logged]:
    events: list[invariants.Logged] = []
    async for seq, subject, data in log.read_raw():
        try:
            # Verified as every reader does: a forged or unsigned event counts as undecodable.
            events.append((seq, await log.open(data, seq=seq, subject=subject)))
        except InvalidEvent as exc:
            run.undecodable.append(f"seq {seq} ({subject}): {exc}")
            events.append((seq, None))  # type: ignore[arg-type]
    return events


async def _consumers_idle(log: EventLog) -> bool:
    """Every durable consumer (the services') has handled everything of its filter."""
    try:
        consumers = await log.js.consumers_info(STREAM)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return False  # a NATS node down or electing: ask again
    return all(
        info.num_pending == 0 and info.num_ack_pending == 0
        for info in consumers
        if info.config.durable_name
    )


async def _last_seq(log: EventLog) -> int:
    try:
        return (await log.js.stream_info(STREAM)).state.last_seq
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError):
        return -1


async def _stale_in_cluster(kube: Kube, generations: dict[str, int]) -> list[str]:
    stale = []
    for app, generation in sorted(generations.items()):
        ref = ResourceRef(api_version="v1", kind="ConfigMap", name=app, namespace=NAMESPACE)
        try:
            obj = await kube.get(ref)
        except KubeError as exc:
            stale.append(f"{app}: {exc}")
            continue
        live = (obj or {}).get("data", {}).get("generation")
        if live != str(generation):
            stale.append(f"{app}: generation {live} in the cluster, {generation} committed")
    return stale


async def _wait(
    what: str, check, supervising: asyncio.Task, timeout: float, every: float = 0.5
) -> bool:
    """Poll `check` until true; False after `timeout`. Raises if Wake's supervision ended."""
    deadline = time.monotonic() + timeout
    while True:
        if supervising.done():
            raise RuntimeError(f"Wake stopped while waiting for {what}: {supervising.result()}")
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every)


async def _replay_verify(data_dir: Path) -> tuple[int, str]:
    env = {
        **os.environ,
        "WAKE_DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", "replay", "--verify"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode, result.stdout + result.stderr[-2000:]


async def run_chaos(root: Path, config: ChaosConfig, *, say=print) -> ChaosRun:
    """One chaos run under `root` (repository, data dir, logs); returns what it found."""
    began = time.monotonic()
    capabilities = Capabilities.of_this_wake()
    run = ChaosRun(config=config, capabilities=capabilities)
    options: dict[str, int] = {}
    if config.replicas > 1:
        if capabilities.replicas:
            options["replicas"] = run.replicas = config.replicas
        else:
            run.notes.append(f"{config.replicas} replicas asked for; this Wake runs one")
    if config.nats_cluster > 1:
        if capabilities.nats_cluster:
            options["nats_cluster"] = run.nats_nodes = config.nats_cluster
        else:
            run.notes.append(f"a {config.nats_cluster}-node NATS cluster asked for; one node")
    if config.kill_nats_node and run.nats_nodes == 1:
        run.notes.append("no NATS node killed: there is no cluster to survive it")
    if config.kill_postgres and not capabilities.server_restarts:
        run.notes.append("PostgreSQL not killed: this Wake does not restart it")

    apps = app_names(config.apps)
    generations = dict.fromkeys(apps, 1)
    repo = SampleRepo.create(root / "repo")
    files: dict[str, str] = {}
    for app in apps:
        files.update(app_files(app, 1))
    repo.commit(f"{config.apps} apps", files)

    running = await start_wake(
        root / "data",
        sandbox=True,
        sandbox_latency_ms=config.latency_ms,
        log_dir=root / "logs",
        extra_env={
            "WAKE_POLL_INTERVAL": str(config.poll),
            "WAKE_LOG_LEVEL": "INFO",
            # The services are this tree's, wherever the run was started from
            # (an installed Wake elsewhere on the path would otherwise win).
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        },
        ready_timeout=120.0,
        **options,
    )
    stop = asyncio.Event()
    supervising = asyncio.create_task(running.supervise(stop))
    log = await EventLog.connect(
        running.endpoints.nats_url,
        name="chaos",
        credentials=load_connect_kwargs(running.endpoints.nats_admin),
    )
    sign_as_admin(log, running.data_dir, running.endpoints.admin_public_key)
    kube = await Kube.connect(kubeconfig=running.kubeconfig)
    try:
        await log.append_many(
            [
                new_event(
                    ApplicationRegistered(
                        spec=AppSpec(repo_url=repo.url, path=f"apps/{app}", namespace=NAMESPACE)
                    ),
                    app=app,
                    actor="chaos",
                )
                for app in apps
            ]
        )
        say(f"chaos: {config.apps} apps registered; waiting for their first apply")

        async def first_applied() -> bool:
            return not await _stale_in_cluster(kube, generations)

        if not await _wait("the first apply", first_applied, supervising, 120.0):
            raise RuntimeError(
                "the apps were not applied within 120 s of registering them, before any chaos: "
                + "; ".join(await _stale_in_cluster(kube, generations))
            )

        chaos = _Chaos(config, running, run)
        chaos.started = time.monotonic()
        say(f"chaos: {config.commits} commits, a SIGKILL every {config.kill_every:g} s")
        done = asyncio.Event()
        killing = asyncio.create_task(chaos.killer(done))
        try:
            await chaos.committer(repo, generations)
        finally:
            done.set()
            await killing
        run.commits_seconds = time.monotonic() - chaos.started

        settled = time.monotonic()
        apps_set = set(apps)
        quiet_since: list[tuple[int, float]] = []  # (last seq, since when) while idle

        async def converged() -> bool:
            # Every service is back (a service killed often waits out its
            # restart backoff, up to 30 s) and none has anything left to handle.
            up = all(c.exited() is None and c.is_ready() for c in running.services.values())
            idle = up and await _consumers_idle(log)
            if idle and not await _stale_in_cluster(kube, generations):
                events = await _read_all(log, run)
                run.undecodable.clear()
                decoded = [e for e in events if e[1] is not None]
                if not invariants.not_at_latest(decoded, apps_set):
                    return True
            # Stuck: every consumer idle, nothing appended for QUIET seconds, and
            # still not converged -- no poll, consumer or retry is going to move
            # it (a pending retry keeps its consumer busy). Stop waiting.
            last_seq = await _last_seq(log) if idle else -1
            if not idle or not quiet_since or quiet_since[0][0] != last_seq:
                quiet_since[:] = [(last_seq, time.monotonic())] if idle else []
                return False
            if time.monotonic() - quiet_since[0][1] > QUIET:
                raise _Stuck
            return False

        say("chaos: commits done; waiting for every app to reach its latest commit")
        try:
            run.converged = await _wait(
                "convergence", converged, supervising, config.converge_timeout, every=1.0
            )
        except _Stuck:
            run.stuck = True
        run.converge_seconds = time.monotonic() - settled
        run.stale_in_cluster = await _stale_in_cluster(kube, generations)
        events = await _read_all(log, run)
        run.findings = invariants.assess([e for e in events if e[1] is not None], apps)
        # A decoded view skips undecodable events; their sequences still count.
        run.findings.gaps = invariants.sequence_gaps(seq for seq, _ in events)
        say("chaos: checking the log; wake replay --verify")
        run.replay_code, run.replay_output = await _replay_verify(running.data_dir)
        run.restarts = {name: child.restarts for name, child in running.services.items()}
        restarts = getattr(running.infrastructure, "restarts", None)
        if callable(restarts):
            run.server_restarts = dict(restarts())
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await supervising
        await kube.close()
        await log.close()
        await running.stop()
    run.seconds = time.monotonic() - began
    return run
