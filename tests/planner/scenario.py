"""Given/When helpers for planner and applier tests: a registered app, rendered bundles, a sandbox.

Fixtures here are imported by tests/applier/conftest.py too.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from events import names
from events.bundle import Bundle, encode_bundle, ref_of, resource_digest
from events.envelope import Envelope, new_event
from events.payloads import (
    ApplicationRegistered,
    ApplySucceeded,
    AppSpec,
    ManifestsRendered,
    Payload,
    ProjectCreated,
    ProjectSpec,
    RenderedResource,
    ResourceApplied,
    ResourceRef,
)
from services.resources.labels import with_inventory_labels
from services.sandbox import Sandbox
from services.wiring.eventlog import EventLog, StoredEvent
from services.wiring.kube import Kube
from services.wiring.runtime import ServiceContext
from services.wiring.settings import Settings

APP = "shop"
REPO = "https://git.example.com/platform/shop.git"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as started:
        yield started


@pytest.fixture
def settings(sandbox: Sandbox, tmp_path: Path) -> Settings:
    return Settings(kubeconfig=str(sandbox.write_kubeconfig(tmp_path / "kubeconfig")))


@pytest.fixture
async def kube(settings: Settings) -> AsyncIterator[Kube]:
    async with await Kube.from_settings(settings) as client:
        yield client


def commit_of(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


def namespace(name: str = "shop") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def configmap(name: str, ns: str = "shop", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns},
        "data": data,
    }


def deployment(name: str = "web", ns: str = "shop", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": f"{name}:1.0"}]},
            },
        },
    }


def secret(name: str, ns: str = "shop", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "Opaque",
        "data": data,
    }


def ref(resource: dict[str, Any]) -> ResourceRef:
    return ref_of(resource)


class Scenario:
    """One app on one log and one sandbox."""

    def __init__(self, log: EventLog, settings: Settings, app: str = APP) -> None:
        self.log = log
        self.settings = settings
        self.app = app

    def context(self, name: str, **overrides: Any) -> ServiceContext:
        settings = Settings(**{**_fields(self.settings), **overrides})
        return ServiceContext(name=name, settings=settings, log=self.log)

    async def append(
        self,
        payload: Payload,
        *,
        actor: str = "tests",
        cause: Envelope | None = None,
        key: str = "",
    ) -> Envelope:
        event = new_event(payload, app=self.app, actor=actor, cause=cause, key=key)
        await self.log.append(event)
        return event

    async def register(self, *, wide: bool = False, **spec: Any) -> None:
        """Register the app; health is judged at once (no rollout waits unless a test asks).

        `wide`: in a project that allows every namespace and kind (`WIDE`), for a
        test of what an app outside the default project's bounds does.
        """
        if wide:
            await self.define_project(WIDE_PROJECT, WIDE)
            spec = {"project": WIDE_PROJECT, **spec}
        fields = {"repo_url": REPO, "namespace": "shop", "health_timeout_seconds": 0.0, **spec}
        await self.append(ApplicationRegistered(spec=AppSpec(**fields)))

    async def define_project(self, name: str, spec: ProjectSpec) -> Envelope:
        """Define project `name` as `wake project add` does (filed under `_wake`)."""
        event = new_event(
            ProjectCreated(name=name, spec=spec), app=names.SYSTEM_APP, actor="user:admin"
        )
        await self.log.append(event)
        return event

    async def render(self, resources: list[dict[str, Any]], label: str = "v1") -> Envelope:
        """Store a bundle of `resources` and announce it, as the renderer does."""
        commit = commit_of(label)
        data = encode_bundle(
            Bundle(
                app=self.app,
                repo_url=REPO,
                commit=commit,
                path=".",
                renderer="yaml",
                resources=resources,
            )
        )
        digest = await self.log.put_bundle(data)
        return await self.append(
            ManifestsRendered(
                commit=commit,
                bundle_digest=digest,
                bundle_size=len(data),
                renderer="yaml",
                resources=[
                    RenderedResource(ref=ref_of(r), digest=resource_digest(r)) for r in resources
                ],
            )
        )

    async def applied_before(self, kube: Kube, resources: list[dict[str, Any]]) -> None:
        """The cluster and the log as if Wake had applied `resources` earlier."""
        for resource in resources:
            await kube.apply(with_inventory_labels(resource, self.app))
            # What the applier records: the app created it (prune deletes nothing else).
            await self.append(
                ResourceApplied(apply_id="earlier", ref=ref_of(resource), action="created")
            )
        await self.append(
            ApplySucceeded(
                apply_id="earlier",
                plan_id="earlier",
                commit=commit_of("earlier"),
                bundle_digest="0" * 64,
                inventory=[ref_of(r) for r in resources],
            )
        )

    async def stored(self, event: Envelope) -> StoredEvent:
        """`event` as a consumer receives it: read back from the log."""
        async for stored in self.log.read(subjects=[names.subject(self.app, event.type)]):
            if stored.event.event_id == event.event_id:
                return stored
        raise AssertionError(f"{event.type} {event.event_id} is not in the log")

    async def events(self, *types: str) -> list[Envelope]:
        """The app's events of `types` (default: all), in log order."""
        subjects = [names.subject(self.app, t) for t in types] or [names.app_subjects(self.app)]
        return [stored.event async for stored in self.log.read(subjects=subjects)]

    async def last(self, event_type: str) -> Envelope:
        found = await self.events(event_type)
        assert found, f"no {event_type} for {self.app}"
        return found[-1]


WIDE_PROJECT = "wide"
# Every repository, namespace (but the cluster's own) and kind, on every context.
WIDE = ProjectSpec(
    sources=["*"], destinations=["*/*", "/*"], cluster_kinds=["*/*"], credentials=["*"]
)


def _fields(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__struct_fields__}


def types_of(events: Iterable[Envelope]) -> list[str]:
    return [event.type for event in events]
