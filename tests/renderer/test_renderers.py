"""Kustomize, jsonnet and helm renders over real git repositories and the real kubectl binary.

Each test renders one commit as the service does (`render_app` over the
repository's object database), and looks at the resources or the RenderFailed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pygit2
import pytest

from events import new_event
from events.bundle import decode_bundle
from events.payloads import AppSpec, RenderFailed, RevisionDetected
from services.catalog.describe import describe
from services.renderer.helm import (
    NOT_INSTALLED,
    helm_environment,
    release_of,
    template_arguments,
)
from services.renderer.jsonnet import documents_of
from services.renderer.jsonnet_worker import ImportRefused, import_path, location
from services.renderer.kustomization import is_remote
from services.renderer.kustomize import kubectl_binary
from services.renderer.manifests import RenderError
from services.renderer.rendering import Rendered, render_app
from services.wiring.git import Mirror, RepoPath
from services.wiring.settings import Settings
from tests.git_watcher.repos import GitRepo, configmap

DEPLOYMENT = """\
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

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""

BASE = {
    "bases/web/kustomization.yaml": "resources: [deployment.yaml, service.yaml]\n",
    "bases/web/deployment.yaml": DEPLOYMENT,
    "bases/web/service.yaml": SERVICE,
}


def render(
    repo: GitRepo, spec: AppSpec, *, settings: Settings | None = None
) -> Rendered | RenderFailed:
    commit = repo.head()
    mirror = Mirror(url=repo.url, path=repo.path, repo=pygit2.Repository(str(repo.path)))
    revision = RevisionDetected(
        repo_url=repo.url, ref="main", commit=commit, committed_at=datetime.now(UTC)
    )
    return render_app(
        mirror,
        app="web",
        spec=spec,
        revision=revision,
        app_path=RepoPath(spec.path),
        settings=settings or Settings(render_timeout=30),
    )


def rendered(repo: GitRepo, spec: AppSpec, **kwargs) -> Rendered:
    outcome = render(repo, spec, **kwargs)
    assert isinstance(outcome, Rendered), outcome
    return outcome


def failed(repo: GitRepo, spec: AppSpec, **kwargs) -> RenderFailed:
    outcome = render(repo, spec, **kwargs)
    assert isinstance(outcome, RenderFailed), outcome
    return outcome


def by_name(outcome: Rendered) -> dict[str, dict]:
    return {
        f"{r.resource['kind']}/{r.resource['metadata']['name']}": r.resource
        for r in outcome.resources
    }


def kustomize_app(path: str = "apps/web") -> AppSpec:
    return AppSpec(repo_url="unused", path=path, namespace="shop", renderer="kustomize")


# --- kustomize ------------------------------------------------------------------------


def test_the_kubectl_of_the_wheel_is_found():
    kubectl = kubectl_binary()
    assert kubectl is not None and Path(kubectl).is_file()


