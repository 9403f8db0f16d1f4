"""Patch formats and selectors, on plain values (no server)."""

from __future__ import annotations

import pytest

from services.sandbox.patching import PatchError, json_patch, merge_patch, strategic_merge_patch
from services.sandbox.selectors import SelectorError, parse_field_selector, parse_label_selector

POD_SPEC = {
    "spec": {
        "containers": [
            {"name": "web", "image": "nginx:1", "ports": [{"containerPort": 80}]},
            {"name": "proxy", "image": "envoy:1"},
        ],
        "args": ["--a"],
    }
}


def test_merge_patch_merges_maps_deletes_nulls_and_replaces_lists() -> None:
    patched = merge_patch(
        {"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"b": None, "d": 3}, "l": [3]}
    )
    assert patched == {"a": {"c": 2, "d": 3}, "l": [3]}


def test_strategic_merge_patch_merges_containers_by_name() -> None:
    patched = strategic_merge_patch(
        POD_SPEC, {"spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}
    )
    web, proxy = patched["spec"]["containers"]
    assert web == {"name": "web", "image": "nginx:2", "ports": [{"containerPort": 80}]}
    assert proxy["image"] == "envoy:1"


def test_strategic_merge_patch_honours_kubectl_directives() -> None:
    patched = strategic_merge_patch(
        POD_SPEC,
        {
            "spec": {
                "$setElementOrder/containers": [{"name": "proxy"}, {"name": "web"}],
                "containers": [{"name": "web", "image": "nginx:3"}],
            }
        },
    )
    assert [c["name"] for c in patched["spec"]["containers"]] == ["proxy", "web"]

    deleted = strategic_merge_patch(
        POD_SPEC, {"spec": {"containers": [{"name": "proxy", "$patch": "delete"}]}}
    )
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["web"]


def test_json_patch_applies_operations_and_names_a_bad_path() -> None:
    patched = json_patch(
        POD_SPEC,
        [
            {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:9"},
            {"op": "add", "path": "/spec/args/-", "value": "--b"},
            {"op": "remove", "path": "/spec/containers/1"},
        ],
    )
    assert patched["spec"]["containers"][0]["image"] == "nginx:9"
    assert patched["spec"]["args"] == ["--a", "--b"]
    assert len(patched["spec"]["containers"]) == 1

    with pytest.raises(
        PatchError, match=r"operation 0 \(replace /spec/nope/x\): path /spec/nope does not exist"
    ):
        json_patch(POD_SPEC, [{"op": "replace", "path": "/spec/nope/x", "value": 1}])


@pytest.mark.parametrize(
    ("selector", "matching"),
    [
        ("app=web", {"web", "web-canary"}),
        ("app==web", {"web", "web-canary"}),
        ("app!=web", {"db", "bare"}),
        ("app in (web,db)", {"web", "web-canary", "db"}),
        ("app notin (web)", {"db", "bare"}),
        ("track", {"web-canary"}),
        ("!track", {"web", "db", "bare"}),
        ("app=web,track=canary", {"web-canary"}),
        ("app in (web, db),!track", {"web", "db"}),
        ("", {"web", "web-canary", "db", "bare"}),
    ],
)
def test_label_selectors_match_like_the_api_server(selector: str, matching: set[str]) -> None:
    objects = {
        "web": {"app": "web"},
        "web-canary": {"app": "web", "track": "canary"},
        "db": {"app": "db"},
        "bare": {},
    }
    parsed = parse_label_selector(selector)
    assert {name for name, labels in objects.items() if parsed.matches(labels)} == matching


@pytest.mark.parametrize("selector", ["app in ()", "a b", "app=(x", "=web", "app in (a b)"])
def test_a_malformed_label_selector_is_refused(selector: str) -> None:
    with pytest.raises(SelectorError, match="unable to parse requirement"):
        parse_label_selector(selector)


def test_an_empty_label_value_selects_the_empty_value() -> None:
    assert parse_label_selector("app=").matches({"app": ""})
    assert not parse_label_selector("app=").matches({"app": "web"})


def test_field_selectors_know_their_fields() -> None:
    selector = parse_field_selector("metadata.name=web,metadata.namespace!=kube-system", "Pod")
    assert selector.matches({"metadata": {"name": "web", "namespace": "demo"}})
    assert not selector.matches({"metadata": {"name": "web", "namespace": "kube-system"}})
    assert parse_field_selector("status.phase=Running", "Pod").matches(
        {"status": {"phase": "Running"}}
    )
    with pytest.raises(SelectorError, match=r"spec\.replicas"):
        parse_field_selector("spec.replicas=3", "Deployment")
