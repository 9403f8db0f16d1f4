"""The renderer's "unchanged" decision (renderer/unchanged.py), with literals."""

from __future__ import annotations

import msgspec

from events.envelope import new_event
from events.payloads import (
    ApplicationRegistered,
    ApplySucceeded,
    AppSpec,
    DriftDetected,
    ManifestsRendered,
    PlanCreated,
    RenderedResource,
    ResourceRef,
)
from services.renderer.unchanged import Followed, Standing, unchanged_from

A, B = "a" * 40, "b" * 40
CM = ResourceRef(api_version="v1", kind="ConfigMap", name="web", namespace="shop")
DEPLOY = ResourceRef(api_version="apps/v1", kind="Deployment", name="web", namespace="shop")
RESOURCES = [
    RenderedResource(ref=CM, digest="1" * 64, source="base/cm.yaml:1"),
    RenderedResource(ref=DEPLOY, digest="2" * 64, source="base/deployment.yaml:1"),
]


def render(commit: str, resources=RESOURCES, unchanged: str | None = None) -> ManifestsRendered:
    return ManifestsRendered(
        commit=commit,
        bundle_digest="f" * 64,
        bundle_size=100,
        renderer="kustomize",
        resources=resources,
        unchanged_from=unchanged,
    )


def applied(commit: str, plan_id: str = "p1", rollback_of: str | None = None) -> ApplySucceeded:
    return ApplySucceeded(
        apply_id="x1",
        plan_id=plan_id,
        commit=commit,
        bundle_digest="f" * 64,
        inventory=[CM, DEPLOY],
        rollback_of=rollback_of,
    )


SYNCED_AT_A = Standing(last_render=render(A), last_applied=applied(A), last_plan_id="p1")


def test_a_poll_or_webhook_render_equal_to_the_synced_bundle_is_unchanged():
    # A comment moved the source lines: what the cluster gets is the same.
    moved = [msgspec.structs.replace(r, source=r.source + "0") for r in RESOURCES]
    for trigger in ("poll", "webhook"):
        assert unchanged_from(trigger=trigger, resources=moved, standing=SYNCED_AT_A) == A


def test_a_sync_or_a_registration_is_always_planned():
    for trigger in ("sync", "register"):
        assert unchanged_from(trigger=trigger, resources=RESOURCES, standing=SYNCED_AT_A) is None


def test_other_content_is_planned():
    changed = [RESOURCES[0], msgspec.structs.replace(RESOURCES[1], digest="3" * 64)]
    assert unchanged_from(trigger="poll", resources=changed, standing=SYNCED_AT_A) is None
    assert unchanged_from(trigger="poll", resources=RESOURCES[:1], standing=SYNCED_AT_A) is None


def test_a_chain_of_unchanged_commits_stays_unchanged_from_the_applied_one():
    after_b = Standing(
        last_render=render(B, unchanged=A), last_applied=applied(A), last_plan_id="p1"
    )
    assert unchanged_from(trigger="poll", resources=RESOURCES, standing=after_b) == A


def test_an_app_not_synced_at_that_bundle_is_planned():
    cases = {
        "nothing rendered yet": Standing(None, applied(A), "p1"),
        "never applied": Standing(render(A), None, None),
        "the last render was never applied": Standing(render(B), applied(A), "p1"),
        "a later plan failed or waits": Standing(render(A), applied(A), last_plan_id="p2"),
        "rolled back": Standing(render(A), applied(A, rollback_of="x0"), "p1"),
        "drifted since": Standing(render(A), applied(A), "p1", drifted=True),
    }
    for why, standing in cases.items():
        assert unchanged_from(trigger="poll", resources=RESOURCES, standing=standing) is None, why


def test_a_synced_drift_heal_counts_as_synced():
    healed = Standing(render(A), applied(A, plan_id="heal"), last_plan_id="heal")
    assert unchanged_from(trigger="webhook", resources=RESOURCES, standing=healed) == A


def test_the_followed_standing_is_what_the_last_events_say():
    state = Followed()
    log = [
        ApplicationRegistered(spec=AppSpec(repo_url="https://example.com/r.git", path="app")),
        render(A),
        PlanCreated(plan_id="p1", commit=A, bundle_digest="f" * 64, changes=[], prune=[]),
        applied(A),
    ]
    for seq, payload in enumerate(log, start=1):
        state.add(seq, new_event(payload, app="shop", actor="test"))
    assert state.spec is not None and state.spec.path == "app"
    assert unchanged_from(trigger="poll", resources=RESOURCES, standing=state.standing()) == A
    # A drift seen after the apply makes the app out of sync; a clean check after it clears it.
    drift = DriftDetected(bundle_digest="f" * 64, resources=[CM])
    state.add(5, new_event(drift, app="shop", actor="test"))
    assert state.standing().drifted
    state.add(6, new_event(msgspec.structs.replace(drift, resources=[]), app="shop", actor="test"))
    assert not state.standing().drifted
