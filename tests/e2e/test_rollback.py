"""Rollback, end to end: from the stored bundle, no Git needed, and it stays put (issue 5)."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.payloads import ApplySucceeded
from services.demo.sample import APP_PATH, first_commit, second_commit
from tests.e2e.harness import WakeUnderTest, running_wake
from tests.waiting import eventually


async def applied_twice(wake: WakeUnderTest, app: str) -> tuple[str, str, object]:
    """An auto-sync app applied at commit 1, then at commit 2 (which prunes the ConfigMap)."""
    repo = wake.repository(app)
    first = first_commit(repo, namespace=app)
    start = await wake.position()
    await wake.wake("app", "add", app, "--repo", repo.url, "--path", APP_PATH, "--namespace", app)
    await wake.next_event(
        app, "ApplySucceeded", after=start, where=lambda s: s.event.payload.commit == first
    )
    second = second_commit(repo)
    before = await wake.position()
    await wake.wake("sync", app)
    await wake.next_event(
        app, "ApplySucceeded", after=before, where=lambda s: s.event.payload.commit == second
    )
    return first, second, repo


async def test_a_rollback_succeeds_with_the_git_repository_deleted_from_disk(wake: WakeUnderTest):
    # Given an app applied at two commits
    first, second, repo = await applied_twice(wake, "undo")
    assert await wake.cluster_object("v1", "ConfigMap", "web-config", "undo") is None
    (first_apply,) = [
        s.event.payload.apply_id
        for s in await wake.events("undo")
        if s.event.type == "ApplySucceeded" and s.event.payload.commit == first
    ]
    # When its repository is deleted and it is rolled back to the first commit's
    # apply, named by a prefix of its id
    shutil.rmtree(repo.path)
    before = await wake.position()
    await wake.wake("rollback", "undo", "--to", first_apply[:13], "--reason", "1.1 is broken")
    # Then the first commit's bundle is applied again, marked as a rollback
    plan = await wake.next_event("undo", "PlanCreated", after=before)
    assert plan.event.payload.reason == "rollback" and plan.event.payload.commit == first
    applied = await wake.next_event("undo", "ApplySucceeded", after=before)
    payload = applied.event.payload
    assert isinstance(payload, ApplySucceeded)
    assert payload.commit == first and payload.rollback_of
    deployment = await wake.cluster_object("apps/v1", "Deployment", "web", "undo")
    assert deployment["spec"]["replicas"] == 2
    assert await wake.cluster_object("v1", "ConfigMap", "web-config", "undo") is not None
    # and the app says it stays there
    shown = json.loads((await wake.wake("app", "show", "undo", "--json")).stdout)
    assert shown["state"] == "rolled-back" and shown["applied_revision"] == first
    # and the two applied revisions compare from their bundles
    compared = json.loads(
        (await wake.wake("diff", "undo", "--from", second, "--to", first, "--json")).stdout
    )
    assert [r["name"] for r in compared["added"]] == ["web-config"]
    assert any("/spec/replicas" in c["fields"] for c in compared["changed"])


async def test_rolling_back_to_a_revision_never_applied_is_a_clear_error(wake: WakeUnderTest):
    repo = wake.repository("never")
    first_commit(repo, namespace="never")
    start = await wake.position()
    await wake.wake(
        "app", "add", "never", "--repo", repo.url, "--path", APP_PATH, "--namespace", "never"
    )
    await wake.next_event("never", "ApplySucceeded", after=start)
    unapplied = second_commit(repo)  # committed, never synced
    refused = await wake.wake("rollback", "never", "--to", unapplied, check=False)
    assert refused.returncode != 0
    assert f"{unapplied} was never applied to never" in refused.stderr
    assert [
        s.event.type for s in await wake.events("never") if s.event.type == "RollbackRequested"
    ] == []


async def polls_happen(wake: WakeUnderTest, count: int) -> None:
    """Wait until git-watcher has fetched its mirrors `count` more times (FETCH_HEAD rewritten)."""
    mirrors = wake.running.data_dir / "git-watcher"
    seen: set[int] = set()

    def fetched() -> bool:
        for head in mirrors.rglob("FETCH_HEAD"):
            seen.add(head.stat().st_mtime_ns)
        return len(seen) > count

    await eventually(fetched, timeout=30, what=f"{count} polls of git-watcher")


@pytest.fixture
async def polling_wake(tmp_path: Path) -> AsyncIterator[WakeUnderTest]:
    """A Wake of its own whose git-watcher polls every second."""
    async with running_wake(tmp_path, env={"WAKE_POLL_INTERVAL": "1"}) as wake:
        yield wake


async def test_a_rolled_back_auto_sync_app_stays_through_polls_until_a_new_commit_or_resume(
    polling_wake: WakeUnderTest,
):
    wake = polling_wake
    # Given an auto-sync app rolled back from commit 2 to commit 1
    first, second, repo = await applied_twice(wake, "pinned")
    before = await wake.position()
    await wake.wake("rollback", "pinned", "--to", first)
    rolled_back = await wake.next_event("pinned", "ApplySucceeded", after=before)
    assert rolled_back.event.payload.commit == first
    # When several poll intervals pass (git-watcher polls every second)
    polls_before = await wake.position()
    await polls_happen(wake, 3)
    # Then nothing moves it back to the head of the branch
    moved = [
        s
        for s in await wake.events("pinned", after=polls_before)
        if s.event.type in ("PlanCreated", "ApplyStarted")
    ]
    assert moved == []
    assert (await wake.cluster_object("apps/v1", "Deployment", "web", "pinned"))["spec"][
        "replicas"
    ] == 2
    # When a new commit arrives
    third = repo.commit(
        "web 1.2",
        {
            f"{APP_PATH}/deployment.yaml": (repo.path / APP_PATH / "deployment.yaml")
            .read_text()
            .replace("replicas: 3", "replicas: 4")
        },
    )
    forward = await wake.next_event(
        "pinned",
        "ApplySucceeded",
        after=polls_before,
        where=lambda s: s.event.payload.commit == third,
    )
    # Then the app moves forward again, no longer marked as rolled back
    assert forward.event.payload.rollback_of is None
    assert (await wake.cluster_object("apps/v1", "Deployment", "web", "pinned"))["spec"][
        "replicas"
    ] == 4
    # When it is rolled back again and then resumed without a new commit
    before = await wake.position()
    await wake.wake("rollback", "pinned", "--to", first)
    await wake.next_event(
        "pinned", "ApplySucceeded", after=before, where=lambda s: s.event.payload.commit == first
    )
    before = await wake.position()
    await wake.wake("sync", "pinned", "--resume")
    # Then it goes back to the head of its branch
    resumed = await wake.next_event(
        "pinned", "ApplySucceeded", after=before, where=lambda s: s.event.payload.commit == third
    )
    assert resumed.event.payload.rollback_of is None
    del second
