"""One example payload of every event type, of realistic size.

Used by the contract tests (every type must round-trip), by the benchmarks
(what a typical event weighs) and as documentation of what a payload holds.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from events import payloads as p


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


COMMIT = "3f1e9a4c2b7d8e6f0a1b2c3d4e5f60718293a4b5"
PARENT = "9a8b7c6d5e4f30211f0e1d2c3b4a59687766a5b4"
BUNDLE = _sha("bundle")

DEPLOYMENT = p.ResourceRef(api_version="apps/v1", kind="Deployment", name="web", namespace="shop")
SERVICE = p.ResourceRef(api_version="v1", kind="Service", name="web", namespace="shop")
CONFIGMAP = p.ResourceRef(api_version="v1", kind="ConfigMap", name="web-config", namespace="shop")
NAMESPACE = p.ResourceRef(api_version="v1", kind="Namespace", name="shop")
INVENTORY = [NAMESPACE, DEPLOYMENT, SERVICE, CONFIGMAP]

_DIFF = """\
--- live apps/v1/Deployment shop/web
+++ desired apps/v1/Deployment shop/web
@@ spec.replicas @@
-  replicas: 2
+  replicas: 3
@@ spec.template.spec.containers[name=web].image @@
-  image: registry.example.com/shop/web:1.4.2
+  image: registry.example.com/shop/web:1.5.0
"""

SPEC = p.AppSpec(
    repo_url="https://git.example.com/platform/deployments.git",
    path="apps/shop",
    ref="main",
    namespace="shop",
)

PROJECT = p.ProjectSpec(
    sources=["https://git.example.com/platform/*"],
    destinations=["prod/shop", "prod/shop-*"],
    kinds=["apps/*", "/ConfigMap", "/Service", "/Secret"],
    cluster_kinds=[],
    credentials=["platform-bot"],
    approvers=["user:grace", "user:ada"],
    separate_approver=True,
    description="the shop team's services",
)


def sample_payloads() -> list[p.Payload]:
    """A payload of every type in `PAYLOAD_TYPES`, in that order."""
    at = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)
    samples: list[p.Payload] = [
        p.ApplicationRegistered(spec=SPEC),
        p.ApplicationUpdated(spec=SPEC, changed=["auto_sync"]),
        p.ApplicationRemoved(reason="moved to another cluster"),
        p.SyncRequested(reason="wake sync shop"),
        p.RevisionDetected(
            repo_url=SPEC.repo_url,
            ref="main",
            commit=COMMIT,
            parent=PARENT,
            previous_commit=PARENT,
            author="Ada Lovelace",
            author_email="ada@example.com",
            message="shop: bump web to 1.5.0 and scale to 3 replicas",
            committed_at=at,
            tree_id=_sha("tree")[:40],
            trigger="poll",
        ),
        p.ManifestsRendered(
            commit=COMMIT,
            bundle_digest=BUNDLE,
            bundle_size=4210,
            renderer="yaml",
            resources=[
                p.RenderedResource(
                    ref=ref, digest=_sha(str(ref)), source=f"apps/shop/{ref.name}.yaml:1"
                )
                for ref in INVENTORY
            ],
            inputs=["apps/shop", "bases/shop"],
        ),
        p.RenderFailed(
            commit=COMMIT,
            error="mapping values are not allowed here",
            file="apps/shop/deployment.yaml",
            line=14,
            renderer="yaml",
        ),
        p.PlanCreated(
            plan_id="01a2164a-0000-7000-8000-000000000001",
            commit=COMMIT,
            bundle_digest=BUNDLE,
            changes=[
                p.ResourceChange(ref=DEPLOYMENT, action="update", diff=_DIFF),
                p.ResourceChange(ref=SERVICE, action="unchanged"),
                p.ResourceChange(ref=NAMESPACE, action="unchanged"),
            ],
            prune=[CONFIGMAP],
        ),
        p.PlanSuperseded(
            plan_id="01a2164a-0000-7000-8000-000000000001",
            superseded_by="01a2164a-0000-7000-8000-000000000002",
        ),
        p.ApprovalRequested(
            plan_id="01a2164a-0000-7000-8000-000000000001", summary="1 to update, 1 to prune"
        ),
        p.PlanApproved(
            plan_id="01a2164a-0000-7000-8000-000000000001",
            via="chat",
            display_name="Ana",
            channel="team",
            message_ref="$Hk3a9YzL1bUrgYk2:example.org",
        ),
        p.PlanRejected(
            plan_id="01a2164a-0000-7000-8000-000000000001", reason="not during the freeze"
        ),
        p.ApplyStarted(
            apply_id="01a2164a-0000-7000-8000-0000000000a1",
            plan_id="01a2164a-0000-7000-8000-000000000001",
            commit=COMMIT,
            bundle_digest=BUNDLE,
        ),
        p.ResourceApplied(
            apply_id="01a2164a-0000-7000-8000-0000000000a1",
            ref=DEPLOYMENT,
            action="configured",
            digest=_sha(str(DEPLOYMENT)),
        ),
        p.ApplySucceeded(
            apply_id="01a2164a-0000-7000-8000-0000000000a1",
            plan_id="01a2164a-0000-7000-8000-000000000001",
            commit=COMMIT,
            bundle_digest=BUNDLE,
            inventory=INVENTORY[:3],
        ),
        p.ApplyFailed(
            apply_id="01a2164a-0000-7000-8000-0000000000a1",
            plan_id="01a2164a-0000-7000-8000-000000000001",
            error='Deployment.apps "web" is invalid: spec.replicas: must be >= 0',
            resource=DEPLOYMENT,
            status_code=422,
        ),
        p.HealthChanged(
            status="Progressing",
            resources=[
                p.ResourceHealth(ref=DEPLOYMENT, status="Progressing", message="2 of 3 updated"),
                p.ResourceHealth(ref=SERVICE, status="Healthy"),
            ],
            apply_id="01a2164a-0000-7000-8000-0000000000a1",
        ),
        p.DriftDetected(
            bundle_digest=BUNDLE,
            resources=[p.DriftedResource(ref=DEPLOYMENT, fields=["/spec/replicas"])],
        ),
        p.RollbackRequested(target=PARENT, reason="5xx after 1.5.0"),
        p.NotificationSent(
            channel="webhook:ops",
            about_event_id="01a2164a-0000-7000-8000-0000000000a2",
            about_type="ApplySucceeded",
            status_code=200,
        ),
        p.NotificationFailed(
            channel="webhook:ops",
            about_event_id="01a2164a-0000-7000-8000-0000000000a2",
            about_type="ApplySucceeded",
            attempts=5,
            error="HTTP 503 from https://hooks.example.com/wake",
        ),
        p.EventRejected(
            stream_seq=42,
            subject="wake.evt.shop.PlanCreated",
            consumer="planner",
            error="invalid envelope: Object missing required field `app`",
            size=17,
            excerpt="{not json at all",
        ),
        p.ApplyRetryScheduled(
            plan_id="01a2164a-0000-7000-8000-000000000001",
            after_apply_id="01a2164a-0000-7000-8000-0000000000a1",
            attempt=2,
            due_at=datetime(2026, 11, 26, 9, 30, 5, tzinfo=UTC),
            delay_seconds=5.0,
            approval_id="01a2164a-0000-7000-8000-0000000000a0",
        ),
        p.ResourceDeleted(removal_id="01a2164a-0000-7000-8000-0000000000d1", ref=DEPLOYMENT),
        p.SourceFailed(
            repo_url=SPEC.repo_url,
            ref="release-1.4",
            error="ref 'release-1.4' not found in repository "
            "https://git.example.com/platform/deployments.git: "
            "it is neither a branch, a tag nor a commit id there",
            stage="ref",
            path=SPEC.path,
        ),
        p.SourceRecovered(
            repo_url=SPEC.repo_url,
            ref="release-1.4",
            commit=COMMIT,
            failed_event_id="01a2164a-0000-7000-8000-0000000000b1",
        ),
        p.WaveWaiting(
            apply_id="01a2164a-0000-7000-8000-0000000000a1",
            phase="Sync",
            wave=0,
            waiting_for=[
                p.ResourceHealth(ref=DEPLOYMENT, status="Progressing", message="1 of 3 updated")
            ],
        ),
        p.WaveCompleted(
            apply_id="01a2164a-0000-7000-8000-0000000000a1",
            phase="Sync",
            wave=0,
            resources=[DEPLOYMENT, SERVICE],
            waited=True,
        ),
        p.HookFinished(
            apply_id="01a2164a-0000-7000-8000-0000000000a1",
            ref=p.ResourceRef(
                api_version="batch/v1", kind="Job", namespace="shop", name="schema-migrate-x7k2p"
            ),
            phase="PreSync",
            status="Succeeded",
        ),
        p.HookDeleted(
            apply_id="01a2164a-0000-7000-8000-0000000000a1",
            ref=p.ResourceRef(api_version="batch/v1", kind="Job", namespace="shop", name="migrate"),
            phase="PreSync",
            policy="HookSucceeded",
        ),
        p.PlanBlocked(
            plan_id="01a2164a-0000-7000-8000-000000000001",
            errors=[
                p.ResourceError(
                    ref=DEPLOYMENT,
                    error='dry run refused: 422 Invalid: Deployment.apps "web" is invalid: '
                    "spec.replicas: must be >= 0",
                ),
                p.ResourceError(
                    ref=CONFIGMAP,
                    error='ConfigMap shop/web-config is managed by app "billing" '
                    '(label wake.dev/app), not by "shop"; register shop with --adopt '
                    "to take it over",
                ),
            ],
            summary="1 to update, 1 to prune, 2 with errors",
        ),
        p.ProjectCreated(name="shop", spec=PROJECT),
        p.ProjectUpdated(name="shop", spec=PROJECT, changed=["approvers", "separate_approver"]),
        p.ProjectRemoved(name="shop", reason="the shop team moved to another cluster"),
        p.ApprovalAccepted(
            plan_id="01a2164a-0000-7000-8000-000000000001",
            approval_id="01a2164a-0000-7000-8000-0000000000b1",
            approver="user:grace",
            reason="user:grace is an approver of project 'shop'",
        ),
        p.ApprovalRefused(
            plan_id="01a2164a-0000-7000-8000-000000000001",
            approval_id="01a2164a-0000-7000-8000-0000000000b2",
            approver="user:ada",
            reason="user:ada wrote commit 3f1e9a4c2b7d, and project 'shop' wants a separate "
            "approver (--separate-approver)",
        ),
        p.KeyRegistered(
            key_id="5f3c9a0d2e7b8c41",
            identity="user:ana",
            role="operator",
            public_key="11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        ),
        p.KeyRevoked(key_id="5f3c9a0d2e7b8c41", identity="user:ana", reason="rotated"),
        p.TokenCreated(name="ci-bot", role="approver", apps="shop-*", digest=_sha("a token")),
        p.TokenRevoked(name="ci-bot", reason="the CI moved to its own key"),
        p.ChatCommandRefused(
            requester="matrix:@bob:example.org",
            command="approve 01a2164a",
            reason="matrix:@bob:example.org may not approve plans of app 'shop': its approvers "
            "are matrix:@ana:example.org, group:release-managers",
            display_name="Bob",
            channel="team",
            message_ref="$Vq2b8XzK0aTqfXj1:example.org",
            plan_id="01a2164a-0000-7000-8000-000000000001",
        ),
    ]
    assert [type(s) for s in samples] == list(p.PAYLOAD_TYPES)
    return samples
