"""The planner's pure core: changes, diffs, redaction, prunes, labels, policy -- with literals."""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from events import redaction
from events.payloads import (
    ApprovalRequested,
    AppSpec,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    ResourceError,
    ResourceRef,
)
from services.planner import policy
from services.planner.planning import (
    Refusal,
    change_for,
    normalized,
    plan,
    prune_candidates,
    summary,
)
from services.resources import namespaces
from services.resources.desired import crd_scopes, prepare
from services.resources.labels import inventory_labels, is_labelled_for, with_inventory_labels

COMMIT = "3f1e9a4c2b7d8e6f0a1b2c3d4e5f60718293a4b5"
BUNDLE = "0" * 64


def deployment(replicas: int = 2, image: str = "web:1.0") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
        },
    }


def served(obj: dict[str, Any], **server: Any) -> dict[str, Any]:
    """`obj` as an API server returns it: server-owned fields added."""
    out = copy.deepcopy(obj)
    out["metadata"].update(
        {
            "uid": server.get("uid", "u-1"),
            "resourceVersion": server.get("rv", "7"),
            "generation": 3,
            "creationTimestamp": "2026-11-26T09:00:00Z",
            "managedFields": [{"manager": "wake", "operation": "Apply"}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"secret":"x"}'},
        }
    )
    out["status"] = {"observedGeneration": 3}
    return out


def ref(obj: dict[str, Any]) -> ResourceRef:
    metadata = obj["metadata"]
    return ResourceRef(
        api_version=obj["apiVersion"],
        kind=obj["kind"],
        name=metadata["name"],
        namespace=metadata.get("namespace", ""),
    )


NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}


# --- create / update / unchanged ------------------------------------------------------


def test_nothing_live_is_a_create_with_the_whole_object_as_diff() -> None:
    desired = deployment()
    change = change_for(desired, served(desired, rv="1"), None)
    assert change.action == "create"
    assert change.diff.startswith(
        "--- live apps/v1/Deployment shop/web\n+++ desired apps/v1/Deployment shop/web\n"
    )
    assert "+  replicas: 2" in change.diff
    assert "resourceVersion" not in change.diff and "uid" not in change.diff
    assert "status" not in change.diff and "managedFields" not in change.diff


def test_server_owned_fields_alone_make_no_update() -> None:
    desired = deployment()
    live = served(desired, uid="u-1", rv="7")
    dry_run = served(desired, uid="u-1", rv="8")
    dry_run["status"] = {"observedGeneration": 4}
    dry_run["metadata"]["annotations"] = {}
    change = change_for(desired, dry_run, live)
    assert change.action == "unchanged"
    assert change.diff == ""


def test_a_changed_field_is_an_update_with_a_readable_diff() -> None:
    live = served(deployment(replicas=2))
    dry_run = served(deployment(replicas=3, image="web:1.1"))
    change = change_for(deployment(replicas=3, image="web:1.1"), dry_run, live)
    assert change.action == "update"
    assert "-  replicas: 2\n+  replicas: 3" in change.diff
    assert "-      - image: web:1.0" in change.diff
    assert "+      - image: web:1.1" in change.diff
    assert change.diff.endswith("\n")


def test_the_comparison_is_against_the_dry_run_not_the_manifest() -> None:
    # The server defaults a field the manifest leaves out: not a change.
    desired = deployment()
    live = served(desired)
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    dry_run = copy.deepcopy(live)
    assert change_for(desired, dry_run, live).action == "unchanged"


def test_a_multi_line_value_diffs_line_by_line() -> None:
    def config(text: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "conf", "namespace": "shop"},
            "data": {"app.ini": text},
        }

    change = change_for(
        config("a = 1\nb = 3\n"), served(config("a = 1\nb = 3\n")), served(config("a = 1\nb = 2\n"))
    )
    assert change.action == "update"
    assert "-    b = 2\n+    b = 3" in change.diff
    assert "app.ini: |" in change.diff


def test_normalized_drops_only_what_the_server_owns() -> None:
    obj = served(deployment())
    obj["metadata"]["annotations"]["team"] = "shop"
    clean = normalized(obj)
    assert clean["metadata"] == {
        "name": "web",
        "namespace": "shop",
        "labels": {"app": "web"},
        "annotations": {"team": "shop"},
    }
    assert "status" not in clean
    assert obj["metadata"]["uid"] == "u-1"  # the input is left alone


# --- secrets ---------------------------------------------------------------------------


def secret(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "type": "Opaque",
        "data": data,
    }


def short(value: str) -> str:
    # Keyed with this process's digest key (events.redaction): an unsalted
    # sha256 of a weak value could be confirmed offline.
    return redaction.secret_digest(value)