def test_an_overlay_over_an_in_repository_base_renders_with_in_repository_symlinks(
    tmp_path: Path,
):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "overlay",
        {
            **BASE,
            "common/team.yaml": configmap("team"),
            "apps/web/kustomization.yaml": """\
resources:
  - ../../bases/web
  - linked-base
  - team.yaml
namePrefix: prod-
labels:
  - pairs: {tier: frontend}
patches:
  - path: replicas.yaml
configMapGenerator:
  - name: settings
    files: [settings.properties]
    options: {disableNameSuffixHash: true}
""",
            "apps/web/replicas.yaml": (
                "apiVersion: apps/v1\nkind: Deployment\n"
                "metadata: {name: web}\nspec: {replicas: 3}\n"
            ),
            "apps/web/settings.properties": "color=blue\n",
            "other/kustomization.yaml": "resources: [cm.yaml]\n",
            "other/cm.yaml": configmap("other"),
        },
        links={
            # A file and a whole base, each a symlink to elsewhere in the repository.
            "apps/web/team.yaml": "../../common/team.yaml",
            "apps/web/linked-base": "../../other",
        },
    )
    outcome = rendered(repo, kustomize_app())
    assert outcome.renderer == "kustomize"
    resources = by_name(outcome)
    assert sorted(resources) == [
        "ConfigMap/prod-other",
        "ConfigMap/prod-settings",
        "ConfigMap/prod-team",
        "Deployment/prod-web",
        "Service/prod-web",
    ]
    deployment = resources["Deployment/prod-web"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["labels"] == {"app": "web", "tier": "frontend"}
    assert deployment["metadata"]["namespace"] == "shop"
    assert resources["ConfigMap/prod-settings"]["data"] == {"settings.properties": "color=blue\n"}
    assert {r.source for r in outcome.resources} == {"apps/web/kustomization.yaml"}
    # The bundle is canonical, as a plain YAML app's is.
    bundle = decode_bundle(outcome.data)
    assert bundle.renderer == "kustomize"
    assert [r["metadata"]["name"] for r in bundle.resources] == [
        r.resource["metadata"]["name"] for r in outcome.resources
    ]


def test_auto_detects_a_kustomization(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("auto", {**BASE, "apps/web/kustomization.yml": "resources: [../../bases/web]\n"})
    outcome = rendered(repo, AppSpec(repo_url="unused", path="apps/web"))
    assert outcome.renderer == "kustomize"
    assert sorted(by_name(outcome)) == ["Deployment/web", "Service/web"]


@pytest.mark.parametrize(
    ("kustomization", "links", "file", "complaint"),
    [
        (
            "resources: [../../../../outside]\n",
            {},
            "apps/web/kustomization.yaml",
            "leaves the repository",
        ),
        (
            "resources: [/etc/passwd]\n",
            {},
            "apps/web/kustomization.yaml",
            "absolute path '/etc/passwd'",
        ),
        (
            "resources: [passwd.yaml]\n",
            {"apps/web/passwd.yaml": "/etc/passwd"},
            "apps/web/passwd.yaml",
            "leaves the repository (absolute target)",
        ),
        (
            "resources: [up]\n",
            {"apps/web/up": "../../.."},
            "apps/web/up",
            "leaves the repository",
        ),
        (
            # A base inside the repository holding a link out of it.
            "resources: [../../bases/web]\n",
            {"bases/web/host.yaml": "../../../../../etc/hostname"},
            "bases/web/host.yaml",
            "leaves the repository",
        ),
        (
            "configMapGenerator:\n  - name: c\n    files: [key=../../../../etc/passwd]\n",
            {},
            "apps/web/kustomization.yaml",
            "leaves the repository",
        ),
    ],
)
def test_a_kustomization_reaching_outside_the_repository_fails(
    tmp_path: Path, kustomization: str, links: dict[str, str], file: str, complaint: str
):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("escape", {**BASE, "apps/web/kustomization.yaml": kustomization}, links=links)
    outcome = failed(repo, kustomize_app())
    assert outcome.renderer == "kustomize"
    assert outcome.file == file
    assert complaint in outcome.error


def test_kustomize_keeps_files_inside_the_kustomization_root(tmp_path: Path):
    # In the repository but above the kustomization: kustomize's own load restrictor.
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "above root",
        {
            "secrets/token.txt": "hunter2\n",
            "apps/web/kustomization.yaml": (
                "configMapGenerator:\n  - name: c\n    files: [../../secrets/token.txt]\n"
            ),
        },
    )
    outcome = failed(repo, kustomize_app())
    assert outcome.file == "apps/web/kustomization.yaml"
    assert "kustomize failed" in outcome.error and "not in or below" in outcome.error
    assert "hunter2" not in outcome.error


@pytest.mark.parametrize(
    "base",
    [
        "https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0",
        "github.com/kubernetes-sigs/kustomize/examples/helloWorld",
        "git@github.com:example/deploy.git",
        "ssh://git@example.com/deploy.git",
        "../../bases/web?ref=main",
    ],
)
def test_a_remote_base_is_refused(tmp_path: Path, base: str):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("remote", {**BASE, "apps/web/kustomization.yaml": f"resources:\n  - {base}\n"})
    outcome = failed(repo, kustomize_app())
    assert outcome.file == "apps/web/kustomization.yaml"
    assert "resources[0]: remote base" in outcome.error


def test_remote_forms():
    assert is_remote("https://example.com/x") and is_remote("git@host:x.git")
    assert is_remote("example.com/org/repo//sub") and is_remote("base?ref=v1")
    assert not is_remote("../base") and not is_remote("deploy.yaml")


EXEC_PLUGIN = """\
apiVersion: example.com/v1
kind: Secrets
metadata:
  name: fetch
  annotations:
    config.kubernetes.io/function: |
      exec:
        path: ./fetch-secrets.sh
"""


@pytest.mark.parametrize(
    ("kustomization", "extra", "complaint"),
    [
        ("generators: [plugin.yaml]\n", {"apps/web/plugin.yaml": EXEC_PLUGIN}, "KRM function"),
        (
            "transformers:\n  - |\n"
            + "".join(f"    {line}\n" for line in EXEC_PLUGIN.splitlines()),
            {},
            "KRM function",
        ),
        (
            "generators: [gen.yaml]\n",
            {"apps/web/gen.yaml": "apiVersion: someteam.example.com/v1\nkind: Inflator\n"},
            "plugin Inflator (someteam.example.com/v1) refused",
        ),
        ("validators: [checks]\n", {"apps/web/checks/v.yaml": "kind: X\n"}, "is a directory"),
        (
            "helmCharts:\n  - name: redis\n    repo: https://charts.example.com\n",
            {},
            "Helm charts inside a kustomization are refused",
        ),
    ],
)
def test_plugins_are_refused(
    tmp_path: Path, kustomization: str, extra: dict[str, str], complaint: str
):
    repo = GitRepo(tmp_path / "repo")
    files = {**BASE, **extra}
    files["apps/web/kustomization.yaml"] = "resources: [../../bases/web]\n" + kustomization
    repo.commit("plugin", files)
    outcome = failed(repo, kustomize_app())
    assert outcome.renderer == "kustomize"
    assert complaint in outcome.error


def test_builtin_plugin_configs_are_allowed(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "builtin",
        {
            **BASE,
            "apps/web/kustomization.yaml": (
                "resources: [../../bases/web]\ntransformers: [labels.yaml]\n"
            ),
            "apps/web/labels.yaml": (
                "apiVersion: builtin\nkind: LabelTransformer\nmetadata: {name: team}\n"
                "labels: {team: shop}\nfieldSpecs: [{path: metadata/labels, create: true}]\n"
            ),
        },
    )
    outcome = rendered(repo, kustomize_app())
    assert all(r.resource["metadata"]["labels"]["team"] == "shop" for r in outcome.resources)


def test_a_kustomize_error_and_a_missing_kustomization_are_named(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "broken",
        {
            "apps/web/kustomization.yaml": "resources: [missing.yaml]\n",
            "apps/api/cm.yaml": configmap("a"),
        },
    )
    outcome = failed(repo, kustomize_app())
    assert outcome.file == "apps/web/kustomization.yaml"
    assert "missing.yaml does not exist" in outcome.error
    outcome = failed(repo, kustomize_app("apps/api"))
    assert outcome.file == "apps/api" and "no kustomization in apps/api" in outcome.error


# --- jsonnet --------------------------------------------------------------------------

LIB = """\
{
  configMap(name, data):: {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: name },
    data: data,
  },
}
"""


def jsonnet_app(**fields) -> AppSpec:
    return AppSpec(repo_url="unused", path="apps/web", namespace="shop", **fields)


def test_jsonnet_with_ext_vars_top_level_arguments_and_an_in_repository_import(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "jsonnet",
        {
            "lib/k.libsonnet": LIB,
            "apps/web/main.jsonnet": """\
local k = import '../../lib/k.libsonnet';
local shared = import 'shared.libsonnet';
function(replicas, tier='backend') {
  config: k.configMap('settings', { env: std.extVar('env'), tier: tier }),
  nested: {
    deployments: [{
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'web' },
      spec: { replicas: std.parseInt(replicas) },
    }],
  },
  list: { apiVersion: 'v1', kind: 'List', items: [k.configMap('listed', shared)] },
}
""",
        },
        links={"apps/web/shared.libsonnet": "../../lib/shared.jsonnet"},
    )
    repo.commit("shared", {"lib/shared.jsonnet": "{ from: 'a symlink' }\n"})
    outcome = rendered(
        repo,
        jsonnet_app(
            jsonnet_ext_vars={"env": "prod"},
            jsonnet_tla={"replicas": "4", "tier": "frontend"},
        ),
    )
    assert outcome.renderer == "jsonnet"
    resources = by_name(outcome)
    assert sorted(resources) == ["ConfigMap/listed", "ConfigMap/settings", "Deployment/web"]
    assert resources["ConfigMap/settings"]["data"] == {"env": "prod", "tier": "frontend"}
    assert resources["ConfigMap/listed"]["data"] == {"from": "a symlink"}
    assert resources["Deployment/web"]["spec"]["replicas"] == 4
    assert resources["Deployment/web"]["metadata"]["namespace"] == "shop"
    assert {r.source for r in outcome.resources} == {"apps/web/main.jsonnet"}


def test_jsonnet_main_from_the_renderer_options_and_an_array_output(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "array",
        {
            "lib/k.libsonnet": LIB,
            "apps/web/env/prod.jsonnet": (
                "local k = import '../../../lib/k.libsonnet';\n"
                "[k.configMap('a', {}), k.configMap('b', {})]\n"
            ),
        },
    )
    outcome = rendered(repo, jsonnet_app(renderer_options={"main": "env/prod.jsonnet"}))
    assert outcome.renderer == "jsonnet"
    assert sorted(by_name(outcome)) == ["ConfigMap/a", "ConfigMap/b"]


@pytest.mark.parametrize(
    ("source", "links", "complaint"),
    [
        ("import '../../../../etc/passwd'", {}, "leaves the repository"),
        ("import '/etc/passwd'", {}, "absolute import '/etc/passwd' refused"),
        ("importstr 'host'", {"apps/web/host": "/etc/hostname"}, "leaves the repository"),
        ("import 'nothing.libsonnet'", {}, "does not exist at commit"),
    ],
)
def test_jsonnet_imports_outside_the_repository_are_refused(
    tmp_path: Path, source: str, links: dict[str, str], complaint: str
):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("escape", {"apps/web/main.jsonnet": f"\n{source}\n"}, links=links)
    outcome = failed(repo, jsonnet_app(renderer="jsonnet"))
    assert outcome.renderer == "jsonnet"
    assert (outcome.file, outcome.line) == ("apps/web/main.jsonnet", 2)
    assert complaint in outcome.error


def test_a_jsonnet_error_names_file_and_line(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "errors",
        {
            "lib/bad.libsonnet": "{\n  x: error 'no value for x',\n}\n",
            "apps/web/main.jsonnet": (
                "local bad = import '../../lib/bad.libsonnet';\n{ a: bad.x }\n"
            ),
        },
    )
    outcome = failed(repo, jsonnet_app())
    assert (outcome.file, outcome.line) == ("lib/bad.libsonnet", 2)
    assert "no value for x" in outcome.error
    repo.commit("syntax", {"apps/web/main.jsonnet": "{\n  a: ,\n}\n"})
    outcome = failed(repo, jsonnet_app())
    assert (outcome.file, outcome.line) == ("apps/web/main.jsonnet", 2)
    assert "STATIC ERROR" in outcome.error
    repo.commit("not resources", {"apps/web/main.jsonnet": "{ a: [1] }\n"})
    outcome = failed(repo, jsonnet_app())
    assert "jsonnet output at $.a[0] is a int" in outcome.error


def test_jsonnet_pure_parts():
    assert import_path("apps/web/", "../../lib/k.libsonnet") == "lib/k.libsonnet"
    assert import_path("apps/web/", "./x/../y.jsonnet") == "apps/web/y.jsonnet"
    with pytest.raises(ImportRefused, match="leaves the repository"):
        import_path("apps/", "../../x")
    assert location("STATIC ERROR: a/b.jsonnet:3:5: oops\n") == ("a/b.jsonnet", 3)
    assert location("RUNTIME ERROR: boom\n\tc.libsonnet:7:1-9\tobject\n") == ("c.libsonnet", 7)
    assert location("RUNTIME ERROR: boom\n") == ("", None)
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}
    assert documents_of({"b": [cm], "a": {"deep": cm}}, entry="m") == [cm, cm]
    with pytest.raises(RenderError, match=r"\$\.s is a str"):
        documents_of({"s": "text"}, entry="m")


