"""The renderer service on a real JetStream and real repositories: revisions in, outcomes out."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from events import new_event
from events.bundle import decode_bundle, digest, encode_bundle, ref_of, resource_digest
from events.envelope import Envelope
from events.payloads import (
    ApplicationRegistered,
    AppSpec,
    ManifestsRendered,
    RenderFailed,
    RevisionDetected,
)
from services.catalog.describe import describe
from services.git_watcher.service import main as watcher_main
from services.renderer.service import main as renderer_main
from services.wiring.eventlog import EventLog
from services.wiring.runtime import ServiceContext
from services.wiring.settings import Settings
from tests.git_watcher.repos import GitRepo, configmap
from tests.waiting import eventually

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
"""

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"


@contextlib.asynccontextmanager
async def running(log: EventLog, data_dir: Path, name: str, main) -> AsyncIterator[ServiceContext]:
    ready = data_dir / f"{name}.ready"
    ctx = ServiceContext(
        name=name,
        settings=Settings(data_dir=str(data_dir), poll_interval=3600),
        log=log,
        ready_file=ready,
    )
    task = asyncio.create_task(main(ctx))
    try:
        await eventually(lambda: ready.exists() or task.done(), what=f"{name} ready")
        assert not task.done(), task.exception()
        yield ctx
    finally:
        ctx.stop.set()
        await asyncio.wait_for(task, timeout=10)


async def register(log: EventLog, spec: AppSpec, app: str = "web") -> None:
    await log.append(new_event(ApplicationRegistered(spec=spec), app=app, actor="user:test"))


async def detect(log: EventLog, repo: GitRepo, commit: str, app: str = "web") -> Envelope:
    """A RevisionDetected as git-watcher would append it."""
    event = new_event(
        RevisionDetected(
            repo_url=repo.url,
            ref="main",
            commit=commit,
            committed_at=datetime.now(UTC),
            tree_id=repo.git("rev-parse", f"{commit}^{{tree}}"),
        ),
        app=app,
        actor="service:git-watcher",
    )
    await log.append(event)
    return event


async def outcomes(log: EventLog) -> list[Envelope]:
    subjects = ["wake.evt.*.ManifestsRendered", "wake.evt.*.RenderFailed"]
    return [stored.event async for stored in log.read(subjects=subjects)]


async def outcome_of(log: EventLog, cause: Envelope) -> Envelope:
    found: list[Envelope] = []

    async def arrived() -> bool:
        found[:] = [e for e in await outcomes(log) if e.causation_id == cause.event_id]
        return bool(found)

    await eventually(arrived, what=f"the outcome of {cause.event_id}")
    return found[0]


