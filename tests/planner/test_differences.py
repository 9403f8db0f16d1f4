"""Server-owned fields, ignore rules and field-level differences, with literals."""

from __future__ import annotations

from events.payloads import IgnoreRule, ResourceRef
from services.planner.planning import change_for
from services.resources.differences import (
    changed_pointers,
    comparable,
    ignored_pointers,
    parse_pointer,
    without_pointers,
)

DEPLOY = ResourceRef(api_version="apps/v1", kind="Deployment", name="web", namespace="shop")


def deployment(replicas: int, image: str = "web:1", **metadata: object) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", **metadata},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
        },
    }


def test_pointers_follow_rfc_6901() -> None:
    assert parse_pointer("/metadata/annotations/a~1b~0c") == ["metadata", "annotations", "a/b~c"]
    assert parse_pointer("spec/replicas") == ["spec", "replicas"]
    assert parse_pointer("") == []


def test_removing_pointers_handles_indexes_wildcards_and_absent_paths() -> None:
    obj = deployment(3)
    clean = without_pointers(
        obj, ["/spec/replicas", "/spec/template/spec/containers/*/image", "/no/such/path"]
    )
    assert "replicas" not in clean["spec"]
    assert clean["spec"]["template"]["spec"]["containers"] == [{"name": "web"}]
    assert obj["spec"]["replicas"] == 3, "the input is left as it is"
    assert (
        without_pointers(obj, ["/spec/template/spec/containers/0"])["spec"]["template"]["spec"][
            "containers"
        ]
        == []
    )


def test_a_rule_applies_by_kind_group_name_and_namespace() -> None:
    rules = [
        IgnoreRule(json_pointers=["/spec/replicas"], kind="Deployment", group="apps"),
        IgnoreRule(json_pointers=["/a"], kind="Deployment", name="other"),
        IgnoreRule(json_pointers=["/b"], namespace="elsewhere"),
        IgnoreRule(json_pointers=["/c"]),
    ]
    assert ignored_pointers(rules, DEPLOY) == ["/spec/replicas", "/c"]


def test_changed_pointers_name_each_differing_field() -> None:
    before = deployment(2, labels={"a": "1"})
    after = deployment(3, image="web:2", labels={"b": "1"})
    assert changed_pointers(before, after) == [
        "/metadata/labels/a",
        "/metadata/labels/b",
        "/spec/replicas",
        "/spec/template/spec/containers/0/image",
    ]
    assert changed_pointers({"l": [1, 2]}, {"l": [1]}) == ["/l"]
    assert changed_pointers(before, before) == []


def test_server_owned_fields_and_server_defaults_are_no_change() -> None:
    # The live object and the dry run both carry the defaults the server added.
    live = deployment(2, resourceVersion="7", generation=3, uid="u", managedFields=[{}])
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    live["status"] = {"replicas": 2}
    dry_run = deployment(2, resourceVersion="8", generation=3, uid="u", managedFields=[{}, {}])
    dry_run["spec"]["strategy"] = {"type": "RollingUpdate"}
    change = change_for(deployment(2), dry_run, live)
    assert (change.action, change.diff) == ("unchanged", "")


def test_an_ignored_path_neither_shows_in_the_diff_nor_counts_as_a_change() -> None:
    rules = [IgnoreRule(json_pointers=["/spec/replicas"], kind="Deployment")]
    change = change_for(deployment(2), deployment(2), deployment(5), rules)
    assert change.action == "unchanged"
    change = change_for(
        deployment(2, image="web:2"), deployment(2, image="web:2"), deployment(5), rules
    )
    assert change.action == "update"
    assert "web:2" in change.diff
    assert "replicas" not in change.diff


def test_comparable_views_drop_status_and_ignored_paths() -> None:
    obj = deployment(2)
    obj["status"] = {"readyReplicas": 1}
    view = comparable(obj, [IgnoreRule(json_pointers=["/spec/replicas"])], DEPLOY)
    assert "status" not in view
    assert "replicas" not in view["spec"]