# A folder in the shape of Argo CD's `jsonnet-guestbook` example app: one entry
# file that is not called main.jsonnet, and its parameters in a .libsonnet.
GUESTBOOK_PARAMS = """\
{
  name: 'guestbook-ui',
  image: 'quay.io/argoprojlabs/argocd-e2e-container:0.2',
  replicas: 1,
  containerPort: 80,
  servicePort: 80,
}
"""

GUESTBOOK_UI = """\
local params = import 'params.libsonnet';
[
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: params.name },
    spec: {
      ports: [{ port: params.servicePort, targetPort: params.containerPort }],
      selector: { app: params.name },
    },
  },
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: params.name },
    spec: {
      replicas: params.replicas,
      selector: { matchLabels: { app: params.name } },
      template: {
        metadata: { labels: { app: params.name } },
        spec: { containers: [{ name: params.name, image: params.image }] },
      },
    },
  },
]
"""

# The `jsonnet-guestbook-tla` shape: the entry is a function of top-level arguments.
GUESTBOOK_TLA = """\
function(name='guestbook-ui', replicas=1, labels={})
  {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: name, labels: labels },
    spec: { replicas: replicas },
  }
"""


def test_a_folder_shaped_as_argo_cds_jsonnet_guestbook_renders_its_resources(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "guestbook",
        {
            "apps/web/guestbook-ui.jsonnet": GUESTBOOK_UI,
            "apps/web/params.libsonnet": GUESTBOOK_PARAMS,
        },
    )
    outcome = rendered(repo, jsonnet_app())
    assert outcome.renderer == "jsonnet"
    resources = by_name(outcome)
    assert sorted(resources) == ["Deployment/guestbook-ui", "Service/guestbook-ui"]
    assert resources["Deployment/guestbook-ui"]["spec"]["replicas"] == 1
    assert resources["Service/guestbook-ui"]["metadata"]["namespace"] == "shop"
    assert {r.source for r in outcome.resources} == {"apps/web/guestbook-ui.jsonnet"}