async def test_a_revision_renders_into_a_stored_bundle_and_a_manifests_rendered(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    commit = repo.commit(
        "web",
        {
            "apps/web/deployment.yaml": DEPLOYMENT,
            "apps/web/config/cm.yaml": "---\n" + configmap("web-config"),
            "apps/web/ns.yaml": NAMESPACE,
            "apps/api/cm.yaml": configmap("not-mine"),
        },
    )
    await register(event_log, AppSpec(repo_url=repo.url, path="apps/web", namespace="shop"))
    async with running(event_log, tmp_path / "wake", "renderer", renderer_main):
        cause = await detect(event_log, repo, commit)
        event = await outcome_of(event_log, cause)
    rendered = event.payload
    assert isinstance(rendered, ManifestsRendered), rendered
    assert event.correlation_id == cause.correlation_id
    assert event.actor == "service:renderer"
    assert (rendered.commit, rendered.renderer) == (commit, "yaml")
    sources = {(str(r.ref), r.source) for r in rendered.resources}
    assert sources == {
        ("Deployment shop/web", "apps/web/deployment.yaml:1"),
        ("ConfigMap shop/web-config", "apps/web/config/cm.yaml:2"),
        ("Namespace shop", "apps/web/ns.yaml:1"),
    }

    data = await event_log.get_bundle(rendered.bundle_digest)
    assert digest(data) == rendered.bundle_digest
    assert len(data) == rendered.bundle_size
    bundle = decode_bundle(data)
    assert (bundle.app, bundle.commit, bundle.path, bundle.repo_url) == (
        "web",
        commit,
        "apps/web",
        repo.url,
    )
    assert encode_bundle(bundle) == data  # canonical: re-encoding changes nothing
    assert [ref_of(r) for r in bundle.resources] == [r.ref for r in rendered.resources]
    assert [resource_digest(r) for r in bundle.resources] == [r.digest for r in rendered.resources]
    assert (tmp_path / "wake" / "renderer" / "mirrors").is_dir()


async def test_broken_yaml_fails_naming_file_and_line_and_the_next_good_commit_renders(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    broken = repo.commit(
        "oops",
        {
            "deploy/deployment.yaml": DEPLOYMENT,
            "deploy/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n bad: 1\n",
        },
    )
    await register(event_log, AppSpec(repo_url=repo.url, path="deploy", namespace="shop"))
    async with running(event_log, tmp_path / "wake", "renderer", renderer_main):
        failed = await outcome_of(event_log, await detect(event_log, repo, broken))
        fixed = repo.commit("fix", {"deploy/cm.yaml": configmap("x")})
        rendered = await outcome_of(event_log, await detect(event_log, repo, fixed))
    payload = failed.payload
    assert isinstance(payload, RenderFailed), payload
    assert (payload.commit, payload.file, payload.line, payload.renderer) == (
        broken,
        "deploy/cm.yaml",
        5,
        "yaml",
    )
    # The message alone: the file and line are fields, and a summary names them once.
    assert payload.error.startswith("invalid YAML")
    summary = describe(failed)
    assert summary.count("deploy/cm.yaml") == 1
    assert f"render of {broken[:7]} failed at deploy/cm.yaml:5: invalid YAML" in summary
    assert isinstance(rendered.payload, ManifestsRendered)
    assert rendered.payload.commit == fixed
    assert len(rendered.payload.resources) == 2


async def test_symlinks_out_of_the_app_fail_and_in_path_symlinks_render(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    escaping = repo.commit(
        "link out",
        {"apps/web/cm.yaml": configmap("web"), "apps/api/secret.yaml": configmap("secret")},
        links={"apps/web/borrowed.yaml": "../api/secret.yaml"},
    )
    await register(event_log, AppSpec(repo_url=repo.url, path="apps/web", namespace="shop"))
    async with running(event_log, tmp_path / "wake", "renderer", renderer_main):
        failed = await outcome_of(event_log, await detect(event_log, repo, escaping))
        repo.git("rm", "-q", "apps/web/borrowed.yaml")
        # Hidden directories are not read themselves; links into them are.
        inside = repo.commit(
            "links in",
            {
                "apps/web/.shared/extra.yaml": configmap("extra"),
                "apps/web/.releases/v2/release.yaml": configmap("release-v2"),
            },
            links={"apps/web/extra.yaml": ".shared/extra.yaml", "apps/web/current": ".releases/v2"},
        )
        rendered = await outcome_of(event_log, await detect(event_log, repo, inside))
    assert isinstance(failed.payload, RenderFailed)
    assert failed.payload.commit == escaping
    assert failed.payload.file == "apps/web/borrowed.yaml"
    assert "leaves the app path apps/web" in failed.payload.error
    assert isinstance(rendered.payload, ManifestsRendered), rendered.payload
    assert {(r.ref.name, r.source) for r in rendered.payload.resources} == {
        ("web", "apps/web/cm.yaml:1"),
        ("extra", "apps/web/extra.yaml:1"),
        ("release-v2", "apps/web/current/release.yaml:1"),
    }


async def test_a_missing_helm_or_missing_path_is_a_render_failed(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    commit = repo.commit(
        "chart", {"chart/Chart.yaml": "name: x\n", "deploy/cm.yaml": configmap("a")}
    )
    await register(
        event_log, AppSpec(repo_url=repo.url, path="chart", renderer="helm"), app="helm-app"
    )
    await register(event_log, AppSpec(repo_url=repo.url, path="chart"), app="auto-app")
    await register(event_log, AppSpec(repo_url=repo.url, path="nowhere"), app="lost")
    async with running(event_log, tmp_path / "wake", "renderer", renderer_main):
        helm = await outcome_of(event_log, await detect(event_log, repo, commit, "helm-app"))
        auto = await outcome_of(event_log, await detect(event_log, repo, commit, "auto-app"))
        lost = await outcome_of(event_log, await detect(event_log, repo, commit, "lost"))
    assert isinstance(helm.payload, RenderFailed)
    assert "helm is not installed on the renderer" in helm.payload.error
    assert (helm.payload.renderer, helm.payload.file) == ("helm", "chart/Chart.yaml")
    assert isinstance(auto.payload, RenderFailed)
    assert (auto.payload.renderer, auto.payload.file) == ("helm", "chart/Chart.yaml")
    assert isinstance(lost.payload, RenderFailed)
    assert "the app path nowhere does not exist" in lost.payload.error


async def test_a_kustomize_app_renders_and_a_slow_jsonnet_app_fails_on_the_timeout(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    commit = repo.commit(
        "kustomize and jsonnet",
        {
            "base/kustomization.yaml": "resources: [deployment.yaml]\n",
            "base/deployment.yaml": DEPLOYMENT,
            "apps/web/kustomization.yaml": "resources: [../../base]\nnameSuffix: -prod\n",
            "apps/slow/main.jsonnet": (
                "local f(n) = if n < 2 then n else f(n - 1) + f(n - 2); { x: f(60) }\n"
            ),
        },
    )
    await register(event_log, AppSpec(repo_url=repo.url, path="apps/web", namespace="shop"))
    await register(event_log, AppSpec(repo_url=repo.url, path="apps/slow"), app="slow")
    ctx = ServiceContext(
        name="renderer",
        settings=Settings(data_dir=str(tmp_path / "wake"), render_timeout=1),
        log=event_log,
        ready_file=tmp_path / "renderer.ready",
    )
    task = asyncio.create_task(renderer_main(ctx))
    try:
        kustomized = await outcome_of(event_log, await detect(event_log, repo, commit))
        slow = await outcome_of(event_log, await detect(event_log, repo, commit, "slow"))
    finally:
        ctx.stop.set()
        await asyncio.wait_for(task, timeout=10)
    rendered = kustomized.payload
    assert isinstance(rendered, ManifestsRendered), rendered
    assert rendered.renderer == "kustomize"
    assert [(str(r.ref), r.source) for r in rendered.resources] == [
        ("Deployment shop/web-prod", "apps/web/kustomization.yaml")
    ]
    assert isinstance(slow.payload, RenderFailed)
    assert slow.payload.renderer == "jsonnet"
    assert "render timeout of 1 s" in slow.payload.error


async def test_a_folder_of_jsonnet_files_renders_and_an_empty_app_fails_unless_allowed(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    commit = repo.commit(
        "jsonnet folder and an empty app",
        {
            "apps/web/params.libsonnet": "{ name: 'web' }\n",
            "apps/web/config.jsonnet": (
                "local p = import 'params.libsonnet';\n"
                "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: p.name } }\n"
            ),
            "apps/web/deployment.jsonnet": (
                "function(replicas) { apiVersion: 'apps/v1', kind: 'Deployment', "
                "metadata: { name: 'web' }, spec: { replicas: replicas } }\n"
            ),
            "apps/empty/README.md": "to be filled\n",
        },
    )
    await register(
        event_log,
        AppSpec(
            repo_url=repo.url,
            path="apps/web",
            namespace="shop",
            jsonnet_tla_code={"replicas": "3"},
        ),
    )
    await register(event_log, AppSpec(repo_url=repo.url, path="apps/empty"), app="empty")
    await register(
        event_log, AppSpec(repo_url=repo.url, path="apps/empty", allow_empty=True), app="allowed"
    )
    async with running(event_log, tmp_path / "wake", "renderer", renderer_main):
        web = await outcome_of(event_log, await detect(event_log, repo, commit))
        empty = await outcome_of(event_log, await detect(event_log, repo, commit, "empty"))
        allowed = await outcome_of(event_log, await detect(event_log, repo, commit, "allowed"))
        assert isinstance(web.payload, ManifestsRendered), web.payload
        bundle = decode_bundle(await event_log.get_bundle(web.payload.bundle_digest))
    assert web.payload.renderer == "jsonnet"
    assert {(str(r.ref), r.source) for r in web.payload.resources} == {
        ("ConfigMap shop/web", "apps/web/config.jsonnet"),
        ("Deployment shop/web", "apps/web/deployment.jsonnet"),
    }
    deployment = next(r for r in bundle.resources if r["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert isinstance(empty.payload, RenderFailed), empty.payload
    assert (empty.payload.renderer, empty.payload.file) == ("yaml", "apps/empty")
    assert "found no resources" in empty.payload.error
    assert describe(empty).count("apps/empty") == 1
    assert isinstance(allowed.payload, ManifestsRendered), allowed.payload
    assert allowed.payload.resources == []


async def test_a_commit_travels_from_git_watcher_to_a_rendered_bundle(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    commit = repo.commit("first", {"deploy/deployment.yaml": DEPLOYMENT})
    async with (
        running(event_log, tmp_path / "wake", "renderer", renderer_main),
        running(event_log, tmp_path / "wake", "git-watcher", watcher_main),
    ):
        await register(event_log, AppSpec(repo_url=repo.url, path="deploy", namespace="shop"))

        async def rendered() -> bool:
            return any(isinstance(e.payload, ManifestsRendered) for e in await outcomes(event_log))

        await eventually(rendered, what="ManifestsRendered from a watched commit")
    (event,) = await outcomes(event_log)
    assert event.payload.commit == commit
    detected = [s.event async for s in event_log.read(subjects=["wake.evt.*.RevisionDetected"])]
    assert event.causation_id == detected[0].event_id
    assert event.correlation_id == detected[0].event_id
