"""The yaml renderer's core (manifests.py, paths.py, selection.py), with literals."""

from __future__ import annotations

import pytest

from events.bundle import Bundle, encode_bundle
from services.renderer.manifests import RenderError, render
from services.renderer.options import RENDERER_OPTIONS, unknown_options
from services.renderer.paths import is_manifest, link_target
from services.renderer.selection import (
    choose,
    directory_entries,
    jsonnet_entries,
    jsonnet_libs,
    unavailable,
)
from services.wiring.git import RepoPath

DEPLOYMENT = b"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
"""


def resources(files: dict[str, bytes], namespace: str = "shop") -> list[dict]:
    return [item.resource for item in render(files, namespace=namespace)]


def test_multi_document_yaml_skips_empty_documents_and_records_each_source_line():
    text = b"""\
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: a
---
---
# only a comment
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: b
"""
    rendered = render({"apps/web/cms.yaml": text}, namespace="shop")
    assert [(r.resource["metadata"]["name"], r.source) for r in rendered] == [
        ("a", "apps/web/cms.yaml:2"),
        ("b", "apps/web/cms.yaml:10"),
    ]


def test_namespaced_kinds_get_the_app_namespace_unless_they_have_one():
    out = resources(
        {
            "a.yaml": DEPLOYMENT,
            "b.yaml": b"apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: other}\n",
            "c.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: ''}\n",
        }
    )
    assert {(r["kind"], r["metadata"]["namespace"]) for r in out} == {
        ("Deployment", "shop"),
        ("Service", "other"),
        ("ConfigMap", "shop"),
    }


def test_cluster_scoped_kinds_have_no_namespace_including_those_of_a_cluster_scoped_crd():
    crd = b"""\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backups.example.com
spec:
  group: example.com
  scope: Cluster
  names: {kind: Backup, plural: backups}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {kind: Widget, plural: widgets}
"""
    custom = b"""\
apiVersion: example.com/v1
kind: Backup
metadata: {name: nightly, namespace: ignored}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: reader}
"""
    out = resources({"crds.yaml": crd, "custom.yaml": custom})
    namespaces = {r["metadata"]["name"]: r["metadata"].get("namespace") for r in out}
    assert namespaces == {
        "backups.example.com": None,
        "widgets.example.com": None,
        "nightly": None,
        "w": "shop",
        "shop": None,
        "reader": None,
    }


def test_a_list_is_expanded_with_the_line_of_each_item():
    text = b"""\
apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: one
  - apiVersion: v1
    kind: ConfigMap
    metadata:
      name: two