def test_every_top_level_jsonnet_file_renders_with_the_manifests_beside_it(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "two entries",
        {
            "apps/web/a.jsonnet": "local k = import 'k.libsonnet';\nk.cm('a')\n",
            # An object of resources, as kubecfg and Tanka lay them out.
            "apps/web/b.jsonnet": (
                "local k = import 'k.libsonnet';\n"
                "{ first: k.cm('b1'), second: { deeper: k.cm('b2') } }\n"
            ),
            "apps/web/k.libsonnet": (
                "{ cm(name):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name } } }\n"
            ),
            "apps/web/service.yaml": SERVICE,
            # jsonnet-bundler's file is not a manifest, and subfolders hold libraries:
            # neither is read as an entry (this one would fail if it were evaluated).
            "apps/web/jsonnetfile.json": '{"version": 1, "dependencies": []}\n',
            "apps/web/lib/broken.jsonnet": "error 'not an entry'\n",
        },
    )
    outcome = rendered(repo, jsonnet_app())
    assert outcome.renderer == "jsonnet"
    assert {name: r["metadata"]["namespace"] for name, r in by_name(outcome).items()} == {
        "ConfigMap/a": "shop",
        "ConfigMap/b1": "shop",
        "ConfigMap/b2": "shop",
        "Service/web": "shop",
    }
    sources = {r.resource["metadata"]["name"]: r.source for r in outcome.resources}
    assert sources == {
        "a": "apps/web/a.jsonnet",
        "b1": "apps/web/b.jsonnet",
        "b2": "apps/web/b.jsonnet",
        "web": "apps/web/service.yaml:1",
    }
    # One bundle: the same resource from a jsonnet file and a manifest names both.
    repo.commit(
        "twice",
        {"apps/web/a.jsonnet": "{ apiVersion: 'v1', kind: 'Service', metadata: {name: 'web'} }\n"},
    )
    outcome = failed(repo, jsonnet_app())
    assert "Service shop/web (v1) is defined twice" in outcome.error
    assert "apps/web/service.yaml" in outcome.error and "apps/web/a.jsonnet" in outcome.error


