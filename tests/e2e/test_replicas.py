"""Two replicas of every service: each app owned by one at a time, handed over when one dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from services.demo.sample import APP_PATH, deployment_yaml, first_commit
from services.wiring import runtime
from services.wiring.consumers import partition_of
from services.wiring.eventlog import StoredEvent
from tests.e2e.harness import ROOT, WakeUnderTest, running_wake
from tests.waiting import eventually, process_gone

APPS = [f"rep{i}" for i in range(10)]
SERVICES = ["git-watcher", "renderer", "planner", "applier", "projector"]
PROJECTORS = ["projector", "projector-2"]


@pytest.fixture
async def replicated(tmp_path: Path) -> AsyncIterator[WakeUnderTest]:
    async with running_wake(
        tmp_path, env={"WAKE_POLL_INTERVAL": "1"}, replicas=2, services=SERVICES
    ) as wake:
        yield wake


def pid_of(instance: str) -> int:
    return int(instance.rsplit("-", 1)[1])


def overlapping_applies(events: list[StoredEvent]) -> list[str]:
    """Applies of one app that started before the previous one ended."""
    running: str | None = None
    overlaps = []
    for stored in events:
        if stored.event.type == "ApplyStarted":
            if running is not None:
                overlaps.append(f"seq {stored.seq} started while {running} ran")
            running = stored.event.event_id
        elif stored.event.type in ("ApplySucceeded", "ApplyFailed"):
            running = None
    return overlaps


async def applied_at(wake: WakeUnderTest, commits: dict[str, str], *, after: int) -> dict:
    """Wait until every app has an ApplySucceeded of its commit; the events, per app."""
    found = await asyncio.gather(
        *(
            wake.next_event(
                app,
                "ApplySucceeded",
                after=after,
                where=lambda s, c=commit: s.event.payload.commit == c,
                timeout=240,
            )
            for app, commit in commits.items()
        )
    )
    return dict(zip(commits, found, strict=True))


@pytest.mark.timeout(600)
async def test_two_replicas_split_the_apps_and_a_killed_one_hands_its_apps_over(
    replicated: WakeUnderTest,
):
    wake = replicated
    # Given `wake up --replicas 2`: two processes of each service, in endpoints.json
    endpoints = json.loads((wake.running.data_dir / "endpoints.json").read_text())
    assert set(endpoints["services"]) == set(SERVICES)
    assert {s: len(p) for s, p in endpoints["replicas"].items()} == {s: 2 for s in SERVICES}
    assert endpoints["services"]["planner"] == endpoints["replicas"]["planner"][0]
    # and ten apps, spread over both partitions
    assert {partition_of(app, 2) for app in APPS} == {0, 1}
    repos = {app: wake.repository(app) for app in APPS}
    commits = {app: first_commit(repos[app], namespace=app) for app in APPS}
    start = await wake.position()
    for app in APPS:
        await wake.wake(
            "app", "add", app, "--repo", repos[app].url, "--path", APP_PATH, "--namespace", app
        )
    await applied_at(wake, commits, after=start)
    # When every app gets a burst of three commits
    burst = await wake.position()
    for round_ in range(3):
        for app in APPS:
            commits[app] = repos[app].commit(
                f"replicas {round_ + 2}",
                {f"{APP_PATH}/deployment.yaml": deployment_yaml(replicas=round_ + 2, image="n:1")},
            )
    await applied_at(wake, commits, after=burst)
    # Then each app was handled by one replica of each service, both replicas had work,
    # and no two applies of one app overlapped
    owners: dict[str, dict[str, set[str]]] = {}
    for app in APPS:
        events = await wake.events(app, after=start)
        assert overlapping_applies(events) == [], app
        for stored in events:
            instance = stored.event.instance
            service = instance.rsplit("-", 2)[0] if instance else ""
            if service in ("git-watcher", "renderer", "planner", "applier"):
                owners.setdefault(service, {}).setdefault(app, set()).add(instance)
    for service, by_app in owners.items():
        assert all(len(instances) == 1 for instances in by_app.values()), (service, by_app)
        used = set().union(*by_app.values())
        assert len(used) == 2, (service, used)
        assert {pid_of(i) for i in used} == set(endpoints["replicas"][service])
    # and one projector folded while the other stood by
    projector_logs = [(wake.root / "logs" / f"{n}.log").read_text() for n in PROJECTORS]
    assert sum("standing by" in text for text in projector_logs) == 1
    assert not any("moved past sequence" in text for text in projector_logs)

    # When the first planner and the first applier are SIGKILLed (and not restarted)
    victims = {}
    for service in ("planner", "applier"):
        child = wake.running.services[service]
        child.backoff = 3600.0  # the supervisor leaves it dead for this test
        victims[service] = child.pid
        os.kill(child.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    after_kill = await wake.position()
    for app in APPS:
        commits[app] = repos[app].commit(
            "after the kill",
            {f"{APP_PATH}/deployment.yaml": deployment_yaml(replicas=5, image="n:2")},
        )
    applied = await applied_at(wake, commits, after=after_kill)
    handover = time.monotonic() - killed_at
    # Then every app, including the dead replicas' ones, is applied by the survivors
    for app in APPS:
        events = await wake.events(app, after=after_kill)
        assert overlapping_applies(events) == [], app
        for stored in events:
            if stored.event.type in ("PlanCreated", "ApplyStarted", "ApplySucceeded"):
                assert pid_of(stored.event.instance) not in victims.values(), stored.event
        assert applied[app].event.payload.commit == commits[app]
    print(f"all 10 apps applied {handover:.1f}s after one planner and one applier were killed")


async def test_wake_up_replicas_starts_two_of_each_service_and_lists_their_pids(tmp_path: Path):
    # Given `wake up --replicas 2` in the foreground
    data_dir = tmp_path / "data"
    up = subprocess.Popen(
        [
            sys.executable, "-m", "services.cli", "up", "--sandbox", "--replicas", "2",
            "--data-dir", str(data_dir), "--log-dir", str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    endpoints_file = data_dir / "endpoints.json"
    try:
        await eventually(endpoints_file.exists, timeout=120, what="endpoints.json written")
        endpoints = json.loads(endpoints_file.read_text())
        # Then every service has two processes; `services` still names the first of each
        replicas = endpoints["replicas"]
        assert set(replicas) == set(endpoints["services"]) == set(runtime.SERVICES)
        assert all(len(set(pids)) == 2 for pids in replicas.values())
        assert all(endpoints["services"][s] == pids[0] for s, pids in replicas.items())
        pids = [pid for service_pids in replicas.values() for pid in service_pids]
        assert all(psutil.pid_exists(pid) for pid in pids)
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    # and all of them are stopped with it
    assert up.returncode == 0, output
    planner = replicas["planner"]
    assert f"planner         pid {planner[0]}, {planner[1]}" in output
    await eventually(
        lambda: all(process_gone(pid) for pid in pids), timeout=10, what="every replica gone"
    )