def test_a_changed_secret_shows_as_changed_without_either_value() -> None:
    old, new = "b2xkLXBhc3N3b3Jk", "bmV3LXBhc3N3b3Jk"
    change = change_for(
        secret(password=new), served(secret(password=new)), served(secret(password=old))
    )
    assert change.action == "update"
    assert old not in change.diff and new not in change.diff
    assert f"-  password: <redacted hmac-sha256:{short(old)}>" in change.diff
    assert f"+  password: <redacted hmac-sha256:{short(new)}>" in change.diff
    assert '{"secret":"x"}' not in change.diff  # the last-applied annotation is gone too


def test_a_new_secret_shows_keys_not_values() -> None:
    desired = secret(token="c2VjcmV0LXRva2Vu")
    desired["stringData"] = {"plain": "hunter2"}
    change = change_for(desired, None, None)
    assert change.action == "create"
    assert "c2VjcmV0LXRva2Vu" not in change.diff and "hunter2" not in change.diff
    assert f"+  plain: <redacted hmac-sha256:{short('hunter2')}>" in change.diff


def test_an_unchanged_secret_has_no_diff() -> None:
    same = secret(password="cGFzcw==")
    assert change_for(same, served(same), served(same)).action == "unchanged"


# --- without a dry run -----------------------------------------------------------------


def test_a_refused_dry_run_is_recorded_on_its_change() -> None:
    refusal = Refusal(status_code=422, reason="Invalid", message="spec.replicas: must be >= 0")
    created = change_for(deployment(replicas=-1), refusal, None)
    assert created.action == "create"
    assert created.error == "dry run refused: 422 Invalid: spec.replicas: must be >= 0"
    assert "replicas: -1" in created.diff
    updated = change_for(deployment(replicas=-1), refusal, served(deployment()))
    assert (updated.action, updated.diff) == ("update", "")
    assert updated.error


def test_without_a_dry_run_the_fields_sent_are_compared() -> None:
    desired = deployment()
    assert change_for(desired, None, None).action == "create"
    live = served(desired)
    live["spec"]["strategy"] = {"type": "RollingUpdate"}
    assert change_for(desired, None, live).action == "unchanged"
    assert change_for(deployment(replicas=5), None, live).action == "update"


def test_a_bad_wave_annotation_is_an_error_naming_the_resource() -> None:
    desired = deployment()
    desired["metadata"]["annotations"] = {"wake.dev/wave": "early"}
    change = change_for(desired, served(desired), None)
    assert "Deployment shop/web" in change.error and "'early'" in change.error
    desired["metadata"]["annotations"] = {"wake.dev/wave": "-2"}
    assert change_for(desired, served(desired), None).wave == -2


# --- whole plans -----------------------------------------------------------------------


def test_a_plan_orders_changes_as_they_will_be_applied() -> None:
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"ports": [{"port": 80}]},
    }
    desired = [deployment(), service, NAMESPACE]
    result = plan(desired, {}, {}, [], prune=True)
    assert [c.ref.kind for c in result.changes] == ["Namespace", "Service", "Deployment"]
    assert [c.action for c in result.changes] == ["create"] * 3
    assert result.prune == []


def test_refs_no_longer_desired_are_pruned_when_the_app_prunes() -> None:
    old_config = ResourceRef(api_version="v1", kind="ConfigMap", name="old", namespace="shop")
    old_deploy = ResourceRef(api_version="apps/v1", kind="Deployment", name="old", namespace="shop")
    inventory = [ref(NAMESPACE), old_config, ref(deployment()), old_deploy]
    live = {ref(NAMESPACE): served(NAMESPACE), ref(deployment()): served(deployment())}
    dry_run = {k: v for k, v in live.items()}
    result = plan([NAMESPACE, deployment()], dry_run, live, inventory, prune=True)
    assert [c.action for c in result.changes] == ["unchanged", "unchanged"]
    # Deployments go before the ConfigMaps they read.
    assert result.prune == [old_deploy, old_config]
    assert summary(result.changes, result.prune) == "2 to prune"

    kept = plan([NAMESPACE, deployment()], dry_run, live, inventory, prune=False)
    assert kept.prune == []


def test_a_new_api_version_of_the_same_object_is_not_a_prune() -> None:
    old = ResourceRef(api_version="networking.k8s.io/v1beta1", kind="Ingress", name="web")
    new = ResourceRef(api_version="networking.k8s.io/v1", kind="Ingress", name="web")
    assert prune_candidates([new], [old]) == []
    moved = ResourceRef(
        api_version="networking.k8s.io/v1", kind="Ingress", name="web", namespace="b"
    )
    assert prune_candidates([moved], [new]) == [new]