def test_main_jsonnet_or_the_named_entry_is_the_only_entry(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "tanka",
        {
            "apps/web/main.jsonnet": GUESTBOOK_TLA,
            "apps/web/other.jsonnet": "error 'imported, never evaluated on its own'\n",
            # Tanka's spec.json beside main.jsonnet is not a manifest of the app.
            "apps/web/spec.json": '{"apiVersion": "tanka.dev/v1alpha1", "kind": "Environment"}\n',
        },
    )
    assert sorted(by_name(rendered(repo, jsonnet_app()))) == ["Deployment/guestbook-ui"]
    outcome = failed(repo, jsonnet_app(renderer_options={"main": "other.jsonnet"}))
    assert (outcome.file, outcome.line) == ("apps/web/other.jsonnet", 1)
    assert outcome.error == "RUNTIME ERROR: imported, never evaluated on its own"


def test_imports_not_beside_the_file_are_looked_for_in_the_libs_in_order(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "vendored",
        {
            "vendor/github.com/acme/k/k.libsonnet": LIB,
            "lib/names.libsonnet": "{ name: 'from-lib' }\n",
            "vendor/names.libsonnet": "{ name: 'from-vendor' }\n",
            "apps/web/main.jsonnet": (
                "local k = import 'github.com/acme/k/k.libsonnet';\n"
                "local n = import 'names.libsonnet';\n"
                "local here = import 'here.libsonnet';\n"
                "[k.configMap(n.name, {}), k.configMap(here.name, {})]\n"
            ),
            # Beside the importing file wins over every lib.
            "apps/web/here.libsonnet": "{ name: 'beside' }\n",
            "lib/here.libsonnet": "{ name: 'not-me' }\n",
        },
    )
    outcome = rendered(repo, jsonnet_app(renderer_options={"libs": "lib,vendor"}))
    assert sorted(by_name(outcome)) == ["ConfigMap/beside", "ConfigMap/from-lib"]
    outcome = rendered(repo, jsonnet_app(renderer_options={"libs": "vendor, lib"}))
    assert sorted(by_name(outcome)) == ["ConfigMap/beside", "ConfigMap/from-vendor"]
    outcome = failed(repo, jsonnet_app())
    assert (outcome.file, outcome.line) == ("apps/web/main.jsonnet", 1)
    assert "apps/web/github.com/acme/k/k.libsonnet does not exist" in outcome.error
    outcome = failed(repo, jsonnet_app(renderer_options={"libs": "lib"}))
    assert "nor github.com/acme/k/k.libsonnet in the libs lib" in outcome.error
    outcome = failed(repo, jsonnet_app(renderer_options={"libs": "../outside"}))
    assert outcome.file == "apps/web" and outcome.error.startswith("renderer option libs: ")