"""
    rendered = render({"list.yaml": text}, namespace="shop")
    assert [(r.resource["metadata"]["name"], r.source) for r in rendered] == [
        ("one", "list.yaml:4"),
        ("two", "list.yaml:8"),
    ]
    with pytest.raises(RenderError) as caught:
        render({"list.yaml": text.replace(b"name: two", b"labels: {}")}, namespace="shop")
    assert (caught.value.file, caught.value.line) == ("list.yaml", 8)


def test_json_files_are_manifests_too():
    text = b'{\n  "apiVersion": "v1",\n  "kind": "ConfigMap",\n  "metadata": {"name": "j"}\n}\n'
    rendered = render({"app/cm.json": text}, namespace="shop")
    assert rendered[0].source == "app/cm.json:1"
    assert rendered[0].resource["metadata"] == {"name": "j", "namespace": "shop"}
    with pytest.raises(RenderError) as caught:
        render({"app/cm.json": b'{\n  "apiVersion": "v1",\n  "kind" "x"\n}'}, namespace="n")
    assert (caught.value.file, caught.value.line) == ("app/cm.json", 3)
    assert "invalid JSON" in caught.value.message


def test_a_missing_name_is_an_error_naming_file_and_document_line():
    text = DEPLOYMENT + b"---\napiVersion: v1\nkind: Service\nmetadata:\n  labels: {a: b}\n"
    with pytest.raises(RenderError) as caught:
        render({"apps/web/all.yaml": text}, namespace="shop")
    error = caught.value
    assert (error.file, error.line) == ("apps/web/all.yaml", 8)
    assert error.message == "Service: missing metadata.name"
    assert str(error) == "apps/web/all.yaml:8: Service: missing metadata.name"


def test_a_hook_may_be_named_by_generate_name_and_nothing_else_may():
    hook = (
        b"apiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: schema-migrate-\n"
        b"  annotations: {argocd.argoproj.io/hook: PreSync}\n"
        b"---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  generateName: smoke-\n"
        b"  annotations: {helm.sh/hook: post-install}\n"
    )
    rendered = render({"hooks.yaml": hook}, namespace="shop")
    assert [r.resource["metadata"]["generateName"] for r in rendered] == [
        "schema-migrate-",
        "smoke-",
    ]
    assert all("name" not in r.resource["metadata"] for r in rendered)
    plain = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: config-}\n"
    with pytest.raises(RenderError, match="generateName is for hooks only"):
        render({"plain.yaml": plain}, namespace="shop")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"kind: ConfigMap\nmetadata: {name: x}\n", "missing apiVersion"),
        (b"apiVersion: v1\nmetadata: {name: x}\n", "missing kind"),
        (b"apiVersion: v1\nkind: ConfigMap\n", "ConfigMap: missing metadata"),
        (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 7}\n", "not a string"),
        (b"- a\n- b\n", "must be a mapping"),
    ],
)
def test_what_every_resource_must_have(text: bytes, message: str):
    with pytest.raises(RenderError, match=message) as caught:
        render({"x.yaml": text}, namespace="shop")
    assert (caught.value.file, caught.value.line) == ("x.yaml", 1)


def test_a_yaml_syntax_error_names_the_file_and_the_line_of_the_problem():
    text = b"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: broken
data:
  key: "unterminated
  other: x
"""
    with pytest.raises(RenderError) as caught:
        render({"apps/web/broken.yaml": text, "apps/web/ok.yaml": DEPLOYMENT}, namespace="s")
    assert caught.value.file == "apps/web/broken.yaml"
    assert caught.value.line == 8
    assert caught.value.message.startswith("invalid YAML: ")
    assert "quoted scalar that starts at line 6" in caught.value.message

    with pytest.raises(RenderError) as caught:
        render({"bad.yaml": b"a: 1\n b: 2\n"}, namespace="s")
    assert caught.value.line == 2
    assert caught.value.message.startswith("invalid YAML: mapping values are not allowed")


def test_a_key_given_twice_is_an_error_at_its_second_line():
    text = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n"
    with pytest.raises(RenderError, match="duplicate key 'name'") as caught:
        render({"dup.yaml": text}, namespace="s")
    assert caught.value.line == 5


def test_a_resource_defined_twice_names_both_files():
    with pytest.raises(RenderError) as caught:
        render({"b/second.yaml": DEPLOYMENT, "a/first.yaml": DEPLOYMENT}, namespace="shop")
    error = caught.value
    assert (error.file, error.line) == ("b/second.yaml", 1)
    assert "Deployment shop/web (apps/v1) is defined twice" in error.message
    assert "a/first.yaml:1" in error.message and "b/second.yaml:1" in error.message
    # The same name in two namespaces is two resources.
    other = DEPLOYMENT.replace(b"name: web", b"name: web\n  namespace: other")
    assert len(resources({"a.yaml": DEPLOYMENT, "b.yaml": other})) == 2


def test_yaml_is_read_as_kubernetes_reads_it():
    text = b"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: c
  annotations:
    released: 2024-01-02
data:
  80: http
  on: yes
base: &base {a: 1}
merged:
  <<: *base
  b: 2