def test_a_prune_candidate_sorts_by_its_live_wave() -> None:
    early = ResourceRef(api_version="v1", kind="ConfigMap", name="early", namespace="shop")
    late = ResourceRef(api_version="v1", kind="ConfigMap", name="late", namespace="shop")
    live_late = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "late", "namespace": "shop", "annotations": {"wake.dev/wave": "5"}},
    }
    result = plan([], {}, {late: live_late, early: None}, [early, late], prune=True)
    assert result.prune == [late, early]


def test_summary_counts_each_kind_of_change() -> None:
    result = plan(
        [NAMESPACE, deployment()],
        {ref(deployment()): Refusal(status_code=403, reason="Forbidden", message="no")},
        {ref(deployment()): served(deployment())},
        [ResourceRef(api_version="v1", kind="ConfigMap", name="old", namespace="shop")],
        prune=True,
    )
    assert summary(result.changes, result.prune) == (
        "1 to create, 1 to update, 1 to prune, 1 with errors"
    )
    assert summary([], []) == "no changes"


# --- labels and placement --------------------------------------------------------------


def test_inventory_labels_are_merged_and_win() -> None:
    rendered = deployment()
    rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "Helm"
    labelled = with_inventory_labels(rendered, "shop")
    assert labelled["metadata"]["labels"] == {
        "app": "web",
        "app.kubernetes.io/managed-by": "wake",
        "wake.dev/app": "shop",
    }
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert inventory_labels("shop") == {
        "app.kubernetes.io/managed-by": "wake",
        "wake.dev/app": "shop",
    }
    assert is_labelled_for(labelled, "shop")
    assert not is_labelled_for(labelled, "billing")
    assert not is_labelled_for(rendered, "shop")


def test_prepare_places_namespaced_kinds_and_unplaces_cluster_scoped_ones() -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    placed = prepare(config, app="shop", namespaced=True, default_namespace="shop")
    assert placed["metadata"]["namespace"] == "shop"
    assert placed["metadata"]["labels"]["wake.dev/app"] == "shop"
    assert "namespace" not in config["metadata"]
    elsewhere = prepare(
        {**config, "metadata": {"name": "c", "namespace": "other"}},
        app="shop",
        namespaced=True,
        default_namespace="shop",
    )
    assert elsewhere["metadata"]["namespace"] == "other"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "r", "namespace": "shop"},
    }
    assert (
        "namespace"
        not in prepare(role, app="shop", namespaced=False, default_namespace="x")["metadata"]
    )


def test_crd_scopes_come_from_the_bundles_crds() -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget"}},
    }
    assert crd_scopes([crd, deployment()]) == {("example.com", "Widget"): False}


# --- policy ----------------------------------------------------------------------------


def created(changes_plan: Any, *, needs_approval: bool) -> PlanCreated:
    return PlanCreated(
        plan_id="p-1",
        commit=COMMIT,
        bundle_digest=BUNDLE,
        changes=changes_plan.changes,
        prune=changes_plan.prune,
        needs_approval=needs_approval,
    )


def test_auto_sync_is_approved_by_policy_and_manual_asks() -> None:
    result = plan([NAMESPACE, deployment()], {}, {}, [], prune=True)
    auto = AppSpec(repo_url="https://example.com/r.git", auto_sync=True)
    manual = AppSpec(repo_url="https://example.com/r.git", auto_sync=False)
    assert not policy.needs_approval(auto) and policy.needs_approval(manual)

    approved = policy.decide(created(result, needs_approval=False))
    assert isinstance(approved, PlanApproved)
    assert (approved.plan_id, approved.via) == ("p-1", "policy")

    asked = policy.decide(created(result, needs_approval=True))
    assert isinstance(asked, ApprovalRequested)
    assert asked.summary == "2 to create"


def test_an_empty_plan_of_an_auto_sync_app_is_approved_too() -> None:
    empty = plan([], {}, {}, [], prune=True)
    assert isinstance(policy.decide(created(empty, needs_approval=False)), PlanApproved)