def test_tla_code_and_ext_code_are_jsonnet_values_and_plain_ones_strings(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "tla",
        {
            "apps/web/guestbook-ui.jsonnet": GUESTBOOK_TLA.replace(
                "labels: labels", "labels: labels + std.extVar('extra')"
            )
        },
    )
    code = jsonnet_app(
        jsonnet_tla_code={"replicas": "3", "labels": "{ tier: 'web' }"},
        jsonnet_ext_code={"extra": "{ team: 'shop' }"},
    )
    deployment = by_name(rendered(repo, code))["Deployment/guestbook-ui"]
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["labels"] == {"tier": "web", "team": "shop"}
    strings = jsonnet_app(jsonnet_tla={"replicas": "3"}, jsonnet_ext_code={"extra": "{}"})
    assert by_name(rendered(repo, strings))["Deployment/guestbook-ui"]["spec"]["replicas"] == "3"


@pytest.mark.parametrize(
    ("fields", "culprit"),
    [
        ({"jsonnet_tla_code": {"replicas": "3 +"}}, "top-level argument replicas (--tla-code)"),
        (
            {"jsonnet_tla_code": {"replicas": "error 'no'"}},
            "top-level argument replicas (--tla-code)",
        ),
        (
            {"jsonnet_ext_code": {"extra": "{ team: }"}, "jsonnet_tla_code": {"replicas": "2"}},
            "ext var extra (--ext-code)",
        ),
    ],
)
def test_invalid_code_in_an_argument_fails_naming_the_argument(
    tmp_path: Path, fields: dict, culprit: str
):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "tla",
        {
            "apps/web/main.jsonnet": GUESTBOOK_TLA.replace(
                "labels: labels", "labels: std.extVar('extra')"
            )
        },
    )
    fields = {"jsonnet_ext_code": {"extra": "{}"}, **fields}
    outcome = failed(repo, jsonnet_app(**fields))
    assert outcome.renderer == "jsonnet"
    assert outcome.file == "apps/web/main.jsonnet" and outcome.line is None
    assert outcome.error.startswith(culprit + ": ")
    # The argument's own location is not repeated in the message.
    assert "tla:replicas:" not in outcome.error and "<extvar:" not in outcome.error


