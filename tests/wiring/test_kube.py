"""services.wiring.kube against the sandbox emulator, over real HTTP, from a kubeconfig."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from events.payloads import ResourceRef
from services.sandbox import Sandbox
from services.wiring.kube import (
    APPLY_PATCH,
    Clusters,
    Kube,
    KubeConfigError,
    KubeError,
    KubeUnreachable,
    kubeconfig_source,
)
from services.wiring.settings import Settings


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as started:
        yield started


@pytest.fixture
def kubeconfig(sandbox: Sandbox, tmp_path: Path) -> Path:
    return sandbox.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[Kube]:
    async with await Kube.from_settings(Settings(kubeconfig=str(kubeconfig))) as client:
        yield client


def configmap(name: str, namespace: str = "default", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "shop"}},
        "data": data,
    }


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


async def test_discovery_knows_scope_and_names_an_unknown_kind(kube: Kube) -> None:
    configmaps = await kube.resource("v1", "ConfigMap")
    assert (configmaps.plural, configmaps.namespaced) == ("configmaps", True)
    assert configmaps.path(namespace="shop", name="web") == "/api/v1/namespaces/shop/configmaps/web"
    namespaces = await kube.resource("v1", "Namespace")
    assert not namespaces.namespaced
    deployments = await kube.resource("apps/v1", "Deployment")
    assert deployments.path(namespace="shop") == "/apis/apps/v1/namespaces/shop/deployments"

    ref = ResourceRef(api_version="example.com/v1", kind="Widget", name="w", namespace="default")
    with pytest.raises(KubeError) as caught:
        await kube.get(ref)
    assert caught.value.status_code == 404
    assert caught.value.ref == ref
    assert "Widget" in str(caught.value) and "example.com/v1" in str(caught.value)


async def test_a_kind_an_applied_crd_defines_becomes_usable(kube: Kube) -> None:
    with pytest.raises(KubeError):
        await kube.resource("example.com/v1", "Widget")
    await kube.apply(CRD)
    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "default"},
        "spec": {"size": 3},
    }
    applied = await kube.apply(widget)
    assert applied.created
    assert applied.object["spec"] == {"size": 3}


async def test_apply_creates_then_reports_an_unchanged_object_as_is(
    kube: Kube, sandbox: Sandbox
) -> None:
    first = await kube.apply(configmap("web", a="1"))
    assert first.created
    stored = sandbox.get("v1", "ConfigMap", "web", namespace="default")
    assert stored is not None and stored["data"] == {"a": "1"}
    managers = {e["manager"] for e in stored["metadata"]["managedFields"]}
    assert managers == {"wake"}

    again = await kube.apply(configmap("web", a="1"))
    assert not again.created
    assert (
        again.object["metadata"]["resourceVersion"] == first.object["metadata"]["resourceVersion"]
    )

    changed = await kube.apply(configmap("web", a="2"))
    assert changed.object["data"] == {"a": "2"}
    assert (
        changed.object["metadata"]["resourceVersion"] != first.object["metadata"]["resourceVersion"]
    )


async def test_dry_run_shows_the_result_and_stores_nothing(kube: Kube, sandbox: Sandbox) -> None:
    result = await kube.apply(configmap("draft", a="1"), dry_run=True)
    assert result.object["data"] == {"a": "1"}
    assert result.object["metadata"]["uid"]
    assert sandbox.get("v1", "ConfigMap", "draft", namespace="default") is None

    await kube.apply(configmap("draft", a="1"))
    result = await kube.apply(configmap("draft", a="2"), dry_run=True)
    assert result.object["data"] == {"a": "2"}
    live = sandbox.get("v1", "ConfigMap", "draft", namespace="default")
    assert live is not None and live["data"] == {"a": "1"}


async def test_wake_takes_over_fields_another_manager_set(kube: Kube, sandbox: Sandbox) -> None:
    # Someone edits the object with another field manager first.
    await kube.api.call_api(
        "/api/v1/namespaces/default/configmaps/shared",
        "PATCH",
        query_params=[("fieldManager", "kubectl-edit")],
        header_params={"Content-Type": APPLY_PATCH, "Accept": "application/json"},
        body=configmap("shared", a="theirs"),
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
    )
    applied = await kube.apply(configmap("shared", a="ours"))
    assert applied.object["data"] == {"a": "ours"}
    live = sandbox.get("v1", "ConfigMap", "shared", namespace="default")
    assert live is not None
    owners = {e["manager"] for e in live["metadata"]["managedFields"] if "f:data" in e["fieldsV1"]}
    assert owners == {"wake"}


async def test_get_and_delete(kube: Kube) -> None:
    ref = ResourceRef(api_version="v1", kind="ConfigMap", name="gone", namespace="default")
    assert await kube.get(ref) is None
    assert await kube.delete(ref) is False
    await kube.apply(configmap("gone", a="1"))
    live = await kube.get(ref)
    assert live is not None and live["data"] == {"a": "1"}
    assert await kube.delete(ref) is True
    assert await kube.get(ref) is None


async def test_create_with_generate_name_gives_a_new_name_each_time(kube: Kube) -> None:
    template = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"generateName": "run-", "namespace": "default"},
        "data": {"a": "1"},
    }
    first = await kube.create(template)
    second = await kube.create(template)
    names = [first["metadata"]["name"], second["metadata"]["name"]]
    assert all(name.startswith("run-") and len(name) == len("run-") + 5 for name in names)
    assert names[0] != names[1]
    ref = ResourceRef(api_version="v1", kind="ConfigMap", name=names[0], namespace="default")
    live = await kube.get(ref)
    assert live is not None and live["data"] == {"a": "1"}


async def test_list_by_labels_reads_every_page(kube: Kube) -> None:
    for name in ("a", "b", "c"):
        await kube.apply(configmap(name))
    other = configmap("d")
    other["metadata"]["labels"] = {"team": "billing"}
    await kube.apply(other)

    found = await kube.list_by_labels("v1", "ConfigMap", {"team": "shop"}, page_size=2)
    assert sorted(obj["metadata"]["name"] for obj in found) == ["a", "b", "c"]
    assert all(obj["apiVersion"] == "v1" and obj["kind"] == "ConfigMap" for obj in found)
    in_kube_system = await kube.list_by_labels(
        "v1", "ConfigMap", {"team": "shop"}, namespace="kube-system"
    )
    assert in_kube_system == []


async def test_api_errors_name_the_resource_and_carry_the_api_message(kube: Kube) -> None:
    bad = configmap("bad")
    bad["metadata"]["labels"] = {"team": "not a valid label value!"}
    with pytest.raises(KubeError) as caught:
        await kube.apply(bad)
    error = caught.value
    assert (error.status_code, error.reason) == (422, "Invalid")
    assert error.ref == ResourceRef(
        api_version="v1", kind="ConfigMap", name="bad", namespace="default"
    )
    assert "metadata.labels.team" in error.message
    assert str(error).startswith("ConfigMap default/bad: 422 Invalid: ")

    with pytest.raises(KubeError) as caught:
        await kube.apply(configmap("orphan", namespace="no-such-namespace"))
    assert caught.value.status_code == 404
    assert "no-such-namespace" in caught.value.message


async def test_a_namespaced_kind_without_a_namespace_is_refused_before_sending(
    kube: Kube,
) -> None:
    resource = configmap("x")
    del resource["metadata"]["namespace"]
    with pytest.raises(KubeError) as caught:
        await kube.apply(resource)
    assert caught.value.status_code == 400
    assert "metadata.namespace" in caught.value.message


async def test_a_context_is_chosen_by_name(sandbox: Sandbox, tmp_path: Path) -> None:
    path = sandbox.write_kubeconfig(tmp_path / "kubeconfig")
    async with await Kube.connect(kubeconfig=str(path), context="wake-sandbox") as kube:
        assert (await kube.resource("v1", "ConfigMap")).namespaced
    with pytest.raises(KubeConfigError) as caught:
        await Kube.connect(kubeconfig=str(path), context="production")
    assert "production" in str(caught.value)


def test_the_kubeconfig_comes_from_the_setting_then_the_environment(tmp_path: Path) -> None:
    first = tmp_path / "first"
    second = tmp_path / "second"
    second.write_text("apiVersion: v1\n")
    assert kubeconfig_source(str(second), {"KUBECONFIG": str(first)}) == str(second)
    listed = f"{first}:{second}"
    assert kubeconfig_source("", {"KUBECONFIG": listed, "HOME": str(tmp_path)}) == listed
    with pytest.raises(KubeConfigError) as caught:
        kubeconfig_source(str(first), {})
    assert str(first) in str(caught.value)


async def test_an_unreachable_server_is_its_own_error(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n"
        f"clusters: [{{name: dead, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
        "users: [{name: dead, user: {token: x}}]\n"
        "contexts: [{name: dead, context: {cluster: dead, user: dead}}]\n"
    )
    async with await Kube.connect(kubeconfig=str(path)) as kube:
        with pytest.raises(KubeUnreachable) as caught:
            await kube.resource("v1", "ConfigMap")
    assert caught.value.status_code == 0
    assert f"127.0.0.1:{port}" in str(caught.value)


async def test_clusters_keep_one_client_per_context(tmp_path: Path) -> None:
    async with Sandbox() as east, Sandbox() as west:
        # Given a kubeconfig with two contexts, east current
        config = east.kubeconfig()
        other = west.kubeconfig()
        config["clusters"][0]["name"] = config["contexts"][0]["context"]["cluster"] = "east"
        config["contexts"][0]["name"] = config["current-context"] = "east"
        config["clusters"].append({"name": "west", "cluster": other["clusters"][0]["cluster"]})
        config["contexts"].append(
            {"name": "west", "context": {"cluster": "west", "user": config["users"][0]["name"]}}
        )
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        async with Clusters(kubeconfig=str(path)) as clusters:
            # Then "" is the current context, a named one its own cluster, each made once
            default, named = await clusters.get(""), await clusters.get("west")
            assert await clusters.get("west") is named
            assert default.api.configuration.host == east.url
            assert named.api.configuration.host == west.url
            # and a context the kubeconfig lacks is an error naming it
            with pytest.raises(KubeConfigError, match="nowhere"):
                await clusters.get("nowhere")