def test_a_plan_with_any_error_is_blocked_whatever_the_policy() -> None:
    refused = Refusal(status_code=422, reason="Invalid", message="spec.replicas: must be >= 0")
    result = plan([NAMESPACE, deployment()], {ref(deployment()): refused}, {}, [], prune=True)
    manual = AppSpec(repo_url="https://example.com/r.git", auto_sync=False)
    assert not policy.needs_approval(manual, blocked=True)
    for needs_approval in (False, True):
        blocked = policy.decide(created(result, needs_approval=needs_approval))
        assert isinstance(blocked, PlanBlocked)
        assert blocked.plan_id == "p-1"
        assert blocked.errors == [
            ResourceError(
                ref=ref(deployment()),
                error="dry run refused: 422 Invalid: spec.replicas: must be >= 0",
            )
        ]
        assert blocked.summary == "2 to create, 1 with errors"
    # Self-heal and a rollback's pin do not get past it either
    drift = msgspec.structs.replace(created(result, needs_approval=False), reason="drift")
    assert isinstance(policy.decide(drift), PlanBlocked)
    pin = policy.RollbackPin(rollback_of="a-1", commit=COMMIT)
    assert isinstance(policy.decide(created(result, needs_approval=False), pinned=pin), PlanBlocked)


# --- one owner per object ----------------------------------------------------------------


def owned_by(obj: dict[str, Any], app: str | None) -> dict[str, Any]:
    live = served(obj)
    live["metadata"]["labels"] = {} if app is None else inventory_labels(app)
    return live


def test_an_object_another_app_owns_is_an_error_naming_both_apps() -> None:
    desired = with_inventory_labels(deployment(), "billing")
    live = {ref(desired): owned_by(deployment(), "shop")}
    [change] = plan([desired], {}, live, [], prune=True, app="billing").changes
    assert change.error == (
        "Deployment shop/web is managed by app 'shop' (label wake.dev/app), and app 'billing' "
        "applies it too: an object has one owner. Remove it from one of them, or register "
        "billing with --adopt to take it over"
    )
    [adopted] = plan([desired], {}, live, [], prune=True, app="billing", adopt=True).changes
    assert adopted.error == ""
    [own] = plan([desired], {}, live, [], prune=True, app="shop").changes
    assert own.error == ""


def test_an_object_nobody_owns_is_an_error_unless_adopted_or_inventoried() -> None:
    desired = with_inventory_labels(deployment(), "shop")
    live = {ref(desired): owned_by(deployment(), None)}
    [change] = plan([desired], {}, live, [], prune=True, app="shop").changes
    assert change.error == (
        "Deployment shop/web exists and is not managed by Wake (no wake.dev/app label); "
        "register shop with --adopt to take it over"
    )
    # Wake applied it for this app and someone stripped the labels: applying restores them.
    [restored] = plan([desired], {}, live, [ref(desired)], prune=True, app="shop").changes
    assert restored.error == "" and restored.action == "update"
    # Nothing live: nothing to own. No app given: the rule is not asked.
    assert plan([desired], {}, {}, [], prune=True, app="shop").changes[0].error == ""
    assert plan([desired], {}, live, [], prune=True).changes[0].error == ""


def test_an_ownership_error_is_added_to_a_refusal() -> None:
    desired = with_inventory_labels(deployment(), "billing")
    refused = Refusal(status_code=422, reason="Invalid", message="bad")
    live = {ref(desired): owned_by(deployment(), "shop")}
    [change] = plan([desired], {ref(desired): refused}, live, [], prune=True, app="billing").changes
    assert change.error.startswith("dry run refused: 422 Invalid: bad; Deployment shop/web is ")


# --- --create-namespace ------------------------------------------------------------------


def test_the_destination_namespace_is_created_only_when_missing_or_the_apps_own() -> None:
    assert namespaces.is_creatable(None, app="shop")
    assert namespaces.is_creatable(owned_by(NAMESPACE, "shop"), app="shop")
    assert not namespaces.is_creatable(owned_by(NAMESPACE, "billing"), app="shop")
    assert not namespaces.is_creatable(owned_by(NAMESPACE, None), app="shop")
    assert namespaces.lacks_namespace([ref(deployment())], "shop")
    assert not namespaces.lacks_namespace([ref(NAMESPACE)], "shop")
    created = namespaces.destination_namespace("shop")
    assert created["metadata"] == {
        "name": "shop",
        "annotations": {"wake.dev/created-by": "create-namespace"},
    }
    early = namespaces.destination_namespace("shop", wave=-2)
    assert early["metadata"]["annotations"]["wake.dev/wave"] == "-2"


def test_a_namespace_create_namespace_made_is_never_pruned() -> None:
    listed = served(NAMESPACE)
    made = served(NAMESPACE)
    made["metadata"]["annotations"]["wake.dev/created-by"] = "create-namespace"
    for live, pruned in ((made, []), (listed, [ref(NAMESPACE)])):
        result = plan([], {}, {ref(NAMESPACE): live}, [ref(NAMESPACE)], prune=True, app="shop")
        assert result.prune == pruned