@pytest.mark.parametrize(
    ("files", "spec"),
    [
        ({"apps/web/README.md": "nothing to deploy yet\n"}, AppSpec(repo_url="u", path="apps/web")),
        ({"apps/web/main.jsonnet": "[]\n"}, jsonnet_app()),
        ({"apps/web/only.jsonnet": "{}\n"}, jsonnet_app()),
    ],
)
def test_a_render_with_no_resources_fails_unless_the_app_allows_it(
    tmp_path: Path, files: dict[str, str], spec: AppSpec
):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("empty", files)
    outcome = failed(repo, spec)
    renderer = "jsonnet" if spec.namespace == "shop" else "yaml"
    assert (outcome.renderer, outcome.file, outcome.line) == (renderer, "apps/web", None)
    assert outcome.error == (
        f"the {renderer} renderer found no resources here; "
        "register the app with --allow-empty if it may be empty"
    )
    allowed = rendered(repo, msgspec.structs.replace(spec, allow_empty=True))
    assert (allowed.renderer, allowed.resources) == (renderer, [])
    assert decode_bundle(allowed.data).resources == []


def test_a_folder_with_only_libraries_is_not_a_jsonnet_app(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("libs", {"apps/web/k.libsonnet": "{}\n"})
    outcome = failed(repo, jsonnet_app(renderer="jsonnet"))
    assert outcome.file == "apps/web"
    assert outcome.error.startswith("no .jsonnet file at the top of the app path")


def summary_of(outcome: RenderFailed) -> str:
    return describe(new_event(outcome, app="web", actor="service:renderer"))


@pytest.mark.parametrize(
    ("files", "renderer", "file"),
    [
        ({"apps/web/cm.yaml": "kind: ConfigMap\n"}, "yaml", "apps/web/cm.yaml"),
        ({"apps/web/main.jsonnet": "{\n  a: ,\n}\n"}, "jsonnet", "apps/web/main.jsonnet"),
        (
            {"apps/web/kustomization.yaml": "resources: [missing.yaml]\n"},
            "kustomize",
            "apps/web/kustomization.yaml",
        ),
        ({"apps/web/Chart.yaml": "apiVersion: v2\nname: web\n"}, "helm", "apps/web/Chart.yaml"),
    ],
)
def test_a_render_failed_names_its_file_once(
    tmp_path: Path, files: dict[str, str], renderer: str, file: str
):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("broken", files)
    outcome = failed(repo, jsonnet_app())
    assert (outcome.renderer, outcome.file) == (renderer, file)
    assert not outcome.error.startswith(file)
    summary = summary_of(outcome)
    assert summary.count(file) == 1
    assert summary.startswith(f"render of {repo.head()[:7]} failed ")


def test_a_render_failed_written_before_issue_8_is_summarised_without_the_repeat():
    # Renderers used to put the location in front of the message as well.
    old = RenderFailed(
        commit="a" * 40,
        error="apps/Chart.yaml: helm is not installed",
        file="apps/Chart.yaml",
        renderer="helm",
    )
    assert summary_of(old) == "render of aaaaaaa failed in apps/Chart.yaml: helm is not installed"
    at_line = msgspec.structs.replace(old, error="apps/cm.yaml:3: bad", file="apps/cm.yaml", line=3)
    assert summary_of(at_line) == "render of aaaaaaa failed at apps/cm.yaml:3: bad"


# --- helm -----------------------------------------------------------------------------


def test_helm_not_installed_is_a_clear_render_failed(tmp_path: Path):
    # This machine has no helm binary (it is not a wheel): the renderer says so.
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "chart",
        {
            "charts/web/Chart.yaml": "apiVersion: v2\nname: web\nversion: 1.0.0\n",
            "charts/web/templates/cm.yaml": configmap("web"),
        },
    )
    outcome = failed(repo, AppSpec(repo_url="unused", path="charts/web"))
    assert outcome.renderer == "helm"
    assert outcome.file == "charts/web/Chart.yaml"
    assert NOT_INSTALLED in outcome.error


