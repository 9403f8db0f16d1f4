"""podinfo's overlays, end to end: a commit reaches every app whose render it changes.

The repository has podinfo's `deploy/` shape in small: bases per component
(`deploy/bases/backend`, `deploy/bases/frontend`), one overlay per environment
(`deploy/overlays/{dev,staging,production}`), each a kustomization naming
both bases, its namespace and a builtin label transformer. Three apps, one
per overlay. A commit changing only a base changes every overlay's objects;
a commit changing nothing they read detects nothing; a commit that changes
what they read but not what they render moves them, synced, with no plan. A
fourth app, plain YAML with a kustomization subfolder over the backend base,
follows the base the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import aiohttp

from events.payloads import ManifestsRendered
from services.demo.sample import SampleRepo
from services.wiring.eventlog import StoredEvent
from tests.e2e.harness import WakeUnderTest
from tests.waiting import eventually

ENVIRONMENTS = ("dev", "staging", "production")
# Each app by name (its namespace too) and path: the three overlays, and a plain
# YAML folder whose `backend/` subfolder is a kustomization over the same base.
APPS = {
    **{f"podinfo-{env}": f"deploy/overlays/{env}" for env in ENVIRONMENTS},
    "podinfo-site": "deploy/site",
}
JOURNEY = {
    "RevisionDetected",
    "ManifestsRendered",
    "RenderFailed",
    "PlanCreated",
    "ApplyStarted",
    "ApplySucceeded",
    "ApplyFailed",
}


def deployment(name: str, image: str, *, comment: str = "") -> str:
    return f"""\
{comment}apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  minReadySeconds: 3
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: {name}
          image: {image}
          ports: [{{name: http, containerPort: 9898}}]
"""


def service(name: str) -> str:
    return f"""\
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 9898, targetPort: http}}]
"""


def overlay(env: str) -> dict[str, str]:
    return {
        f"deploy/overlays/{env}/kustomization.yaml": f"""\
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: podinfo-{env}
resources:
  - ../../bases/backend
  - ../../bases/frontend
  - namespace.yaml
transformers:
  - labels.yaml
""",
        f"deploy/overlays/{env}/namespace.yaml": (
            f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: podinfo-{env}\n"
        ),
        f"deploy/overlays/{env}/labels.yaml": f"""\
apiVersion: builtin
kind: LabelTransformer
metadata:
  name: labels
labels:
  env: {env}
  instance: webapp
fieldSpecs:
  - path: metadata/labels
    create: true
