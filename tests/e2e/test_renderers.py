"""A kustomize app, from an overlay in git to objects in the cluster (Given / When / Then)."""

from __future__ import annotations

from events.payloads import ManifestsRendered
from tests.e2e.harness import WakeUnderTest

NAMESPACE = "apiVersion: v1\nkind: Namespace\nmetadata: {name: kustomized}\n"

BASE_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: nginx:1.27
"""


async def test_a_kustomize_overlay_over_an_in_repository_base_is_applied(wake: WakeUnderTest):
    # Given a repository with a base and a production overlay of it
    repo = wake.repository("kustomized")
    commit = repo.commit(
        "base and overlay",
        {
            "base/kustomization.yaml": "resources: [namespace.yaml, deployment.yaml]\n",
            "base/namespace.yaml": NAMESPACE,
            "base/deployment.yaml": BASE_DEPLOYMENT,
            "overlays/prod/kustomization.yaml": """\
resources: [../../base]
namePrefix: prod-
patches:
  - patch: |
      apiVersion: apps/v1
      kind: Deployment
      metadata: {name: web}
      spec: {replicas: 3}
configMapGenerator:
  - name: settings
    literals: [color=blue]
    options: {disableNameSuffixHash: true}
""",
        },
    )
    start = await wake.position()
    # When the overlay is registered as an app (its renderer detected)
    await wake.wake(
        "app",
        "add",
        "kustomized",
        "--repo",
        repo.url,
        "--path",
        "overlays/prod",
        "--namespace",
        "kustomized",
    )
    # Then kustomize renders it
    rendered = await wake.next_event("kustomized", "ManifestsRendered", after=start)
    payload = rendered.event.payload
    assert isinstance(payload, ManifestsRendered)
    assert (payload.commit, payload.renderer) == (commit, "kustomize")
    assert sorted(str(r.ref) for r in payload.resources) == [
        "ConfigMap kustomized/prod-settings",
        "Deployment kustomized/prod-web",
        "Namespace kustomized",
    ]
    # and the cluster holds the overlay's objects
    await wake.next_event(
        "kustomized",
        "ApplySucceeded",
        after=rendered.seq,
        where=lambda s: s.event.payload.commit == commit,
    )
    deployment = await wake.cluster_object("apps/v1", "Deployment", "prod-web", "kustomized")
    assert deployment is not None and deployment["spec"]["replicas"] == 3
    settings = await wake.cluster_object("v1", "ConfigMap", "prod-settings", "kustomized")
    assert settings is not None and settings["data"] == {"color": "blue"}


GUESTBOOK_TLA = """\
function(name='guestbook-ui', replicas=1)
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: name, labels: { app: name } },
    spec: {
      replicas: replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: name, image: 'nginx:1.27' }] },
      },
    },
  }
"""


async def test_a_folder_of_jsonnet_files_with_a_code_argument_is_applied(wake: WakeUnderTest):
    # Given a folder shaped as Argo CD's jsonnet-guestbook-tla, its Namespace beside it
    repo = wake.repository("guestbook")
    commit = repo.commit(
        "guestbook",
        {
            "guestbook/guestbook-ui.jsonnet": GUESTBOOK_TLA,
            "guestbook/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: gb}\n",
        },
    )
    start = await wake.position()
    # When it is registered with a top-level argument given as code
    await wake.wake(
        "app",
        "add",
        "guestbook",
        "--repo",
        repo.url,
        "--ref",
        "main",
        "--path",
        "guestbook",
        "--namespace",
        "gb",
        "--tla-code",
        "replicas=2",
    )
    # Then auto picks jsonnet and renders the file with the manifest beside it
    rendered = await wake.next_event("guestbook", "ManifestsRendered", after=start)
    payload = rendered.event.payload
    assert isinstance(payload, ManifestsRendered)
    assert (payload.commit, payload.renderer) == (commit, "jsonnet")
    assert sorted(str(r.ref) for r in payload.resources) == [
        "Deployment gb/guestbook-ui",
        "Namespace gb",
    ]
    # and the cluster's Deployment has the number the argument gave
    await wake.next_event("guestbook", "ApplySucceeded", after=rendered.seq)
    deployment = await wake.cluster_object("apps/v1", "Deployment", "guestbook-ui", "gb")
    assert deployment is not None and deployment["spec"]["replicas"] == 2