"""
    (resource,) = resources({"c.yaml": text})
    assert resource["metadata"]["annotations"] == {"released": "2024-01-02"}
    assert resource["data"] == {"80": "http", "true": True}
    assert resource["merged"] == {"a": 1, "b": 2}


def test_the_bundle_does_not_depend_on_the_order_files_come_in():
    files = {
        "z.yaml": DEPLOYMENT,
        "a.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
        "m/n.yaml": b"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    }

    def bundle_of(ordered: dict[str, bytes]) -> bytes:
        rendered = render(ordered, namespace="shop")
        return encode_bundle(
            Bundle(
                app="web",
                repo_url="r",
                commit="c",
                path=".",
                renderer="yaml",
                resources=[r.resource for r in rendered],
            )
        )

    forwards = bundle_of(files)
    backwards = bundle_of(dict(reversed(list(files.items()))))
    assert forwards == backwards
    reordered_keys = {
        "a.yaml": b"metadata: {name: c}\nkind: ConfigMap\napiVersion: v1\n",
        "z.yaml": DEPLOYMENT,
        "m/n.yaml": files["m/n.yaml"],
    }
    assert bundle_of(reordered_keys) == forwards


def test_an_unreadable_file_is_named():
    with pytest.raises(RenderError, match="not UTF-8") as caught:
        render({"bin.yaml": b"\xff\xfe\x00garbage"}, namespace="s")
    assert caught.value.file == "bin.yaml"


def test_manifest_files_by_name():
    assert is_manifest("a.yaml") and is_manifest("a.YML") and is_manifest("a.json")
    assert not is_manifest("README.md") and not is_manifest("yaml")


APP = RepoPath("apps/web")


@pytest.mark.parametrize(
    ("link", "target", "resolved"),
    [
        ("apps/web/cm.yaml", "base/cm.yaml", "apps/web/base/cm.yaml"),
        ("apps/web/overlay/cm.yaml", "../base/cm.yaml", "apps/web/base/cm.yaml"),
        ("apps/web/here.yaml", "./there.yaml", "apps/web/there.yaml"),
        ("apps/web/all", ".", "apps/web"),
    ],
)
def test_a_symlink_inside_the_app_path_resolves(link: str, target: str, resolved: str):
    assert link_target(RepoPath(link), target, app_path=APP) == resolved


@pytest.mark.parametrize(
    ("link", "target", "complaint"),
    [
        ("apps/web/cm.yaml", "../api/cm.yaml", "leaves the app path apps/web"),
        ("apps/web/cm.yaml", "../../../etc/passwd", "leaves the repository"),
        ("apps/web/cm.yaml", "/etc/passwd", "leaves the repository (absolute target)"),
        ("apps/web/up", "..", "leaves the app path"),
        ("apps/web/cm.yaml", "", "empty target"),
    ],
)
def test_a_symlink_out_of_the_app_path_is_refused(link: str, target: str, complaint: str):
    with pytest.raises(RenderError, match=complaint.replace("(", r"\(").replace(")", r"\)")) as c:
        link_target(RepoPath(link), target, app_path=APP)
    assert c.value.file == link


@pytest.mark.parametrize(
    ("top_level", "options", "chosen"),
    [
        ({"a.yaml", "b.json"}, {}, "yaml"),
        ({"kustomization.yaml", "a.yaml"}, {}, "kustomize"),
        ({"kustomization.yml"}, {}, "kustomize"),
        ({"Kustomization"}, {}, "kustomize"),
        ({"Chart.yaml", "values.yaml", "templates"}, {}, "helm"),
        ({"main.jsonnet", "lib.libsonnet"}, {}, "jsonnet"),
        ({"env.jsonnet"}, {"main": "env.jsonnet"}, "jsonnet"),
        # A folder of .jsonnet files, as Argo CD's directory source reads it (issue 8).
        ({"env.jsonnet"}, {}, "jsonnet"),
        ({"guestbook-ui.jsonnet", "params.libsonnet", "extra.yaml"}, {}, "jsonnet"),
        ({"params.libsonnet", "a.yaml"}, {}, "yaml"),
        ({"kustomization.yaml", "Chart.yaml"}, {}, "kustomize"),
    ],
)
def test_auto_detects_the_renderer_from_the_top_of_the_app(
    top_level: set[str], options: dict[str, str], chosen: str
):
    assert choose("auto", app_path=APP, top_level=frozenset(top_level), options=options) == chosen


def test_a_named_renderer_is_used_as_named_and_an_unknown_one_is_an_error():
    assert unavailable("auto") is None and unavailable("helm") is None
    assert choose("yaml", app_path=APP, top_level=frozenset({"kustomization.yaml"})) == "yaml"
    assert choose("jsonnet", app_path=APP, top_level=frozenset()) == "jsonnet"
    with pytest.raises(RenderError, match="unknown renderer 'ksonnet'") as caught:
        choose("ksonnet", app_path=APP, top_level=frozenset())
    assert caught.value.file == "apps/web"


def test_jsonnet_entries_are_the_named_file_main_jsonnet_or_every_top_level_file():
    top = frozenset({"main.jsonnet", "other.jsonnet", "lib.libsonnet"})
    assert jsonnet_entries({"main": "env/prod.jsonnet"}, top) == ["env/prod.jsonnet"]
    assert jsonnet_entries({}, top) == ["main.jsonnet"]
    assert jsonnet_entries({}, frozenset({"b.jsonnet", "a.jsonnet"})) is None
    assert directory_entries(frozenset({"b.jsonnet", "a.jsonnet", "k.libsonnet", "c.yaml"})) == [
        "a.jsonnet",
        "b.jsonnet",
    ]


def test_jsonnet_libs_are_the_comma_separated_folders_in_order():
    assert jsonnet_libs({}) == []
    assert jsonnet_libs({"libs": "vendor, lib ,"}) == ["vendor", "lib"]


def test_an_unknown_renderer_option_is_named_with_the_known_ones():
    assert unknown_options({"main": "x.jsonnet"}) is None
    assert unknown_options({}) is None
    message = unknown_options({"mian": "x.jsonnet", "main": "y"})
    assert message == "unknown renderer option 'mian': the known ones are libs, main"
    assert set(RENDERER_OPTIONS) == {"main", "libs"}


def billion_laughs(levels: int = 12, fanout: int = 10) -> bytes:
    """A ConfigMap whose last alias would expand to fanout**levels strings."""
    lines = ["apiVersion: v1", "kind: ConfigMap", "metadata: {name: lol}", "lols:"]
    lines.append('  l0: &l0 "lol"')
    for level in range(1, levels + 1):
        refs = ", ".join([f"*l{level - 1}"] * fanout)
        lines.append(f"  l{level}: &l{level} [{refs}]")
    lines.append(f"data: {{bomb: *l{levels}}}")
    return ("\n".join(lines) + "\n").encode()


def test_a_yaml_alias_bomb_is_refused_before_anything_is_built():
    import tracemalloc

    bomb = billion_laughs()  # 10**12 strings once expanded: far beyond any memory
    assert len(bomb) < 2000
    tracemalloc.start()
    try:
        with pytest.raises(RenderError, match="alias bomb") as caught:
            render({"apps/web/lol.yaml": bomb}, namespace="shop")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (caught.value.file, caught.value.line) == ("apps/web/lol.yaml", 1)
    # The expansion was measured on the composed graph, never built.
    assert peak < 5 * 1024 * 1024


def test_a_self_referencing_alias_is_refused_and_ordinary_aliases_are_read():
    with pytest.raises(RenderError, match="refers to a node that contains it") as caught:
        render(
            {
                "loop.yaml": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
                b"data: &d {a: *d}\n"
            },
            namespace="s",
        )
    assert caught.value.file == "loop.yaml"
    # A small amplification (a shared block used a few times) is fine.
    shared = billion_laughs(levels=3, fanout=3)
    (resource,) = resources({"ok.yaml": shared})
    assert len(resource["data"]["bomb"]) == 3
    assert resource["data"]["bomb"][0][0] == ["lol", "lol", "lol"]


def test_a_custom_kind_without_its_crd_keeps_the_namespace_it_was_given():
    # Only the cluster's discovery knows the scope of a kind whose CRD is installed
    # separately: the planner places it, so a cluster-scoped one never gets "shop".
    custom = b"""\
apiVersion: example.com/v1
kind: Region
metadata: {name: eu-west}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: tools}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
"""
    out = resources({"custom.yaml": custom})
    namespaces = {r["kind"]: r["metadata"].get("namespace") for r in out}
    assert namespaces == {"Region": None, "Widget": "tools", "HTTPRoute": None, "Ingress": "shop"}