def test_the_helm_template_command_line():
    release = release_of(
        app="web",
        app_path=RepoPath("charts/web"),
        release="",
        namespace="shop",
        values=["values-prod.yaml", "env/extra.yaml"],
    )
    argv = template_arguments("/usr/bin/helm", release, root=Path("/scratch/repo"))
    assert argv == [
        "/usr/bin/helm",
        "template",
        "web",
        "/scratch/repo/charts/web",
        "--namespace",
        "shop",
        "--include-crds",
        "--values",
        "/scratch/repo/charts/web/values-prod.yaml",
        "--values",
        "/scratch/repo/charts/web/env/extra.yaml",
    ]
    assert "--dependency-update" not in argv
    named = release_of(
        app="web", app_path=RepoPath("c"), release="prod-web", namespace="n", values=[]
    )
    assert template_arguments("helm", named, root=Path("/r"))[2] == "prod-web"
    for outside in ("../other/values.yaml", "/etc/values.yaml"):
        with pytest.raises(RenderError, match="helm_values") as caught:
            release_of(app="w", app_path=RepoPath("c"), release="", namespace="n", values=[outside])
        assert caught.value.file == "c/Chart.yaml"
    environment = helm_environment(Path("/scratch"))
    assert all(value.startswith("/scratch/") for value in environment.values())


# --- caps -----------------------------------------------------------------------------


def test_a_render_over_the_timeout_is_killed_and_names_the_timeout(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "slow",
        {
            "apps/web/main.jsonnet": (
                "local fib(n) = if n < 2 then n else fib(n - 1) + fib(n - 2);\n"
                "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' },"
                " data: { n: std.toString(fib(60)) } }\n"
            )
        },
    )
    outcome = failed(repo, jsonnet_app(), settings=Settings(render_timeout=1))
    assert outcome.file == "apps/web/main.jsonnet"
    assert "jsonnet evaluation did not finish within the render timeout of 1 s" in outcome.error
    assert "render_timeout" in outcome.error


def test_output_and_input_caps(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "big",
        {
            "apps/web/main.jsonnet": (
                "[{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'c' + i },"
                " data: { v: std.repeat('x', 1000) } } for i in std.range(1, 100)]\n"
            ),
            "plain/cm.yaml": configmap("a") + "data:\n  v: " + "y" * 5000 + "\n",
            **BASE,
            "apps/k/kustomization.yaml": "resources: [../../bases/web, ../../plain]\n",
            "plain/kustomization.yaml": "resources: [cm.yaml]\n",
        },
    )
    small = Settings(render_timeout=30, render_max_bytes=4096)
    outcome = failed(repo, jsonnet_app(), settings=small)
    assert "printed more than the output cap of 4096 bytes (render_max_bytes)" in outcome.error
    outcome = failed(repo, AppSpec(repo_url="u", path="plain", renderer="yaml"), settings=small)
    assert "over the input cap of 4096 bytes (render_max_bytes)" in outcome.error
    outcome = failed(repo, kustomize_app("apps/k"), settings=small)
    assert "more than the input cap of 4096 bytes (render_max_bytes)" in outcome.error
    assert len(rendered(repo, jsonnet_app()).resources) == 100


def test_a_jsonnet_evaluation_past_the_worker_memory_limit_fails(tmp_path: Path):
    repo = GitRepo(tmp_path / "repo")
    repo.commit(
        "huge", {"apps/web/main.jsonnet": "std.length(std.makeArray(400000000, function(i) i))\n"}
    )
    outcome = failed(repo, jsonnet_app())
    assert outcome.file == "apps/web/main.jsonnet"
    assert "the jsonnet worker failed" in outcome.error
    assert "memory allocation error" in outcome.error


def test_the_worker_answers_in_its_protocol(tmp_path: Path):
    # The worker, run as the renderer runs it, on a real repository.
    import subprocess
    import sys

    repo = GitRepo(tmp_path / "repo")
    repo.commit("w", {"m.jsonnet": "{ a: std.extVar('v') }\n"})
    request = {
        "repo": str(repo.path),
        "commit": repo.head(),
        "main": "m.jsonnet",
        "ext_vars": {"v": "1"},
        "tla": {},
        "max_bytes": 1000,
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.renderer.jsonnet_worker"],
        input=json.dumps(request).encode(),
        capture_output=True,
        check=True,
    )
    status, reads, body = result.stdout.split(b"\n", 2)
    assert status == b"ok" and json.loads(body) == {"a": "1"}
    # The paths it read, for git-watcher to tell which commits change the render.
    assert json.loads(reads) == ["m.jsonnet"]
