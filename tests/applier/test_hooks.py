"""Phases, waves and hooks on real NATS and the emulator, in the order Argo CD documents.

The emulator runs no controllers: the test plays the Job controller (a hook
Job completes, or fails, once the log says it was created) and the Deployment
controller (a rollout finishes once the log says its wave waits for it), by
writing status through the emulator as a controller would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from events.envelope import Envelope
from events.payloads import (
    ApplyFailed,
    ApplySucceeded,
    HookDeleted,
    HookFinished,
    PlanCreated,
    ResourceApplied,
    ResourceRef,
    WaveCompleted,
    WaveWaiting,
)
from services.applier.drift_watch import DriftWatch
from services.catalog.lookup import app_spec
from services.catalog.plans import PlanView
from services.cli.plans_cmd import _print_plan
from services.renderer.manifests import render
from services.sandbox import Sandbox
from services.wiring.kube import Clusters, Kube
from tests.applier.test_service import apply, planned
from tests.planner.scenario import Scenario, configmap, deployment, namespace
from tests.waiting import eventually

EXAMPLES = Path(__file__).parent / "argocd_examples"

JOURNEY = (
    ResourceApplied.event_type,
    WaveWaiting.event_type,
    WaveCompleted.event_type,
    HookFinished.event_type,
    HookDeleted.event_type,
)

JOB_COMPLETE = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
JOB_FAILED = {
    "failed": 1,
    "conditions": [
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }
    ],
}


def example(name: str) -> list[dict[str, Any]]:
    """An Argo CD example, through Wake's plain-YAML renderer."""
    files = {f"{name}.yaml": (EXAMPLES / f"{name}.yaml").read_bytes()}
    return [r.resource for r in render(files, namespace="shop")]


def hook(
    resource: dict[str, Any], phase: str, *, generate: bool = False, **annotations: str
) -> dict[str, Any]:
    metadata = resource["metadata"]
    metadata["annotations"] = {"argocd.argoproj.io/hook": phase, **annotations}
    if generate:
        metadata["generateName"] = metadata.pop("name") + "-"
    return resource


def job(name: str, ns: str = "shop") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "run", "image": "alpine:3", "command": ["true"]}],
                    "restartPolicy": "Never",
                }
            }
        },
    }


async def destination(kube: Kube) -> None:
    """The app's namespace exists before it syncs, as Argo CD's destination namespace does:
    a PreSync hook in it runs before the app's own resources are applied."""
    await kube.apply(namespace())


