"""Server-side apply rules, on plain dicts (services/sandbox/apply.py has no I/O)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from services.sandbox.apply import (
    ApplyConflict,
    read_managed_fields,
    record_update,
    server_side_apply,
)
from services.sandbox.fieldsets import (
    decode_fields_v1,
    describe,
    encode_fields_v1,
    field_set,
)


def deployment(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
                    ]
                }
            },
        },
    }
    body["spec"].update(spec)
    return body


def apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    manager: str = "wake",
    *,
    force: bool = False,
) -> dict[str, Any]:
    return server_side_apply(
        live,
        config,
        manager=manager,
        api_version="apps/v1",
        force=force,
        now="2025-01-01T00:00:00Z",
    )


def owners(obj: dict[str, Any]) -> dict[str, set[tuple[str, ...]]]:
    return {e.manager: e.fields for e in read_managed_fields(obj)}


def test_given_no_object_when_applied_then_the_applier_owns_exactly_its_fields() -> None:
    obj = apply(None, deployment())

    entry = obj["metadata"]["managedFields"][0]
    assert entry["manager"] == "wake"
    assert entry["operation"] == "Apply"
    assert entry["fieldsType"] == "FieldsV1"
    assert entry["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"web"}': {
                            ".": {},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {'k:{"containerPort":80}': {".": {}, "f:containerPort": {}}},
                        }
                    }
                }
            },
        },
    }
    assert obj["spec"]["replicas"] == 2


def test_reapplying_the_same_config_changes_nothing() -> None:
    first = apply(None, deployment())
    second = apply(first, deployment())
    assert second == first


def test_a_field_the_applier_stops_applying_is_removed() -> None:
    config = deployment()
    config["metadata"]["labels"]["tier"] = "frontend"
    config["metadata"]["annotations"] = {"note": "x"}
    first = apply(None, config)

    second = apply(first, deployment())

    assert second["metadata"]["labels"] == {"app": "web"}
    assert "annotations" not in second["metadata"]
    assert ("f:metadata", "f:labels", "f:tier") not in owners(second)["wake"]


def test_a_dropped_field_another_manager_also_owns_stays() -> None:
    config = deployment()
    config["metadata"]["labels"]["tier"] = "frontend"
    first = apply(None, config)
    co_owned = apply(first, {**copy.deepcopy(config), "spec": {}}, manager="other")

    second = apply(co_owned, deployment())

    assert second["metadata"]["labels"]["tier"] == "frontend"


def test_changing_a_field_another_manager_owns_conflicts_and_names_both() -> None:
    first = apply(None, deployment())
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}

    with pytest.raises(ApplyConflict) as caught:
        apply(first, {**other, "spec": {"replicas": 5}}, manager="scaler")

    assert caught.value.message == (
        'Apply failed with 1 conflict: conflict with "wake": .spec.replicas'
    )
    assert caught.value.causes() == [
        {
            "type": "FieldManagerConflict",
            "message": 'conflict with "wake"',
            "field": ".spec.replicas",
        }
    ]


def test_applying_the_same_value_as_another_manager_shares_ownership() -> None:
    first = apply(None, deployment())
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}

    shared = apply(first, {**other, "spec": {"replicas": 2}}, manager="scaler")

    assert ("f:spec", "f:replicas") in owners(shared)["wake"]
    assert ("f:spec", "f:replicas") in owners(shared)["scaler"]


def test_force_moves_ownership_to_the_applier() -> None:
    first = apply(None, deployment())
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}

    forced = apply(first, {**other, "spec": {"replicas": 5}}, manager="scaler", force=True)

    assert forced["spec"]["replicas"] == 5
    assert ("f:spec", "f:replicas") not in owners(forced)["wake"]
    assert owners(forced)["scaler"] == {("f:spec", "f:replicas")}
    # and when the old owner drops the field, the new owner's value stays
    without = deployment()
    del without["spec"]["replicas"]
    assert apply(forced, without)["spec"]["replicas"] == 5


def test_a_nested_conflict_is_described_by_merge_key() -> None:
    first = apply(None, deployment())
    changed = deployment()
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.28"

    with pytest.raises(ApplyConflict) as caught:
        apply(first, changed, manager="other")

    assert [c.path for c in caught.value.conflicts] == [
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"web"}', "f:image")
    ]
    assert '.spec.template.spec.containers[name="web"].image' in caught.value.message


def test_keyed_list_items_of_two_managers_merge() -> None:
    first = apply(None, deployment())
    sidecar = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "proxy", "image": "envoy"}]}}},
    }

    both = apply(first, sidecar, manager="injector")
    names = [c["name"] for c in both["spec"]["template"]["spec"]["containers"]]
    assert names == ["web", "proxy"]

    # the first manager re-applying its own config leaves the other's item alone
    again = apply(both, deployment())
    assert [c["name"] for c in again["spec"]["template"]["spec"]["containers"]] == names


def test_an_atomic_list_is_replaced_whole() -> None:
    config = deployment()
    config["spec"]["template"]["spec"]["containers"][0]["args"] = ["--a", "--b"]
    first = apply(None, config)
    config["spec"]["template"]["spec"]["containers"][0]["args"] = ["--c"]

    second = apply(first, config)

    assert second["spec"]["template"]["spec"]["containers"][0]["args"] == ["--c"]


def test_finalizers_are_a_set_owned_per_value() -> None:
    config = deployment()
    config["metadata"]["finalizers"] = ["example.com/a"]
    obj = apply(None, config)

    assert ("f:metadata", "f:finalizers", 'v:"example.com/a"') in owners(obj)["wake"]


def test_an_update_takes_the_fields_it_changes_from_every_applier() -> None:
    first = apply(None, deployment())
    edited = copy.deepcopy(first)
    edited["spec"]["replicas"] = 7

    updated = record_update(
        first, edited, manager="kubectl-edit", api_version="apps/v1", now="2025-01-02T00:00:00Z"
    )

    entries = {e.manager: e for e in read_managed_fields(updated)}
    assert entries["kubectl-edit"].operation == "Update"
    assert entries["kubectl-edit"].fields == {("f:spec", "f:replicas")}
    assert ("f:spec", "f:replicas") not in entries["wake"].fields
    with pytest.raises(ApplyConflict) as caught:
        apply(updated, deployment())
    assert 'conflict with "kubectl-edit" using apps/v1 at 2025-01-02T00:00:00Z' in (
        caught.value.message
    )


def test_a_create_is_an_update_owning_every_field() -> None:
    created = record_update(
        None, deployment(), manager="kubectl-create", api_version="apps/v1", now="t"
    )
    assert owners(created)["kubectl-create"] == field_set(deployment())


def test_fields_v1_round_trips() -> None:
    fields = field_set(deployment())
    assert decode_fields_v1(encode_fields_v1(fields)) == fields


def test_paths_are_described_as_the_api_server_prints_them() -> None:
    assert describe(("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:name")) == (
        '.spec.ports[port=80,protocol="TCP"].name'
    )
