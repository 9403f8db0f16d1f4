"""git-watcher against real repositories and a real JetStream: what it appends, and when."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from events import names, new_event
from events.envelope import Envelope
from events.payloads import (
    ApplicationRegistered,
    ApplicationUpdated,
    AppSpec,
    ManifestsRendered,
    RevisionDetected,
    SyncRequested,
)
from services.catalog.lookup import load_registry
from services.git_watcher.polling import Watcher
from services.git_watcher.service import SYNC_CONSUMER, main
from services.wiring.eventlog import EventLog
from services.wiring.git import Mirrors, normalize_url
from services.wiring.runtime import ServiceContext
from services.wiring.settings import Settings
from tests.git_watcher.repos import GitRepo, configmap
from tests.signing import cli_env
from tests.waiting import eventually

POLL_DONE = "poll done"


async def register(log: EventLog, app: str, spec: AppSpec) -> None:
    await log.append(new_event(ApplicationRegistered(spec=spec), app=app, actor="user:test"))


async def detections(log: EventLog, app: str = "*") -> list[Envelope]:
    return [
        stored.event async for stored in log.read(subjects=[f"wake.evt.{app}.RevisionDetected"])
    ]


async def rendered(log: EventLog, app: str, inputs: list[str]) -> None:
    """The renderer's answer to the app's last detection, naming what it read."""
    last = await log.last_event(app, "RevisionDetected")
    assert last is not None
    payload = ManifestsRendered(
        commit=last.event.payload.commit,
        bundle_digest="e" * 64,
        bundle_size=1,
        renderer="yaml",
        resources=[],
        inputs=inputs,
    )
    await log.append(new_event(payload, app=app, actor="service:renderer", cause=last.event))


@contextlib.asynccontextmanager
async def watcher_running(
    log: EventLog, data_dir: Path, *, poll_interval: float = 3600.0
) -> AsyncIterator[ServiceContext]:
    ready = data_dir / "ready"
    ready.unlink(missing_ok=True)
    ctx = ServiceContext(
        name="git-watcher",
        settings=Settings(data_dir=str(data_dir), poll_interval=poll_interval),
        log=log,
        ready_file=ready,
    )
    task = asyncio.create_task(main(ctx))
    try:
        await eventually(lambda: ready.exists() or task.done(), what="git-watcher ready")
        assert not task.done(), task.exception()
        yield ctx
    finally:
        ctx.stop.set()
        await asyncio.wait_for(task, timeout=10)


def polls_done(caplog: pytest.LogCaptureFixture) -> int:
    return sum(POLL_DONE in record.getMessage() for record in caplog.records)


async def test_a_registered_apps_commit_becomes_a_revision_detected(
    event_log: EventLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="services.git_watcher.polling")
    repo = GitRepo(tmp_path / "shop")
    commit = repo.commit(
        "web: first config\n\nwith a body",
        {"apps/web/cm.yaml": configmap("web")},
        date="2025-03-04T05:06:07+02:00",
    )
    async with watcher_running(event_log, tmp_path / "wake"):
        # The start-up poll is over: what follows is the registration's own check.
        await eventually(lambda: polls_done(caplog) == 1, what="the start-up poll")
        await register(
            event_log, "web", AppSpec(repo_url=repo.url, path="apps/web", namespace="web")
        )

        async def detected() -> bool:
            return len(await detections(event_log)) == 1

        await eventually(detected, what="a RevisionDetected for web")
    event = (await detections(event_log))[0]
    payload = event.payload
    assert isinstance(payload, RevisionDetected)
    assert (payload.commit, payload.parent, payload.previous_commit) == (commit, None, None)
    assert (payload.repo_url, payload.ref, payload.trigger) == (repo.url, "main", "register")
    assert (payload.author, payload.author_email) == ("Ada Lovelace", "ada@example.com")
    assert payload.message == "web: first config\n\nwith a body\n"
    assert payload.committed_at.isoformat() == "2025-03-04T05:06:07+02:00"
    assert payload.tree_id == repo.git("rev-parse", "HEAD:apps/web")
    assert event.app == "web"
    assert event.actor == "service:git-watcher"
    assert event.correlation_id == event.event_id
    assert event.causation_id is None
    assert (tmp_path / "wake" / "git-watcher" / "mirrors").is_dir()


async def test_a_monorepo_is_fetched_once_and_only_the_changed_app_is_detected(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "mono")
    first = repo.commit(
        "two apps",
        {"apps/web/cm.yaml": configmap("web"), "apps/api/cm.yaml": configmap("api")},
    )
    for app in ("web", "api"):
        await register(event_log, app, AppSpec(repo_url=repo.url, path=f"apps/{app}"))
    registry, _ = await load_registry(event_log)
    mirrors = Mirrors(tmp_path / "mirrors")
    watcher = Watcher(log=event_log, mirrors=mirrors, actor="service:git-watcher")
    fetched = lambda: mirrors.fetches[normalize_url(repo.url)]  # noqa: E731

    assert len(await watcher.check_apps(registry.apps.values(), "poll")) == 2
    assert fetched() == 1
    # Each render read its own folder.
    for app in ("web", "api"):
        await rendered(event_log, app, [f"apps/{app}"])

    second = repo.commit("api: bump", {"apps/api/cm.yaml": configmap("api", "2")})
    appended = await watcher.check_apps(registry.apps.values(), "poll")
    assert fetched() == 2
    assert len(appended) == 1
    api = await detections(event_log, "api")
    web = await detections(event_log, "web")
    assert [e.payload.commit for e in api] == [first, second]
    assert [e.payload.commit for e in web] == [first]
    assert api[1].payload.previous_commit == first
    assert api[1].event_id == appended[0]
    await rendered(event_log, "api", ["apps/api"])

    repo.commit("docs only", {"README.md": "hello\n"})
    assert await watcher.check_apps(registry.apps.values(), "poll") == []
    assert fetched() == 3
    assert len(await detections(event_log)) == 3


async def test_an_app_is_detected_when_any_path_its_last_render_read_changed(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "podinfo")
    first = repo.commit(
        "bases and overlays",
        {
            "deploy/bases/backend/deployment.yaml": configmap("backend"),
            "deploy/overlays/dev/kustomization.yaml": "resources: [../../bases/backend]\n",
            "deploy/overlays/prod/kustomization.yaml": "resources: [../../bases/backend]\n",
            "deploy/webapp/cm.yaml": configmap("webapp"),
        },
    )
    for env in ("dev", "prod"):
        await register(event_log, env, AppSpec(repo_url=repo.url, path=f"deploy/overlays/{env}"))
    registry, _ = await load_registry(event_log)
    watcher = Watcher(log=event_log, mirrors=Mirrors(tmp_path / "mirrors"), actor="w")
    assert len(await watcher.check_apps(registry.apps.values(), "poll")) == 2
    await rendered(event_log, "dev", ["deploy/bases/backend", "deploy/overlays/dev"])
    # prod's render failed, or has not happened yet: in doubt, it is detected anyway.

    # When only the base changes
    second = repo.commit("bump", {"deploy/bases/backend/deployment.yaml": configmap("b", "2")})
    appended = await watcher.check_apps(registry.apps.values(), "webhook")
    # Then both overlays are detected at it, though neither folder changed
    assert len(appended) == 2
    assert [e.payload.commit for e in await detections(event_log, "dev")] == [first, second]
    assert [e.payload.commit for e in await detections(event_log, "prod")] == [first, second]

    # When a commit touches nothing either render read
    for env in ("dev", "prod"):
        await rendered(event_log, env, ["deploy/bases/backend", f"deploy/overlays/{env}"])
    repo.commit("webapp", {"deploy/webapp/cm.yaml": configmap("webapp", "2"), "README.md": "x"})
    # Then neither is detected
    assert await watcher.check_apps(registry.apps.values(), "poll") == []
    assert len(await detections(event_log)) == 4


async def test_sync_requested_checks_the_app_at_once(event_log: EventLog, tmp_path: Path):
    repo = GitRepo(tmp_path / "shop")
    repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    async with watcher_running(event_log, tmp_path / "wake", poll_interval=3600):
        await register(event_log, "web", AppSpec(repo_url=repo.url, path="deploy"))

        async def count_is(n: int):
            async def check() -> bool:
                return len(await detections(event_log)) == n

            return check

        await eventually(await count_is(1), what="first detection")
        second = repo.commit("two", {"deploy/cm.yaml": configmap("web", "2")})
        await event_log.append(
            new_event(SyncRequested(reason="test"), app="web", actor="user:test")
        )
        await eventually(await count_is(2), what="a detection after SyncRequested")
    latest = (await detections(event_log))[-1].payload
    assert (latest.commit, latest.trigger) == (second, "sync")


async def test_a_restarted_watcher_resumes_from_the_log(
    event_log: EventLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="services.git_watcher.polling")
    repo = GitRepo(tmp_path / "shop")
    first = repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    await register(event_log, "web", AppSpec(repo_url=repo.url, path="deploy"))
    async with watcher_running(event_log, tmp_path / "wake-1", poll_interval=0.1):

        async def one_detected() -> bool:
            return len(await detections(event_log)) == 1

        await eventually(one_detected, what="first detection")

    # Another process, another data dir: nothing but the log to go on.
    caplog.clear()
    async with watcher_running(event_log, tmp_path / "wake-2", poll_interval=0.1):
        await eventually(lambda: polls_done(caplog) >= 3, what="three polls after restart")
        assert len(await detections(event_log)) == 1
        second = repo.commit("two", {"deploy/cm.yaml": configmap("web", "2")})

        async def two_detected() -> bool:
            return len(await detections(event_log)) == 2

        await eventually(two_detected, what="second detection")
        settled = polls_done(caplog)
        await eventually(lambda: polls_done(caplog) >= settled + 2, what="two more polls")
    events = await detections(event_log)
    assert [e.payload.commit for e in events] == [first, second]
    assert events[1].payload.previous_commit == first
    assert events[1].payload.trigger == "poll"


async def test_an_unreachable_source_is_one_source_failed_per_app_and_the_others_are_watched(
    event_log: EventLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="services.git_watcher.polling")
    good = GitRepo(tmp_path / "good")
    good.commit("one", {"deploy/cm.yaml": configmap("web")})
    missing = tmp_path / "moved-away"
    await register(event_log, "ghost", AppSpec(repo_url=str(missing), path="deploy"))
    await register(event_log, "web", AppSpec(repo_url=good.url, path="deploy"))
    await register(event_log, "typo", AppSpec(repo_url=good.url, path="deploy", ref="mian"))
    async with watcher_running(event_log, tmp_path / "wake", poll_interval=0.05):
        await eventually(lambda: polls_done(caplog) >= 5, what="five polls")
    assert [e.app for e in await detections(event_log)] == ["web"]
    failures = {
        s.event.app: s.event.payload
        async for s in event_log.read(subjects=["wake.evt.*.SourceFailed"])
    }
    assert failures["ghost"].stage == "fetch"
    assert f"cannot reach repository {missing}" in failures["ghost"].error
    assert failures["typo"].stage == "ref"
    assert "ref 'mian' not found" in failures["typo"].error
    # One event per failing app, not one per failed poll.
    types = [s.event.type async for s in event_log.read() if s.event.app != "_wake"]
    assert sorted(types) == sorted(
        ["ApplicationRegistered"] * 3 + ["RevisionDetected"] + ["SourceFailed"] * 2
    )
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([m for m in errors if "ghost" in m]) == 1, errors


async def test_two_watchers_racing_on_one_change_append_one_event(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    await register(event_log, "web", AppSpec(repo_url=repo.url, path="deploy"))
    registry, _ = await load_registry(event_log)
    replicas = [
        Watcher(log=event_log, mirrors=Mirrors(tmp_path / f"replica-{i}"), actor="w")
        for i in range(3)
    ]
    await asyncio.gather(*(w.check_apps(registry.apps.values(), "poll") for w in replicas))
    repo.commit("two", {"deploy/cm.yaml": configmap("web", "2")})
    await asyncio.gather(*(w.check_apps(registry.apps.values(), "poll") for w in replicas))
    events = await detections(event_log)
    assert len(events) == 2
    assert events[1].payload.previous_commit == events[0].payload.commit


async def test_one_fetch_serves_every_app_of_a_monorepo(event_log: EventLog, tmp_path: Path):
    repo = GitRepo(tmp_path / "mono")
    apps = [f"app{i:02d}" for i in range(25)]
    repo.commit("all apps", {f"apps/{n}/cm.yaml": configmap(n) for n in apps})
    for name in apps:
        await register(event_log, name, AppSpec(repo_url=repo.url, path=f"apps/{name}"))
    # Another spelling of the same repository is still the same mirror and fetch.
    await register(
        event_log, "spelled", AppSpec(repo_url=f"file://{repo.path}/", path="apps/app00")
    )
    registry, _ = await load_registry(event_log)
    mirrors = Mirrors(tmp_path / "mirrors")
    watcher = Watcher(log=event_log, mirrors=mirrors, actor="service:git-watcher")

    assert len(await watcher.check_apps(registry.apps.values(), "poll")) == 26
    assert sum(mirrors.fetches.values()) == 1
    for name in apps:
        await rendered(event_log, name, [f"apps/{name}"])
    await rendered(event_log, "spelled", ["apps/app00"])

    changed = apps[3:6]
    repo.commit("three apps", {f"apps/{n}/cm.yaml": configmap(n, "2") for n in changed})
    appended = await watcher.check_apps(registry.apps.values(), "webhook")
    assert sum(mirrors.fetches.values()) == 2
    assert len(appended) == 3
    second = [e for e in await detections(event_log) if e.event_id in appended]
    assert sorted(e.app for e in second) == changed
    assert {e.payload.trigger for e in second} == {"webhook"}


async def sync_consumer_idle(log: EventLog) -> bool:
    info = await log.js.consumer_info(names.STREAM, SYNC_CONSUMER)
    return info.num_pending == 0 and info.num_ack_pending == 0


def wake_cli(nats_url: str, data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=Path(__file__).resolve().parents[2],
        env={
            **os.environ,
            "WAKE_NATS_URL": nats_url,
            "WAKE_DATA_DIR": str(data_dir),
            **cli_env(data_dir / "keys"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def test_sync_resume_detects_an_unchanged_head_again(
    event_log: EventLog, nats_server, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    head = repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    async with watcher_running(event_log, tmp_path / "wake"):
        await register(event_log, "web", AppSpec(repo_url=repo.url, path="deploy"))

        async def count_is(n: int) -> bool:
            return len(await detections(event_log, "web")) == n

        await eventually(lambda: count_is(1), what="first detection")

        # A plain sync of an unchanged head detects nothing.
        out = await asyncio.to_thread(wake_cli, nats_server.url, tmp_path / "cli", "sync", "web")
        assert out.startswith("sync of web requested")
        await eventually(lambda: sync_consumer_idle(event_log), what="plain sync handled")
        assert await count_is(1)

        out = await asyncio.to_thread(
            wake_cli, nats_server.url, tmp_path / "cli", "sync", "web", "--resume"
        )
        assert out.startswith("sync (resume) of web requested")
        await eventually(lambda: count_is(2), what="a detection after sync --resume")
        await eventually(lambda: sync_consumer_idle(event_log), what="resume handled")
    first, again = await detections(event_log, "web")
    assert again.payload.commit == first.payload.commit == head
    assert (again.payload.previous_commit, again.payload.trigger) == (head, "sync")
    requests = [s.event async for s in event_log.read(subjects=["wake.evt.web.SyncRequested"])]
    assert [r.payload.resume for r in requests] == [False, True]


async def test_a_changed_spec_is_detected_again_at_the_same_commit(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    head = repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    spec = AppSpec(repo_url=repo.url, path="deploy", namespace="web")
    async with watcher_running(event_log, tmp_path / "wake"):
        await register(event_log, "web", spec)

        async def count_is(n: int) -> bool:
            return len(await detections(event_log, "web")) == n

        await eventually(lambda: count_is(1), what="first detection")
        await rendered(event_log, "web", ["deploy"])
        # Another namespace renders other objects from the same commit.
        changed = msgspec.structs.replace(spec, namespace="shop")
        await event_log.append(
            new_event(
                ApplicationUpdated(spec=changed, changed=["namespace"]), app="web", actor="user:t"
            )
        )
        await eventually(lambda: count_is(2), what="a detection after the update")
    first, again = await detections(event_log, "web")
    assert again.payload.commit == first.payload.commit == head
    assert again.payload.trigger == "register"