def rolled_out(obj: dict[str, Any]) -> dict[str, Any]:
    replicas = (obj.get("spec") or {}).get("replicas", 1)
    return {
        "observedGeneration": obj["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
    }


class Controllers:
    """The Job and Deployment controllers the emulator lacks, driven by the log's events."""

    def __init__(
        self,
        scenario: Scenario,
        sandbox: Sandbox,
        *,
        job_outcome: Callable[[ResourceRef], dict[str, Any] | None] = lambda ref: JOB_COMPLETE,
    ) -> None:
        self.scenario = scenario
        self.sandbox = sandbox
        self.job_outcome = job_outcome
        self.seen: set[str] = set()

    def react(self, event: Envelope) -> None:
        payload = event.payload
        if isinstance(payload, ResourceApplied) and payload.hook and payload.ref.kind == "Job":
            status = self.job_outcome(payload.ref)
            if status is not None:
                self.sandbox.set_status(
                    "batch/v1", "Job", payload.ref.name, status, namespace=payload.ref.namespace
                )
        if isinstance(payload, WaveWaiting):
            for waiting in payload.waiting_for:
                ref = waiting.ref
                if ref.kind in ("Deployment", "ReplicaSet", "StatefulSet"):
                    obj = self.sandbox.get(
                        ref.api_version, ref.kind, ref.name, namespace=ref.namespace
                    )
                    assert obj is not None
                    self.sandbox.set_status(
                        ref.api_version,
                        ref.kind,
                        ref.name,
                        rolled_out(obj),
                        namespace=ref.namespace,
                    )

    async def run(self, task: asyncio.Task[None]) -> None:
        """React to every new event until `task` (an apply) is over."""
        while True:
            events = await self.scenario.events(ResourceApplied.event_type, WaveWaiting.event_type)
            for event in events:
                if event.event_id not in self.seen:
                    self.seen.add(event.event_id)
                    self.react(event)
            if task.done():
                await task
                return

            async def progressed(seen: int = len(events)) -> bool:
                found = await self.scenario.events(
                    ResourceApplied.event_type, WaveWaiting.event_type
                )
                return task.done() or len(found) > seen

            await eventually(progressed, what="the apply goes on or ends")


async def sync(
    scenario: Scenario,
    kube: Kube,
    sandbox: Sandbox,
    resources: list[dict[str, Any]],
    *,
    label: str = "v1",
    job_outcome: Callable[[ResourceRef], dict[str, Any] | None] = lambda ref: JOB_COMPLETE,
) -> None:
    """Plan and apply `resources`, playing the cluster's controllers meanwhile."""
    approval = await planned(scenario, kube, resources, label=label)
    task = asyncio.create_task(apply(scenario, kube, approval, health_interval=0.05))
    await Controllers(scenario, sandbox, job_outcome=job_outcome).run(task)


def steps(events: list[Envelope]) -> list[tuple[str, ...]]:
    """The journey of an apply, compactly: what happened, in which phase and wave, to what."""
    out: list[tuple[str, ...]] = []
    for event in events:
        p = event.payload
        if isinstance(p, ResourceApplied):
            name = p.ref.name
            out.append(("applied", p.hook or "Sync", str(p.wave), p.ref.kind, name))
        elif isinstance(p, WaveCompleted):
            out.append(("wave done", p.phase, str(p.wave)))
        elif isinstance(p, HookFinished):
            out.append(("hook finished", p.phase, p.status, p.ref.name))
        elif isinstance(p, HookDeleted):
            out.append(("hook deleted", p.phase, p.policy, p.ref.name))
        elif isinstance(p, WaveWaiting):
            out.append(("waiting", p.phase, str(p.wave), *(w.ref.name for w in p.waiting_for)))
    return out


def generated(name: str, prefix: str) -> str:
    """`prefix` if `name` is a name the server generated from it, else `name`."""
    suffix = name.removeprefix(prefix)
    return prefix if suffix != name and len(suffix) == 5 else name


def named(journey: list[tuple[str, ...]], *prefixes: str) -> list[tuple[str, ...]]:
    """`journey` with generated names replaced by their generateName prefix."""
    out = []
    for step in journey:
        last = step[-1]
        for prefix in prefixes:
            last = generated(last, prefix)
        out.append((*step[:-1], last))
    return out


async def test_argo_cd_sync_waves_example_runs_in_argo_cd_order(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register(health_timeout_seconds=30.0)
    await sync(scenario, kube, sandbox, [namespace(), *example("sync-waves")])

    journey = named(
        steps(await scenario.events(*JOURNEY)),
        "upgrade-sql-schema-",
        "maintenance-page-up-",
        "maintenance-page-down-",
    )
    assert journey == [
        # Sync, wave 0: the Namespace, then Services before ReplicaSets (kind order).
        ("applied", "Sync", "0", "Namespace", "shop"),
        ("applied", "Sync", "0", "Service", "backend-svc"),
        ("applied", "Sync", "0", "ReplicaSet", "backend"),
        ("applied", "Sync", "0", "ReplicaSet", "frontend"),
        ("wave done", "Sync", "0"),
        # Sync, wave 1: the frontend Service and the maintenance-page-up Sync hook.
        ("applied", "Sync", "1", "Service", "frontend"),
        ("applied", "Sync", "1", "Job", "maintenance-page-up-"),
        ("hook finished", "Sync", "Succeeded", "maintenance-page-up-"),
        ("wave done", "Sync", "1"),
        # PostSync, once everything is synced and healthy.
        ("applied", "PostSync", "0", "Job", "maintenance-page-down-"),
        ("applied", "PostSync", "0", "Job", "upgrade-sql-schema-"),
        ("hook finished", "PostSync", "Succeeded", "maintenance-page-down-"),
        ("hook finished", "PostSync", "Succeeded", "upgrade-sql-schema-"),
        ("wave done", "PostSync", "0"),
    ]
    succeeded = (await scenario.last(ApplySucceeded.event_type)).payload
    # Hooks are no part of the inventory: never pruned, never drift.
    assert sorted(ref.name for ref in succeeded.inventory) == [
        "backend",
        "backend-svc",
        "frontend",
        "frontend",
        "shop",
    ]
    plan = (await scenario.last(PlanCreated.event_type)).payload
    hooks = {(c.ref.name, c.hook, c.wave) for c in plan.changes if c.hook}
    assert hooks == {
        ("maintenance-page-up-", "Sync", 1),
        ("maintenance-page-down-", "PostSync", 0),
        ("upgrade-sql-schema-", "PostSync", 0),
    }


async def test_argo_cd_pre_post_sync_example_runs_in_argo_cd_order(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register(health_timeout_seconds=30.0)
    await destination(kube)
    await sync(scenario, kube, sandbox, example("pre-post-sync"))

    assert steps(await scenario.events(*JOURNEY)) == [
        ("applied", "PreSync", "0", "Job", "pre-post-sync-before"),
        ("hook finished", "PreSync", "Succeeded", "pre-post-sync-before"),
        ("hook deleted", "PreSync", "HookSucceeded", "pre-post-sync-before"),
        ("wave done", "PreSync", "0"),
        ("applied", "Sync", "0", "Service", "pre-post-sync-guestbook-ui"),
        ("applied", "Sync", "0", "Deployment", "pre-post-sync-guestbook-ui"),
        # PostSync waits for a healthy app: the rollout must finish first.
        ("waiting", "Sync", "0", "pre-post-sync-guestbook-ui"),
        ("wave done", "Sync", "0"),
        ("applied", "PostSync", "0", "Job", "pre-post-sync-after"),
        ("hook finished", "PostSync", "Succeeded", "pre-post-sync-after"),
        ("hook deleted", "PostSync", "HookSucceeded", "pre-post-sync-after"),
        ("wave done", "PostSync", "0"),
    ]
    # HookSucceeded: neither Job is left behind.
    assert sandbox.objects("batch/v1", "Job", namespace="shop") == []
    # and hooks that their policy deleted are no drift.
    spec = await app_spec(scenario.log, scenario.app)
    assert spec is not None
    drift = DriftWatch(scenario.context("applier"), Clusters.serving(kube))
    assert await drift.check(scenario.app, spec) is None


async def test_argo_cd_helm_hooks_example_runs_in_argo_cd_order(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    """The rendered helm-hooks chart: helm.sh/hook and hook-weight as Argo CD reads them."""
    await scenario.register(health_timeout_seconds=30.0)
    await destination(kube)
    await sync(scenario, kube, sandbox, example("helm-hooks"))

    journey = named(steps(await scenario.events(*JOURNEY)), "upgrade-sql-schema")
    assert journey == [
        # pre-install is PreSync; its generateName has no "-", the server appends anyway.
        ("applied", "PreSync", "0", "Job", "upgrade-sql-schema"),
        ("hook finished", "PreSync", "Succeeded", "upgrade-sql-schema"),
        ("wave done", "PreSync", "0"),
        ("applied", "Sync", "0", "Service", "backend"),
        ("applied", "Sync", "0", "ReplicaSet", "backend"),
        ("wave done", "Sync", "0"),
        # helm.sh/hook-weight "2" is the wave of an ordinary resource too.
        ("applied", "Sync", "2", "Service", "frontend"),
        ("applied", "Sync", "2", "ReplicaSet", "frontend"),
        ("wave done", "Sync", "2"),
    ]
    # `helm.sh/hook: Sync` and `post-insntall` are no Helm hooks: Argo CD runs neither.
    names = {job["metadata"]["name"] for job in sandbox.objects("batch/v1", "Job")}
    assert "maint-page-up" not in names and "maint-page-down" not in names
    plan = (await scenario.last(PlanCreated.event_type)).payload
    assert {c.ref.name for c in plan.changes} == {
        "upgrade-sql-schema",
        "backend",
        "frontend",
    }


async def test_a_wave_starts_only_once_the_wave_before_is_healthy(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register(health_timeout_seconds=30.0)
    later = configmap("later")
    later["metadata"]["annotations"] = {"argocd.argoproj.io/sync-wave": "1"}
    approval = await planned(scenario, kube, [namespace(), deployment(), later])
    task = asyncio.create_task(apply(scenario, kube, approval, health_interval=0.05))

    # Given wave 0 is applied and its Deployment is still rolling out ...
    async def waiting() -> bool:
        return bool(await scenario.events(WaveWaiting.event_type))

    await eventually(waiting, what="wave 0 waits for its Deployment")
    wait = (await scenario.last(WaveWaiting.event_type)).payload
    assert (wait.phase, wait.wave) == ("Sync", 0)
    assert [(w.ref.name, w.status) for w in wait.waiting_for] == [("web", "Progressing")]
    # ... then wave 1 has not started: nothing of it in the log or the cluster.
    applied = [e.payload for e in await scenario.events(ResourceApplied.event_type)]
    assert [(a.ref.name, a.wave) for a in applied] == [("shop", 0), ("web", 0)]
    assert sandbox.get("v1", "ConfigMap", "later", namespace="shop") is None
    assert not task.done()

    # When the rollout finishes, wave 1 goes.
    web = sandbox.get("apps/v1", "Deployment", "web", namespace="shop")
    assert web is not None
    sandbox.set_status("apps/v1", "Deployment", "web", rolled_out(web), namespace="shop")
    await task
    assert steps(await scenario.events(*JOURNEY))[-4:] == [
        ("waiting", "Sync", "0", "web"),
        ("wave done", "Sync", "0"),
        ("applied", "Sync", "1", "ConfigMap", "later"),
        ("wave done", "Sync", "1"),
    ]
    assert sandbox.get("v1", "ConfigMap", "later", namespace="shop") is not None
    await scenario.last(ApplySucceeded.event_type)


async def test_a_degraded_wave_fails_the_apply_naming_the_resource_and_the_wave(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register(health_timeout_seconds=30.0)
    later = configmap("later")
    later["metadata"]["annotations"] = {"wake.dev/wave": "1"}
    approval = await planned(scenario, kube, [namespace(), deployment(), later])
    task = asyncio.create_task(apply(scenario, kube, approval, health_interval=0.05))

    async def waiting() -> bool:
        return bool(await scenario.events(WaveWaiting.event_type))

    await eventually(waiting, what="wave 0 waits for its Deployment")
    sandbox.set_status(
        "apps/v1",
        "Deployment",
        "web",
        {
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "web-1" has timed out progressing.',
                }
            ],
        },
        namespace="shop",
    )
    await task
    failed = (await scenario.last(ApplyFailed.event_type)).payload
    assert failed.resource is not None and failed.resource.name == "web"
    assert "Sync wave 0" in failed.error and "Degraded" in failed.error
    assert "timed out progressing" in failed.error
    assert sandbox.get("v1", "ConfigMap", "later", namespace="shop") is None


async def test_a_wave_that_is_not_healthy_in_time_fails_the_apply(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register(health_timeout_seconds=0.0)
    later = configmap("later")
    later["metadata"]["annotations"] = {"wake.dev/wave": "1"}
    await apply(scenario, kube, await planned(scenario, kube, [namespace(), deployment(), later]))
    failed = (await scenario.last(ApplyFailed.event_type)).payload
    assert "Sync wave 0: not done within health_timeout_seconds (0s)" in failed.error
    assert failed.resource is not None and failed.resource.name == "web"
    assert sandbox.get("v1", "ConfigMap", "later", namespace="shop") is None


async def test_generate_name_hooks_run_at_every_sync_with_new_names(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register(health_timeout_seconds=30.0)
    await destination(kube)
    migrate = hook(job("schema-migrate"), "PreSync", generate=True)
    await sync(scenario, kube, sandbox, [migrate, configmap("config", v="1")])
    await sync(scenario, kube, sandbox, [migrate, configmap("config", v="2")], label="v2")

    created = [
        e.payload.ref.name
        for e in await scenario.events(ResourceApplied.event_type)
        if e.payload.hook == "PreSync"
    ]
    assert len(created) == 2 and created[0] != created[1]
    assert all(name.startswith("schema-migrate-") for name in created)
    # generateName hooks are not deleted before the next (BeforeHookCreation finds no name).
    names = {j["metadata"]["name"] for j in sandbox.objects("batch/v1", "Job", namespace="shop")}
    assert names == set(created)
    assert len(await scenario.events(ApplySucceeded.event_type)) == 2


async def test_a_named_hook_is_deleted_before_it_is_created_again(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register(health_timeout_seconds=30.0)
    smoke = hook(job("smoke-test"), "PostSync")
    await sync(scenario, kube, sandbox, [namespace(), smoke])
    first = sandbox.get("batch/v1", "Job", "smoke-test", namespace="shop")
    await sync(scenario, kube, sandbox, [namespace(), smoke, configmap("c")], label="v2")
    second = sandbox.get("batch/v1", "Job", "smoke-test", namespace="shop")
    assert first is not None and second is not None
    assert first["metadata"]["uid"] != second["metadata"]["uid"]
    deleted = [e.payload for e in await scenario.events(HookDeleted.event_type)]
    assert [(d.ref.name, d.policy) for d in deleted] == [("smoke-test", "BeforeHookCreation")]


async def test_a_sync_fail_hook_runs_when_the_sync_fails(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register(health_timeout_seconds=30.0)
    await destination(kube)
    resources = [
        hook(job("migrate"), "PreSync"),
        hook(job("page-oncall"), "SyncFail", generate=True),
        hook(job("announce"), "PostSync"),
        configmap("config"),
    ]

    def outcome(ref: ResourceRef) -> dict[str, Any]:
        return JOB_FAILED if ref.name == "migrate" else JOB_COMPLETE

    await sync(scenario, kube, sandbox, resources, job_outcome=outcome)

    journey = named(steps(await scenario.events(*JOURNEY)), "page-oncall-")
    assert journey == [
        ("applied", "PreSync", "0", "Job", "migrate"),
        ("hook finished", "PreSync", "Failed", "migrate"),
        ("applied", "SyncFail", "0", "Job", "page-oncall-"),
        ("hook finished", "SyncFail", "Succeeded", "page-oncall-"),
        ("wave done", "SyncFail", "0"),
    ]
    failed = (await scenario.last(ApplyFailed.event_type)).payload
    assert failed.resource is not None and failed.resource.name == "migrate"
    assert "PreSync wave 0: hook" in failed.error and "backoff limit" in failed.error
    assert sandbox.get("v1", "ConfigMap", "config", namespace="shop") is None
    assert sandbox.get("batch/v1", "Job", "announce", namespace="shop") is None


async def test_the_namespace_create_namespace_adds_exists_before_presync_hooks(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # No destination(kube): the app's namespace does not exist, and the repository
    # has no Namespace; Argo CD's CreateNamespace=true makes it before PreSync.
    await scenario.register(health_timeout_seconds=30.0, create_namespace=True)
    await sync(scenario, kube, sandbox, [hook(job("migrate"), "PreSync"), configmap("config")])

    journey = steps(await scenario.events(*JOURNEY))
    assert journey[:3] == [
        ("applied", "Sync", "0", "Namespace", "shop"),
        ("applied", "PreSync", "0", "Job", "migrate"),
        ("hook finished", "PreSync", "Succeeded", "migrate"),
    ]
    assert ("applied", "Sync", "0", "ConfigMap", "config") in journey
    succeeded = (await scenario.last(ApplySucceeded.event_type)).payload
    assert sorted((ref.kind, ref.name) for ref in succeeded.inventory) == [
        ("ConfigMap", "config"),
        ("Namespace", "shop"),
    ]
    assert sandbox.get("v1", "Namespace", "shop") is not None


async def test_skip_is_neither_planned_nor_applied(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    await scenario.register()
    skipped = hook(configmap("by-hand"), "Skip")
    await sync(scenario, kube, sandbox, [namespace(), skipped, configmap("config")])
    plan = (await scenario.last(PlanCreated.event_type)).payload
    assert [c.ref.name for c in plan.changes] == ["shop", "config"]
    assert sandbox.get("v1", "ConfigMap", "by-hand", namespace="shop") is None
    succeeded = (await scenario.last(ApplySucceeded.event_type)).payload
    assert [ref.name for ref in succeeded.inventory] == ["shop", "config"]


async def test_wake_plans_shows_each_hook_with_its_phase_and_wave(
    scenario: Scenario, kube: Kube, capsys: pytest.CaptureFixture[str]
) -> None:
    await scenario.register()
    await destination(kube)
    migrate = hook(job("migrate"), "PreSync,PostSync", **{"argocd.argoproj.io/sync-wave": "-1"})
    await planned(scenario, kube, [migrate, configmap("config")])
    created = await scenario.last(PlanCreated.event_type)
    plan = created.payload
    assert [(c.ref.name, c.action, c.hook, c.wave) for c in plan.changes] == [
        ("migrate", "create", "PreSync,PostSync", -1),
        ("config", "create", "", 0),
    ]
    _print_plan(
        PlanView(
            plan_id=plan.plan_id,
            app="shop",
            seq=1,
            created_at=created.occurred_at,
            event=created,
            plan=plan,
        )
    )
    shown = capsys.readouterr().out
    assert "create    Job shop/migrate  (PreSync,PostSync hook, wave -1)" in shown