""",
    }


def podinfo() -> dict[str, str]:
    files = {
        "README.md": "# podinfo\n",
        "deploy/bases/backend/kustomization.yaml": "resources: [service.yaml, deployment.yaml]\n",
        "deploy/bases/backend/deployment.yaml": deployment(
            "backend", "ghcr.io/stefanprodan/podinfo:6.9.0"
        ),
        "deploy/bases/backend/service.yaml": service("backend"),
        "deploy/bases/frontend/kustomization.yaml": "resources: [service.yaml, deployment.yaml]\n",
        "deploy/bases/frontend/deployment.yaml": deployment(
            "frontend", "ghcr.io/stefanprodan/podinfo:6.9.0"
        ),
        "deploy/bases/frontend/service.yaml": service("frontend"),
    }
    for env in ENVIRONMENTS:
        files.update(overlay(env))
    files.update(
        {
            "deploy/site/namespace.yaml": (
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: podinfo-site\n"
            ),
            "deploy/site/config/settings.yaml": (
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n"
                "data:\n  color: blue\n"
            ),
            "deploy/site/backend/kustomization.yaml": "resources: [../../bases/backend]\n",
        }
    )
    return files


async def push(wake: WakeUnderTest, repo: SampleRepo) -> None:
    """Post a signed GitHub push of `repo`'s main, as a forge would."""
    endpoints = json.loads((wake.running.data_dir / "endpoints.json").read_text())
    secret = Path(wake.running.webhook_secret_file).read_bytes().strip()
    body = json.dumps(
        {"ref": "refs/heads/main", "after": "0" * 40, "repository": {"clone_url": repo.url}}
    ).encode()
    headers = {
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{endpoints['webhook_url']}/github", data=body, headers=headers) as r:
            assert r.status == 202


async def applied_at(wake: WakeUnderTest, commit: str, after: int) -> None:
    for app in APPS:
        await wake.next_event(
            app,
            "ApplySucceeded",
            after=after,
            where=lambda s: s.event.payload.commit == commit,
        )


async def images(wake: WakeUnderTest, name: str, apps=APPS) -> dict[str, str]:
    """The image of Deployment `name` in each app's namespace."""
    found = {}
    for app in apps:
        obj = await wake.cluster_object("apps/v1", "Deployment", name, app)
        assert obj is not None, f"no Deployment {name} in {app}"
        found[app] = obj["spec"]["template"]["spec"]["containers"][0]["image"]
    return found


async def test_podinfo_overlays_follow_their_bases_and_only_their_bases(wake: WakeUnderTest):
    # Given podinfo's bases and three overlays, one app per overlay, and a plain
    # YAML app with a kustomization subfolder over the backend base, all applied
    repo = wake.repository("podinfo")
    first = repo.commit("podinfo: bases and overlays", podinfo())
    start = await wake.position()
    for app, path in APPS.items():
        await wake.wake("app", "add", app, "--repo", repo.url, "--path", path, "--namespace", app)
    await applied_at(wake, first, start)
    rendered = await wake.next_event("podinfo-dev", "ManifestsRendered", after=start)
    assert isinstance(rendered.event.payload, ManifestsRendered)
    assert rendered.event.payload.inputs == [
        "deploy/bases/backend",
        "deploy/bases/frontend",
        "deploy/overlays/dev",
    ]
    site = await wake.next_event("podinfo-site", "ManifestsRendered", after=start)
    assert isinstance(site.event.payload, ManifestsRendered)
    assert site.event.payload.renderer == "yaml"
    assert site.event.payload.inputs == ["deploy/bases/backend", "deploy/site"]
    assert set((await images(wake, "backend")).values()) == {"ghcr.io/stefanprodan/podinfo:6.9.0"}
    for env in ENVIRONMENTS:
        overlaid = await wake.cluster_object("apps/v1", "Deployment", "backend", f"podinfo-{env}")
        assert overlaid is not None and overlaid["metadata"]["labels"]["env"] == env

    # When a commit changes only a base (the backend's image), and the forge pushes it
    before = await wake.position()
    bumped = repo.commit(
        "backend: podinfo 6.9.1",
        {
            "deploy/bases/backend/deployment.yaml": deployment(
                "backend", "ghcr.io/stefanprodan/podinfo:6.9.1"
            )
        },
    )
    await push(wake, repo)
    # Then every app built on it applies it: each namespace runs the new image
    await applied_at(wake, bumped, before)
    assert await images(wake, "backend") == {
        app: "ghcr.io/stefanprodan/podinfo:6.9.1" for app in APPS
    }
    overlays = [f"podinfo-{env}" for env in ENVIRONMENTS]
    assert set((await images(wake, "frontend", overlays)).values()) == {
        "ghcr.io/stefanprodan/podinfo:6.9.0"
    }

    # When a commit changes a file no overlay reads, and each app is checked (a sync)
    before = await wake.position()
    repo.commit("docs", {"README.md": "# podinfo\n\nNow with overlays.\n"})
    for app in APPS:
        await wake.wake("sync", app)
    # Then the watcher's checks ran (each SyncRequested handled: fetched and compared)
    await wake.consumer_has_handled("git-watcher-sync", await wake.position())
    # and no app was detected at the new commit (health may still report meanwhile)
    for app in APPS:
        assert journey_of(await wake.events(app, after=before)) == []

    # When a commit changes what they read but not what they render (a comment in a base)
    before = await wake.position()
    commented = repo.commit(
        "backend: explain the deployment",
        {
            "deploy/bases/backend/deployment.yaml": deployment(
                "backend", "ghcr.io/stefanprodan/podinfo:6.9.1", comment="# podinfo's backend\n"
            )
        },
    )
    await push(wake, repo)
    # Then each app renders it, unchanged from the applied commit, and nothing is planned
    last_render = 0
    for app in APPS:
        detected = await wake.next_event(
            app,
            "RevisionDetected",
            after=before,
            where=lambda s: s.event.payload.commit == commented,
        )
        unchanged = await wake.next_event(app, "ManifestsRendered", after=detected.seq)
        assert unchanged.event.payload.commit == commented
        assert unchanged.event.payload.unchanged_from == bumped
        last_render = max(last_render, unchanged.seq)
    await wake.consumer_has_handled("planner", last_render)
    for app in APPS:
        journey = journey_of(await wake.events(app, after=before))
        assert journey == ["RevisionDetected", "ManifestsRendered"], journey

    # and the app shows the new revision, still synced at the applied bundle
    shown = json.loads((await wake.wake("app", "show", "podinfo-dev", "--json")).stdout)
    assert (shown["state"], shown["revision"], shown["applied_revision"]) == (
        "synced",
        commented,
        bumped,
    )
    await history_shows_unchanged(wake, "podinfo-dev", commented)


def journey_of(events: list[StoredEvent]) -> list[str]:
    """The types of a revision's journey among `events`, leaving out health and syncs."""
    return [s.event.type for s in events if s.event.type in JOURNEY]


async def history_shows_unchanged(wake: WakeUnderTest, app: str, commit: str) -> None:
    """`wake history` (from the read models, once the projector has caught up)."""

    async def newest() -> bool:
        out = (await wake.wake("history", app, "--json", "--limit", "1", check=False)).stdout
        lines = out.splitlines()
        if not lines:
            return False
        entry = json.loads(lines[0])
        return entry["commit"] == commit and entry["result"] == "unchanged"

    await eventually(newest, timeout=60, what=f"wake history {app} showing {commit[:7]} unchanged")
    text = (await wake.wake("history", app, "--limit", "1")).stdout
    assert f"{commit[:12]}  unchanged" in text
    assert "renders exactly what is applied: synced at this commit, nothing planned" in text
