"""Sources as Argo CD users expect them: the default branch, refs checked at `wake app add`,
unreadable sources as events (SourceFailed / SourceRecovered), and `wake app set`.

Real repositories (git CLI), a real JetStream, the CLI as a subprocess.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from events.envelope import Envelope
from events.payloads import (
    ApplicationRegistered,
    ApplicationUpdated,
    RevisionDetected,
    SourceFailed,
    SourceRecovered,
)
from services.catalog.lookup import app_spec, load_registry
from services.git_watcher.polling import Watcher
from services.renderer.service import render_revision
from services.wiring.eventlog import EventLog
from services.wiring.git import Mirrors
from services.wiring.settings import Settings
from tests.git_watcher.repos import GitRepo, configmap
from tests.git_watcher.test_watcher import detections, polls_done, watcher_running
from tests.signing import cli_env
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]


def wake(nats_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
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


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def events_of(log: EventLog, app: str, event_type: str) -> list[Envelope]:
    return [s.event async for s in log.read(subjects=[f"wake.evt.{app}.{event_type}"])]


def watcher(log: EventLog, tmp_path: Path) -> Watcher:
    return Watcher(log=log, mirrors=Mirrors(tmp_path / "mirrors"), actor="service:git-watcher")


async def check_all(log: EventLog, w: Watcher) -> list[str]:
    registry, _ = await load_registry(log)
    return await w.check_apps(registry.apps.values(), "poll")


async def test_an_app_added_without_ref_follows_the_default_branch_trunk(
    event_log: EventLog, nats_server, tmp_path: Path
):
    # Given a repository whose default branch is `trunk`, and another branch `main`
    repo = GitRepo(tmp_path / "shop")
    on_main = repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    repo.git("branch", "-m", "main", "trunk")
    repo.git("branch", "main")
    first = repo.commit("trunk only", {"deploy/cm.yaml": configmap("web", "trunk")})
    # When it is added without --ref
    ok(
        await asyncio.to_thread(
            wake, nats_server.url, tmp_path / "cli", "app", "add", "web",
            "--repo", repo.url, "--path", "deploy", "--namespace", "web",
        )
    )  # fmt: skip
    # Then it follows HEAD, and HEAD is trunk: its commits are detected, main's are not
    (registered,) = await events_of(event_log, "web", "ApplicationRegistered")
    assert isinstance(registered.payload, ApplicationRegistered)
    assert registered.payload.spec.ref == "HEAD"
    w = watcher(event_log, tmp_path)
    await check_all(event_log, w)
    second = repo.commit("trunk again", {"deploy/cm.yaml": configmap("web", "2")})
    repo.git("checkout", "-q", "main")
    repo.commit("main moves", {"deploy/cm.yaml": configmap("web", "main")})
    repo.git("checkout", "-q", "trunk")
    await check_all(event_log, w)
    detected = await detections(event_log, "web")
    assert [e.payload.commit for e in detected] == [first, second]
    assert on_main not in [e.payload.commit for e in detected]
    assert {e.payload.ref for e in detected} == {"HEAD"}
    # And `app list` says what it follows
    listing = ok(await asyncio.to_thread(wake, nats_server.url, tmp_path / "cli", "app", "list"))
    assert "deploy@HEAD" in listing


async def test_a_ref_that_does_not_exist_is_refused_with_the_branches_there(
    event_log: EventLog, nats_server, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    repo.git("branch", "release-1")
    common = ("app", "add", "web", "--repo", repo.url, "--path", "deploy", "--namespace", "web")

    nope = await asyncio.to_thread(wake, nats_server.url, tmp_path, *common, "--ref", "nope")
    assert nope.returncode != 0
    assert "ref 'nope' not found in repository" in nope.stderr
    assert "its branches: main, release-1" in nope.stderr

    missing_commit = await asyncio.to_thread(
        wake, nats_server.url, tmp_path, *common, "--ref", "0123456789" * 4
    )
    assert missing_commit.returncode != 0
    assert "no such commit on any branch or tag; its branches: main, release-1" in (
        missing_commit.stderr
    )

    gone = tmp_path / "gone"
    unreadable = await asyncio.to_thread(
        wake, nats_server.url, tmp_path, "app", "add", "web", "--repo", str(gone),
        "--namespace", "web",
    )  # fmt: skip
    assert unreadable.returncode != 0
    assert f"cannot reach repository {gone}" in unreadable.stderr
    # Nothing was registered by any of them.
    assert [s async for s in event_log.read() if s.event.app != "_wake"] == []


async def test_a_tag_and_a_commit_id_work_as_refs(event_log: EventLog, nats_server, tmp_path: Path):
    # Given a tag on the first commit and a later commit that no branch or tag points at
    repo = GitRepo(tmp_path / "shop")
    tagged = repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    repo.git("tag", "-a", "v1", "-m", "release one")
    middle = repo.commit("two", {"deploy/cm.yaml": configmap("web", "2")})
    repo.commit("three", {"deploy/cm.yaml": configmap("web", "3")})
    # When apps are added on the tag and on the commit id, both are accepted
    for app, ref in (("tagged", "v1"), ("pinned", middle)):
        ok(
            await asyncio.to_thread(
                wake, nats_server.url, tmp_path / "cli", "app", "add", app,
                "--repo", repo.url, "--path", "deploy", "--namespace", "web", "--ref", ref,
            )
        )  # fmt: skip
    # Then each is detected at the commit its ref names, not at the branch's head
    await check_all(event_log, watcher(event_log, tmp_path))
    assert [e.payload.commit for e in await detections(event_log, "tagged")] == [tagged]
    assert [e.payload.commit for e in await detections(event_log, "pinned")] == [middle]


async def test_a_deleted_branch_is_one_source_failed_shown_until_the_branch_is_back(
    event_log: EventLog, nats_server, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG, logger="services.git_watcher.polling")
    repo = GitRepo(tmp_path / "shop")
    head = repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    repo.git("branch", "release")
    cli = tmp_path / "cli"
    ok(
        await asyncio.to_thread(
            wake, nats_server.url, cli, "app", "add", "web", "--repo", repo.url,
            "--path", "deploy", "--namespace", "web", "--ref", "release",
        )
    )  # fmt: skip
    async with watcher_running(event_log, tmp_path / "wake", poll_interval=0.05):
        await eventually(lambda: _count(event_log, "web", "RevisionDetected", 1), what="detected")
        # When the branch is deleted
        repo.git("branch", "-D", "release")

        # Then one SourceFailed, however many polls see it
        await eventually(lambda: _count(event_log, "web", "SourceFailed", 1), what="failure")
        polls = polls_done(caplog)
        await eventually(lambda: polls_done(caplog) >= polls + 5, what="five more polls")
        (failed,) = await events_of(event_log, "web", "SourceFailed")
        assert isinstance(failed.payload, SourceFailed)
        assert (failed.payload.stage, failed.payload.ref) == ("ref", "release")
        assert failed.payload.repo_url == repo.url
        assert "ref 'release' not found" in failed.payload.error

        # shown by `wake app show` and `wake events tail`
        show = ok(await asyncio.to_thread(wake, nats_server.url, cli, "app", "show", "web"))
        assert "source-failed" in show
        assert "source error:" in show and "ref 'release' not found" in show
        tail = ok(await asyncio.to_thread(wake, nats_server.url, cli, "events", "tail"))
        assert "SourceFailed" in tail and "source unreadable (ref)" in tail

        # When the branch is back, the failure ends, once
        repo.git("branch", "release", head)
        await eventually(lambda: _count(event_log, "web", "SourceRecovered", 1), what="recovery")
        polls = polls_done(caplog)
        await eventually(lambda: polls_done(caplog) >= polls + 3, what="three more polls")
    (recovered,) = await events_of(event_log, "web", "SourceRecovered")
    assert isinstance(recovered.payload, SourceRecovered)
    assert (recovered.payload.failed_event_id, recovered.payload.commit) == (failed.event_id, head)
    assert len(await events_of(event_log, "web", "SourceFailed")) == 1
    show = ok(await asyncio.to_thread(wake, nats_server.url, cli, "app", "show", "web"))
    assert "source error:" not in show and "source-failed" not in show
    assert "SourceFailed" not in show
    # The same commit came back: nothing new to render.
    assert len(await detections(event_log, "web")) == 1


async def test_app_set_path_moves_the_app_and_its_next_revision_renders_from_there(
    event_log: EventLog, nats_server, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    repo.commit(
        "two apps", {"apps/a/cm.yaml": configmap("from-a"), "apps/b/cm.yaml": configmap("from-b")}
    )
    cli = tmp_path / "cli"
    ok(
        await asyncio.to_thread(
            wake, nats_server.url, cli, "app", "add", "web", "--repo", repo.url,
            "--path", "apps/a", "--namespace", "web",
        )
    )  # fmt: skip
    async with watcher_running(event_log, tmp_path / "wake"):
        await eventually(lambda: _count(event_log, "web", "RevisionDetected", 1), what="detected")
        # A ref that does not exist is refused by `set` as by `add`; nothing changes.
        refused = await asyncio.to_thread(
            wake, nats_server.url, cli, "app", "set", "web", "--ref", "nope"
        )
        assert refused.returncode != 0 and "its branches: main" in refused.stderr
        nothing = await asyncio.to_thread(wake, nats_server.url, cli, "app", "set", "web")
        assert nothing.returncode != 0 and "nothing to change" in nothing.stderr

        # When the path is set to apps/b
        out = ok(
            await asyncio.to_thread(
                wake, nats_server.url, cli, "app", "set", "web", "--path", "apps/b", "--self-heal"
            )
        )
        assert out.startswith("updated web: path, self_heal")
        # Then the watcher detects the app again at once, from its new path
        await eventually(lambda: _count(event_log, "web", "RevisionDetected", 2), what="again")
    (updated,) = await events_of(event_log, "web", "ApplicationUpdated")
    assert isinstance(updated.payload, ApplicationUpdated)
    assert updated.payload.changed == ["path", "self_heal"]
    assert (updated.payload.spec.path, updated.payload.spec.namespace) == ("apps/b", "web")
    assert updated.payload.spec.ref == "HEAD"  # what was not given is kept
    assert len(await events_of(event_log, "web", "ApplicationRegistered")) == 1
    first, again = await detections(event_log, "web")
    assert again.payload.tree_id == repo.git("rev-parse", "HEAD:apps/b")
    assert again.payload.tree_id != first.payload.tree_id
    # And the revision renders from apps/b
    spec = await app_spec(event_log, "web")
    assert isinstance(again.payload, RevisionDetected)
    rendered = await render_revision(
        Mirrors(tmp_path / "renderer"),
        app="web",
        spec=spec,
        revision=again.payload,
        settings=Settings(data_dir=str(tmp_path / "renderer-data")),
    )
    assert [item.resource["metadata"]["name"] for item in rendered.resources] == ["from-b"]
    # Setting what is already set appends nothing.
    same = ok(
        await asyncio.to_thread(wake, nats_server.url, cli, "app", "set", "web", "--path", "apps/b")
    )
    assert "unchanged" in same
    assert len(await events_of(event_log, "web", "ApplicationUpdated")) == 1


async def _count(log: EventLog, app: str, event_type: str, n: int) -> bool:
    return len(await events_of(log, app, event_type)) == n
