"""What a render read (its inputs, for git-watcher), over real repositories and the real tools.

Each render lists the repository paths it depended on, compacted (a folder
stands for everything under it); git-watcher detects a later commit when any
of them changed. And a plain-YAML app's subfolder that holds a kustomization
is built by kustomize as part of the app.
"""

from __future__ import annotations

from pathlib import Path

import pygit2

from events.payloads import AppSpec
from services.renderer.checkout import Checkout, RepoTree
from services.renderer.rendering import compact_inputs
from services.wiring.git import RepoPath
from tests.git_watcher.repos import GitRepo, configmap
from tests.renderer.test_renderers import DEPLOYMENT, by_name, failed, rendered

# podinfo's deploy/ in small: bases per component, overlays per environment.
BACKEND = DEPLOYMENT.replace("name: web", "name: backend").replace("nginx:1.27", "podinfo:6.9.0")
FRONTEND = DEPLOYMENT.replace("name: web", "name: frontend").replace("nginx:1.27", "podinfo:6.9.0")
PODINFO = {
    "deploy/bases/backend/kustomization.yaml": "resources: [deployment.yaml]\n",
    "deploy/bases/backend/deployment.yaml": BACKEND,
    "deploy/bases/frontend/kustomization.yaml": "resources: [deployment.yaml]\n",
    "deploy/bases/frontend/deployment.yaml": FRONTEND,
    "deploy/bases/cache/kustomization.yaml": "resources: [cm.yaml]\n",
    "deploy/bases/cache/cm.yaml": configmap("cache"),
    "deploy/components/debug/kustomization.yaml": (
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
        "configMapGenerator:\n  - name: debug\n    envs: [debug.env]\n"
        "    options: {disableNameSuffixHash: true}\n"
    ),
    "deploy/components/debug/debug.env": "LEVEL=debug\n",
    "deploy/overlays/dev/kustomization.yaml": """\
namespace: dev
resources:
  - ../../bases/backend
  - ../../bases/frontend
components:
  - ../../components/debug
patches:
  - path: replicas.yaml
""",
    "deploy/overlays/dev/replicas.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: backend}\nspec: {replicas: 2}\n"
    ),
    "README.md": "podinfo\n",
}


def test_an_overlay_reads_its_folder_its_bases_and_its_components_and_nothing_else(
    tmp_path: Path,
):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("podinfo", PODINFO)
    outcome = rendered(
        repo, AppSpec(repo_url="unused", path="deploy/overlays/dev", namespace="dev")
    )
    assert outcome.renderer == "kustomize"
    assert sorted(by_name(outcome)) == [
        "ConfigMap/debug",
        "Deployment/backend",
        "Deployment/frontend",
    ]
    # Not the cache base nobody names, not the README.
    assert outcome.inputs == (
        "deploy/bases/backend",
        "deploy/bases/frontend",
        "deploy/components/debug",
        "deploy/overlays/dev",
    )


def test_symlinks_count_as_inputs_with_what_they_point_at(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "linked base",
        {
            **PODINFO,
            "deploy/overlays/linked/kustomization.yaml": "resources: [base, cm.yaml]\n",
            "shared/cm.yaml": configmap("shared"),
        },
        links={
            "deploy/overlays/linked/base": "../../bases/backend",
            "deploy/overlays/linked/cm.yaml": "../../../shared/cm.yaml",
        },
    )
    outcome = rendered(
        repo, AppSpec(repo_url="unused", path="deploy/overlays/linked", namespace="dev")
    )
    assert sorted(by_name(outcome)) == ["ConfigMap/shared", "Deployment/backend"]
    assert outcome.inputs == ("deploy/bases/backend", "deploy/overlays/linked", "shared/cm.yaml")


