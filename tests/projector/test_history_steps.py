"""`wake history` shows each wave and hook of an apply: a real apply on real NATS and the
emulator, folded by the projector into PostgreSQL, the CLI run as a process."""

from __future__ import annotations

import asyncio
import json

import pytest

from events.envelope import new_event
from events.payloads import (
    HookDeleted,
    HookFinished,
    ResourceApplied,
    ResourceHealth,
    ResourceRef,
    WaveCompleted,
    WaveWaiting,
)
from services.projector.journeys import apply_steps
from services.sandbox import Sandbox
from services.wiring.eventlog import EventLog
from services.wiring.kube import Kube
from services.wiring.settings import Settings
from tests.applier.test_hooks import Controllers, destination, hook, job
from tests.applier.test_service import apply, planned
from tests.planner.scenario import Scenario, configmap, kube, sandbox, settings
from tests.projector.conftest import Cli, caught_up
from tests.projector.test_projector import projector

__all__ = ["kube", "sandbox", "settings"]

JOB = ResourceRef(api_version="batch/v1", kind="Job", namespace="shop", name="migrate")
WEB = ResourceRef(api_version="apps/v1", kind="Deployment", namespace="shop", name="web")


@pytest.fixture
def scenario(event_log: EventLog, settings: Settings) -> Scenario:
    return Scenario(event_log, settings)


def test_apply_steps_are_a_line_per_wave_and_hook_in_log_order() -> None:
    payloads = [
        ResourceApplied(apply_id="a1", ref=JOB, action="created", hook="PreSync"),
        HookFinished(apply_id="a1", ref=JOB, phase="PreSync", status="Succeeded"),
        HookDeleted(apply_id="a1", ref=JOB, phase="PreSync", policy="HookSucceeded"),
        WaveCompleted(apply_id="a1", phase="PreSync", wave=0, hooks=[JOB]),
        ResourceApplied(apply_id="a1", ref=WEB, action="created"),
        WaveWaiting(
            apply_id="a1",
            phase="Sync",
            wave=0,
            waiting_for=[ResourceHealth(ref=WEB, status="Progressing", message="0 of 2 updated")],
        ),
        WaveCompleted(apply_id="a1", phase="Sync", wave=0, resources=[WEB], waited=True),
        WaveCompleted(apply_id="a2", phase="Sync", wave=0, resources=[WEB]),
    ]
    events = [new_event(p, app="shop", actor="tests") for p in payloads]
    assert apply_steps(events) == {
        "a1": [
            "PreSync wave 0: hook Job shop/migrate created",
            "PreSync wave 0: hook Job shop/migrate succeeded",
            "PreSync: hook Job shop/migrate deleted (HookSucceeded)",
            "PreSync wave 0: done (0 resources, 1 hook)",
            "Sync wave 0: waiting for Deployment shop/web (Progressing: 0 of 2 updated)",
            "Sync wave 0: done (1 resource, healthy)",
        ],
        "a2": ["Sync wave 0: done (1 resource)"],
    }


async def test_history_shows_each_hook_and_wave_of_an_apply(
    scenario: Scenario, kube: Kube, sandbox: Sandbox, event_log: EventLog, cli: Cli
) -> None:
    # Given an apply with a PreSync hook and two waves
    await scenario.register(health_timeout_seconds=30.0)
    await destination(kube)
    later = configmap("later")
    later["metadata"]["annotations"] = {"argocd.argoproj.io/sync-wave": "1"}
    migrate = hook(
        job("migrate"), "PreSync", **{"argocd.argoproj.io/hook-delete-policy": "HookSucceeded"}
    )
    approval = await planned(scenario, kube, [migrate, configmap("early"), later])
    task = asyncio.create_task(apply(scenario, kube, approval, health_interval=0.05))
    await Controllers(scenario, sandbox).run(task)
    last = await event_log.app_position("shop")
    async with projector(event_log, cli.database_url):
        await caught_up(cli.database_url, last)

    # When
    text = await cli.command("history", "shop")
    as_json = await cli.command("history", "shop", "--json")

    # Then
    assert text.returncode == 0, text.stderr
    lines = [line.strip() for line in text.stdout.splitlines()]
    start = lines.index("PreSync wave 0: hook Job shop/migrate created")
    assert lines[start : start + 6] == [
        "PreSync wave 0: hook Job shop/migrate created",
        "PreSync wave 0: hook Job shop/migrate succeeded",
        "PreSync: hook Job shop/migrate deleted (HookSucceeded)",
        "PreSync wave 0: done (0 resources, 1 hook)",
        "Sync wave 0: done (1 resource, healthy)",
        "Sync wave 1: done (1 resource)",
    ]
    entry = json.loads(as_json.stdout.splitlines()[0])
    assert entry["result"] == "applied"
    assert entry["steps"][-1] == "Sync wave 1: done (1 resource)"
