"""The renderer on real NATS and real git: a render equal to the synced bundle is marked unchanged.

The planner's and applier's events are appended as they would append them;
the renderer reads where the app stands from the log (renderer/unchanged.py).
"""

from __future__ import annotations

from pathlib import Path

from events import new_event
from events.envelope import Envelope
from events.payloads import (
    ApplyFailed,
    ApplySucceeded,
    AppSpec,
    ManifestsRendered,
    PlanCreated,
    ResourceRef,
)
from services.renderer.service import main as renderer_main
from services.wiring.eventlog import EventLog
from tests.git_watcher.repos import GitRepo, configmap
from tests.renderer.test_renderer import detect, outcome_of, register, running

INVENTORY = [ResourceRef(api_version="v1", kind="ConfigMap", name="web", namespace="shop")]


async def planned_and_applied(log: EventLog, rendered: Envelope, plan_id: str, *, ok: bool) -> None:
    """The planner's plan of `rendered`, and the applier's outcome of it."""
    payload = rendered.payload
    assert isinstance(payload, ManifestsRendered)
    plan = new_event(
        PlanCreated(
            plan_id=plan_id,
            commit=payload.commit,
            bundle_digest=payload.bundle_digest,
            changes=[],
        ),
        app="web",
        actor="service:planner",
        cause=rendered,
        key=plan_id,
    )
    await log.append(plan)
    outcome = (
        ApplySucceeded(
            apply_id=f"apply-{plan_id}",
            plan_id=plan_id,
            commit=payload.commit,
            bundle_digest=payload.bundle_digest,
            inventory=INVENTORY,
        )
        if ok
        else ApplyFailed(apply_id=f"apply-{plan_id}", plan_id=plan_id, error="the API said no")
    )
    await log.append(new_event(outcome, app="web", actor="service:applier", cause=plan))


async def test_a_comment_renders_unchanged_while_synced_and_is_planned_after_a_failed_apply(
    event_log: EventLog, tmp_path: Path
):
    repo = GitRepo(tmp_path / "shop")
    first = repo.commit("web", {"apps/web/cm.yaml": configmap("web")})
    await register(event_log, AppSpec(repo_url=repo.url, path="apps/web", namespace="shop"))
    async with running(event_log, tmp_path / "wake", "renderer", renderer_main):
        # Given the app rendered and applied at the first commit
        rendered = await outcome_of(event_log, await detect(event_log, repo, first))
        assert rendered.payload.unchanged_from is None
        assert rendered.payload.inputs == ["apps/web"]
        await planned_and_applied(event_log, rendered, "p1", ok=True)

        # When a poll finds a commit that only adds a comment
        second = repo.commit("comment", {"apps/web/cm.yaml": "# web\n" + configmap("web")})
        same = await outcome_of(event_log, await detect(event_log, repo, second))
        # Then its render is unchanged from the applied commit
        assert isinstance(same.payload, ManifestsRendered)
        assert (same.payload.commit, same.payload.unchanged_from) == (second, first)

        # When the next plan of the same bundle (a drift heal, say) fails to apply
        await planned_and_applied(event_log, rendered, "p2", ok=False)
        third = repo.commit("another", {"apps/web/cm.yaml": "# the web\n" + configmap("web")})
        again = await outcome_of(event_log, await detect(event_log, repo, third))
        # Then the identical bundle is rendered as a change: the planner plans it
        assert isinstance(again.payload, ManifestsRendered)
        assert again.payload.unchanged_from is None