def test_a_jsonnet_app_reads_its_folder_and_every_import_and_importstr(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "jsonnet",
        {
            "lib/k.libsonnet": "{ cm(name, data): { apiVersion: 'v1', kind: 'ConfigMap', "
            "metadata: { name: name }, data: data } }\n",
            "lib/unused.libsonnet": "{}\n",
            "data/motd.txt": "hello\n",
            "apps/web/main.jsonnet": (
                "local k = import '../../lib/k.libsonnet';\n"
                "k.cm('motd', { text: importstr '../../data/motd.txt' })\n"
            ),
        },
    )
    outcome = rendered(repo, AppSpec(repo_url="unused", path="apps/web", namespace="shop"))
    assert outcome.renderer == "jsonnet"
    assert by_name(outcome)["ConfigMap/motd"]["data"] == {"text": "hello\n"}
    assert outcome.inputs == ("apps/web", "data/motd.txt", "lib/k.libsonnet")


def test_a_plain_yaml_app_reads_its_folder(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("plain", {"apps/web/a/cm.yaml": configmap("a"), "apps/web/b.yaml": configmap("b")})
    outcome = rendered(repo, AppSpec(repo_url="unused", path="apps/web", namespace="shop"))
    assert outcome.renderer == "yaml"
    assert outcome.inputs == ("apps/web",)


def test_a_kustomization_in_a_subfolder_of_a_plain_yaml_app_is_built_by_kustomize(
    tmp_path: Path,
):
    # Today's trap: the walk read kustomization.yaml and the patch as manifests.
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "site",
        {
            **PODINFO,
            "apps/site/namespace.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: site}\n",
            "apps/site/config/cm.yaml": configmap("site"),
            "apps/site/backend/kustomization.yaml": (
                "resources: [../../../deploy/bases/backend]\npatches:\n  - path: replicas.yaml\n"
            ),
            "apps/site/backend/replicas.yaml": (
                "apiVersion: apps/v1\nkind: Deployment\n"
                "metadata: {name: backend}\nspec: {replicas: 5}\n"
            ),
        },
    )
    outcome = rendered(repo, AppSpec(repo_url="unused", path="apps/site", namespace="site"))
    assert outcome.renderer == "yaml"
    resources = by_name(outcome)
    assert sorted(resources) == ["ConfigMap/site", "Deployment/backend", "Namespace/site"]
    assert resources["Deployment/backend"]["spec"]["replicas"] == 5
    assert resources["Deployment/backend"]["metadata"]["namespace"] == "site"
    sources = {
        f"{r.resource['kind']}/{r.resource['metadata']['name']}": r.file for r in outcome.resources
    }
    assert sources["Deployment/backend"] == "apps/site/backend/kustomization.yaml"
    assert sources["ConfigMap/site"] == "apps/site/config/cm.yaml"
    # The base outside the app's folder is an input: changing it reaches the app.
    assert outcome.inputs == ("apps/site", "deploy/bases/backend")


def test_a_broken_kustomization_in_a_plain_yaml_subfolder_is_named(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "broken",
        {
            "apps/site/cm.yaml": configmap("site"),
            "apps/site/extra/kustomization.yaml": "resources: [https://example.com/base]\n",
        },
    )
    outcome = failed(repo, AppSpec(repo_url="unused", path="apps/site", namespace="site"))
    assert outcome.file == "apps/site/extra/kustomization.yaml"
    assert "remote base" in outcome.error


def test_a_chart_written_for_helm_is_read_as_one_folder(tmp_path: Path):
    # helm itself may be missing here; what its render reads is the checkout of the chart.
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "chart",
        {
            "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
            "charts/web/templates/cm.yaml": configmap("web"),
            "charts/web/charts/dep/Chart.yaml": "apiVersion: v2\nname: dep\nversion: 1.0.0\n",
        },
    )
    commit = pygit2.Repository(str(repo.path))[repo.head()]
    tree = RepoTree(commit, max_bytes=1_000_000)
    Checkout(tree, tmp_path / "out").write(RepoPath("charts/web"), via="charts/web")
    assert compact_inputs(tree.reads) == ("charts/web",)


def test_inputs_are_compacted_under_their_folders():
    paths = [RepoPath(p) for p in ("b/x.yaml", "a", "a/b/c", "b", "ab", ".")]
    assert compact_inputs(paths[:-1]) == ("a", "ab", "b")
    assert compact_inputs(paths) == (".",)
