"""The emulator through kubernetes_asyncio over real HTTP, configured from the kubeconfig."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient
from kubernetes_asyncio.dynamic.resource import Resource

from services.sandbox import Sandbox

APPLY = "application/apply-patch+yaml"


def deployment(
    name: str = "web", *, image: str = "nginx:1.27", replicas: int = 2
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]},
            },
        },
    }


def configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels or {}},
        "data": data,
    }


async def deployments(dynamic: DynamicClient) -> Resource:
    return await dynamic.resources.get(api_version="apps/v1", kind="Deployment")


async def request(
    dynamic: DynamicClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: list[tuple[str, str]] | None = None,
    content_type: str = "application/json",
) -> Any:
    """A call that raises ApiException on failure.

    kubernetes_asyncio 36.1.0's DynamicClient returns error Statuses as if
    they were results (it reads responses with _preload_content=False and
    skips the status check; fixed upstream in tomplus/kubernetes_asyncio#402),
    so the tests use it for discovery and paths only.
    """
    return await dynamic.client.call_api(
        path,
        method,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        response_types_map={200: "object", 201: "object", 202: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


async def get(
    dynamic: DynamicClient, api_version: str, kind: str, name: str, namespace: str
) -> Any:
    resource = await dynamic.resources.get(api_version=api_version, kind=kind)
    return await request(dynamic, "GET", resource.path(name=name, namespace=namespace))


async def apply(
    dynamic: DynamicClient,
    body: dict[str, Any],
    namespace: str,
    *,
    manager: str = "wake",
    force: bool = False,
    dry_run: bool = False,
) -> dict[str, Any]:
    resource = await dynamic.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    query = [("fieldManager", manager)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    return await request(
        dynamic,
        "PATCH",
        resource.path(name=body["metadata"]["name"], namespace=namespace),
        body=body,
        query=query,
        content_type=APPLY,
    )


def managers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["manager"]: e for e in obj["metadata"].get("managedFields", [])}


async def test_the_emulator_says_what_it_is(dynamic: DynamicClient) -> None:
    assert "wake-emulator" in dynamic.version["kubernetes"]["gitVersion"]


async def test_given_nothing_when_applied_then_created_with_server_metadata(
    dynamic: DynamicClient, namespace: str
) -> None:
    obj = await apply(dynamic, deployment(), namespace)

    metadata = obj["metadata"]
    assert metadata["namespace"] == namespace
    assert metadata["uid"]
    assert metadata["creationTimestamp"].endswith("Z")
    assert metadata["generation"] == 1
    assert metadata["resourceVersion"].isdigit()
    entry = managers(obj)["wake"]
    assert entry["operation"] == "Apply"
    assert entry["fieldsType"] == "FieldsV1"
    assert entry["fieldsV1"]["f:spec"]["f:replicas"] == {}
    live = await get(dynamic, "apps/v1", "Deployment", "web", namespace)
    assert live["spec"]["replicas"] == 2


async def test_an_apply_that_changes_the_spec_bumps_generation_and_resource_version(
    dynamic: DynamicClient, namespace: str
) -> None:
    first = await apply(dynamic, deployment(), namespace)

    second = await apply(dynamic, deployment(image="nginx:1.28"), namespace)

    assert second["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert second["metadata"]["generation"] == 2
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


async def test_a_no_op_apply_changes_nothing(dynamic: DynamicClient, namespace: str) -> None:
    first = await apply(dynamic, deployment(), namespace)

    again = await apply(dynamic, deployment(), namespace)

    assert again["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert again["metadata"]["generation"] == 1
    assert again == first


async def test_a_metadata_only_change_keeps_the_generation(
    dynamic: DynamicClient, namespace: str
) -> None:
    first = await apply(dynamic, deployment(), namespace)
    labelled = deployment()
    labelled["metadata"]["labels"]["team"] = "a"

    second = await apply(dynamic, labelled, namespace)

    assert second["metadata"]["generation"] == 1
    assert second["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]


async def test_a_field_dropped_from_the_applied_config_disappears(
    dynamic: DynamicClient, namespace: str
) -> None:
    config = deployment()
    config["metadata"]["annotations"] = {"example.com/note": "temporary"}
    config["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    await apply(dynamic, config, namespace)

    obj = await apply(dynamic, deployment(), namespace)

    assert "annotations" not in obj["metadata"]
    assert [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]] == ["web"]


async def test_a_conflicting_apply_without_force_is_a_409_naming_field_and_manager(
    dynamic: DynamicClient, namespace: str
) -> None:
    await apply(dynamic, deployment(replicas=2), namespace)

    with pytest.raises(ApiException) as caught:
        await apply(dynamic, deployment(replicas=5), namespace, manager="autoscaler")

    assert caught.value.status == 409
    status = json.loads(caught.value.body)
    assert status["kind"] == "Status"
    assert status["status"] == "Failure"
    assert status["reason"] == "Conflict"
    assert status["code"] == 409
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "wake": .spec.replicas'
    assert status["details"]["causes"] == [
        {
            "type": "FieldManagerConflict",
            "message": 'conflict with "wake"',
            "field": ".spec.replicas",
        }
    ]
    live = await get(dynamic, "apps/v1", "Deployment", "web", namespace)
    assert live["spec"]["replicas"] == 2


async def test_a_conflict_through_the_typed_api_is_an_api_exception(
    api_client: client.ApiClient, dynamic: DynamicClient, namespace: str
) -> None:
    await apply(dynamic, deployment(replicas=2), namespace)
    apps = client.AppsV1Api(api_client)

    with pytest.raises(ApiException) as caught:
        await apps.patch_namespaced_deployment(
            "web",
            namespace,
            deployment(replicas=3),
            field_manager="other",
            _content_type=APPLY,
        )

    assert caught.value.status == 409
    assert json.loads(caught.value.body)["details"]["causes"][0]["field"] == ".spec.replicas"


async def test_a_forced_apply_takes_the_field_over(
    api_client: client.ApiClient, dynamic: DynamicClient, namespace: str
) -> None:
    await apply(dynamic, deployment(replicas=2), namespace)
    apps = client.AppsV1Api(api_client)

    result = await apps.patch_namespaced_deployment(
        "web",
        namespace,
        deployment(replicas=3),
        field_manager="autoscaler",
        force=True,
        _content_type=APPLY,
    )

    assert result.spec.replicas == 3
    obj = api_client.sanitize_for_serialization(result)
    assert "f:replicas" in managers(obj)["autoscaler"]["fieldsV1"]["f:spec"]
    assert "f:replicas" not in managers(obj)["wake"]["fieldsV1"]["f:spec"]


async def test_dry_run_returns_the_would_be_object_and_changes_nothing(
    api_client: client.ApiClient, dynamic: DynamicClient, namespace: str
) -> None:
    first = await apply(dynamic, deployment(), namespace)
    core = client.CoreV1Api(api_client)
    before = (await core.list_namespace()).metadata.resource_version

    preview = await apply(dynamic, deployment(image="nginx:2"), namespace, dry_run=True)
    created = await apply(dynamic, deployment("other"), namespace, dry_run=True)
    deleted = await request(
        dynamic,
        "DELETE",
        (await deployments(dynamic)).path(name="web", namespace=namespace),
        query=[("dryRun", "All")],
    )

    assert preview["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
    assert preview["metadata"]["generation"] == 2
    assert created["metadata"]["name"] == "other"
    assert deleted["metadata"]["name"] == "web"
    assert await get(dynamic, "apps/v1", "Deployment", "web", namespace) == first
    with pytest.raises(ApiException) as caught:
        await get(dynamic, "apps/v1", "Deployment", "other", namespace)
    assert caught.value.status == 404
    assert (await core.list_namespace()).metadata.resource_version == before


async def test_list_by_label_selector(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    for name, labels in {
        "web": {"app": "web", "tier": "front"},
        "web-canary": {"app": "web", "track": "canary"},
        "db": {"app": "db"},
        "bare": {},
    }.items():
        await core.create_namespaced_config_map(namespace, configmap(name, labels))

    async def names(selector: str) -> set[str]:
        listed = await core.list_namespaced_config_map(namespace, label_selector=selector)
        return {item.metadata.name for item in listed.items}

    assert await names("app=web") == {"web", "web-canary"}
    assert await names("app==db") == {"db"}
    assert await names("app!=web") == {"db", "bare"}
    assert await names("app in (web,db)") == {"web", "web-canary", "db"}
    assert await names("app notin (web)") == {"db", "bare"}
    assert await names("track") == {"web-canary"}
    assert await names("!track,app") == {"web", "db"}
    with pytest.raises(ApiException) as caught:
        await names("app in (web")
    assert caught.value.status == 400
    assert "unable to parse requirement" in json.loads(caught.value.body)["message"]


async def test_delete_returns_the_object_and_it_is_gone(
    api_client: client.ApiClient, dynamic: DynamicClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    created = await core.create_namespaced_config_map(namespace, configmap("doomed", x="1"))
    await core.create_namespaced_config_map(namespace, configmap("typed", x="1"))

    deleted = await request(dynamic, "DELETE", f"/api/v1/namespaces/{namespace}/configmaps/doomed")
    await core.delete_namespaced_config_map("typed", namespace)

    assert deleted["kind"] == "ConfigMap"
    assert deleted["metadata"]["uid"] == created.metadata.uid
    for name in ("doomed", "typed"):
        with pytest.raises(ApiException) as caught:
            await core.read_namespaced_config_map(name, namespace)
        assert caught.value.status == 404
        assert json.loads(caught.value.body)["message"] == f'configmaps "{name}" not found'


async def test_deleting_a_namespace_deletes_its_objects(
    api_client: client.ApiClient, dynamic: DynamicClient, namespace: str
) -> None:
    await apply(dynamic, deployment(), namespace)
    core = client.CoreV1Api(api_client)

    await core.delete_namespace(namespace)

    with pytest.raises(ApiException) as caught:
        await get(dynamic, "apps/v1", "Deployment", "web", namespace)
    assert caught.value.status == 404
    with pytest.raises(ApiException) as caught:
        await core.create_namespaced_config_map(namespace, configmap("late"))
    assert caught.value.status == 404
    assert f'namespaces "{namespace}" not found' in json.loads(caught.value.body)["message"]


async def test_a_watch_sees_added_modified_deleted(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    start = (await core.list_namespaced_config_map(namespace)).metadata.resource_version
    seen: list[tuple[str, str, str]] = []

    async def follow() -> None:
        async with watch.Watch() as stream:
            async for event in stream.stream(
                core.list_namespaced_config_map,
                namespace,
                resource_version=start,
                timeout_seconds=10,
            ):
                obj = event["object"]
                seen.append((event["type"], obj.metadata.name, (obj.data or {}).get("v", "")))
                if event["type"] == "DELETED":
                    return

    follower = asyncio.create_task(follow())
    await core.create_namespaced_config_map(namespace, configmap("watched", v="1"))
    await core.patch_namespaced_config_map("watched", namespace, {"data": {"v": "2"}})
    await core.delete_namespaced_config_map("watched", namespace)
    await asyncio.wait_for(follower, 10)

    assert seen == [
        ("ADDED", "watched", "1"),
        ("MODIFIED", "watched", "2"),
        ("DELETED", "watched", "2"),
    ]


async def test_a_watch_without_resource_version_starts_with_what_exists(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    await core.create_namespaced_config_map(namespace, configmap("there", {"app": "x"}))
    await core.create_namespaced_config_map(namespace, configmap("filtered-out"))

    async with watch.Watch() as stream:
        first = await anext(
            aiter(
                stream.stream(
                    core.list_namespaced_config_map,
                    namespace,
                    label_selector="app=x",
                    timeout_seconds=5,
                )
            )
        )

    assert (first["type"], first["object"].metadata.name) == ("ADDED", "there")


async def test_an_applied_crd_makes_its_kind_servable(
    dynamic: DynamicClient, namespace: str
) -> None:
    crd = {
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
                    "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    applied_crd = await apply(dynamic, crd, "")
    conditions = {c["type"]: c["status"] for c in applied_crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    await dynamic.resources.invalidate_cache()

    widget = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
        "status": {"ready": True},
    }
    obj = await apply(dynamic, widget, namespace)

    assert obj["spec"] == {"size": 3}
    assert "status" not in obj  # the status subresource owns .status
    widgets = await dynamic.resources.get(api_version="example.com/v1", kind="Widget")
    assert widgets.namespaced
    listed = await request(dynamic, "GET", widgets.path(namespace=namespace))
    assert [item["metadata"]["name"] for item in listed["items"]] == ["w1"]
    assert listed["kind"] == "WidgetList"

    crds = await dynamic.resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    await request(dynamic, "DELETE", crds.path(name="widgets.example.com"))
    with pytest.raises(ApiException) as caught:
        await request(dynamic, "GET", widgets.path(namespace=namespace))
    assert caught.value.status == 404


async def test_status_moves_only_through_the_status_subresource(
    api_client: client.ApiClient, sandbox: Sandbox, dynamic: DynamicClient, namespace: str
) -> None:
    first = await apply(dynamic, deployment(), namespace)
    with_status = deployment()
    with_status["status"] = {"replicas": 99}
    ignored = await apply(dynamic, with_status, namespace)
    assert "status" not in ignored
    assert ignored["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

    status = {"observedGeneration": 1, "replicas": 2, "readyReplicas": 2}
    set_directly = sandbox.set_status("apps/v1", "Deployment", "web", status, namespace=namespace)
    assert set_directly["status"] == status
    assert set_directly["metadata"]["generation"] == 1
    stored = sandbox.get("apps/v1", "Deployment", "web", namespace=namespace)
    assert stored is not None and stored["status"] == status
    listed = sandbox.objects("apps/v1", "Deployment", namespace=namespace)
    assert [obj["metadata"]["name"] for obj in listed] == ["web"]
    with pytest.raises(KeyError, match="nothere"):
        sandbox.set_status("apps/v1", "Deployment", "nothere", status, namespace=namespace)

    apps = client.AppsV1Api(api_client)
    patched = await apps.patch_namespaced_deployment_status(
        "web", namespace, {"status": {"readyReplicas": 1}}
    )
    assert patched.status.ready_replicas == 1
    assert patched.status.replicas == 2
    assert patched.metadata.generation == 1
    assert int(patched.metadata.resource_version) > int(set_directly["metadata"]["resourceVersion"])

    after_apply = await apply(dynamic, deployment(image="nginx:2"), namespace)
    assert after_apply["status"]["readyReplicas"] == 1
    assert after_apply["metadata"]["generation"] == 2


async def test_put_update_checks_the_resource_version(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    created = await core.create_namespaced_config_map(namespace, configmap("cm", v="1"))
    created.data = {"v": "2"}
    updated = await core.replace_namespaced_config_map("cm", namespace, created)
    assert updated.data == {"v": "2"}

    created.data = {"v": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as caught:
        await core.replace_namespaced_config_map("cm", namespace, created)
    assert caught.value.status == 409
    assert "the object has been modified" in json.loads(caught.value.body)["message"]


async def raw(
    sandbox: Sandbox, method: str, path: str, body: str | None = None, content_type: str = ""
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type} if content_type else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, sandbox.url + path, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(content_type=None)


CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
APPLY_X = CONFIGMAPS + "/x?fieldManager=t"


def cm_json(metadata: str, kind: str = "ConfigMap") -> str:
    return f'{{"apiVersion": "v1", "kind": "{kind}", "metadata": {metadata}}}'


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "code", "says"),
    [
        pytest.param(
            "POST",
            CONFIGMAPS,
            "{not json",
            "application/json",
            400,
            "error decoding JSON body",
            id="bad-json",
        ),
        pytest.param(
            "PATCH", APPLY_X, "a: [b", APPLY, 400, "error decoding YAML body", id="bad-yaml"
        ),
        pytest.param(
            "PATCH",
            APPLY_X,
            '{"kind": "ConfigMap", "metadata": {"name": "x"}}',
            APPLY,
            400,
            "Object 'apiVersion' is missing",
            id="apply-without-apiVersion",
        ),
        pytest.param(
            "PATCH",
            APPLY_X,
            "apiVersion: v1\nmetadata: {name: x}\n",
            APPLY,
            400,
            "Object 'Kind' is missing",
            id="apply-without-kind",
        ),
        pytest.param(
            "POST",
            CONFIGMAPS,
            cm_json("{}"),
            "application/json",
            422,
            "metadata.name: Required value",
            id="create-without-name",
        ),
        pytest.param(
            "POST",
            CONFIGMAPS,
            cm_json('{"name": "x"}', kind="Secret"),
            "application/json",
            400,
            "the kind 'Secret' in the request body does not match the resource configmaps",
            id="kind-not-matching-url",
        ),
        pytest.param(
            "POST",
            CONFIGMAPS,
            cm_json('{"name": "Bad_Name"}'),
            "application/json",
            422,
            "metadata.name: Invalid value: 'Bad_Name'",
            id="invalid-name",
        ),
        pytest.param(
            "POST",
            CONFIGMAPS,
            cm_json('{"name": "x", "labels": {"a": 1}}'),
            "application/json",
            400,
            "metadata.labels.a must be a string",
            id="label-not-a-string",
        ),
        pytest.param(
            "GET",
            "/apis/apps/v1/namespaces/default/gizmos",
            None,
            "",
            404,
            "has no resource 'gizmos'",
            id="unknown-resource",
        ),
        pytest.param(
            "GET",
            "/apis/nope.example.com/v1/things",
            None,
            "",
            404,
            "does not serve the API version nope.example.com/v1",
            id="unknown-group",
        ),
        pytest.param(
            "POST",
            "/api/v1/namespaces/nowhere/configmaps",
            cm_json('{"name": "x"}'),
            "application/json",
            404,
            'namespaces "nowhere" not found',
            id="missing-namespace",
        ),
        pytest.param(
            "PATCH",
            "/apis/apps/v1/namespaces/default/deployments/x",
            "{}",
            APPLY,
            400,
            "fieldManager is required",
            id="apply-without-field-manager",
        ),
        pytest.param(
            "PATCH",
            APPLY_X,
            cm_json('{"name": "x"}'),
            "application/vnd.kubernetes.protobuf",
            415,
            "unknown format",
            id="unsupported-patch-type",
        ),
    ],
)
async def test_malformed_input_gets_a_clear_status_and_the_server_keeps_serving(
    sandbox: Sandbox,
    method: str,
    path: str,
    body: str | None,
    content_type: str,
    code: int,
    says: str,
) -> None:
    status_code, status = await raw(sandbox, method, path, body, content_type)

    assert status_code == code
    assert status["kind"] == "Status"
    assert status["apiVersion"] == "v1"
    assert status["status"] == "Failure"
    assert status["code"] == code
    assert says in status["message"]
    still, version = await raw(sandbox, "GET", "/version")
    assert still == 200
    assert version["gitVersion"].endswith("-wake-emulator")


async def test_latency_is_added_to_every_request() -> None:
    async with Sandbox(latency_ms=60) as slow:
        started = time.monotonic()
        status_code, _ = await raw(slow, "GET", "/api/v1/namespaces")
        assert status_code == 200
        # a lower bound only: the sleep is guaranteed, the rest is the machine's
        assert time.monotonic() - started >= 0.06


async def test_a_filtered_watch_sees_objects_leave_and_enter_the_selection(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    await core.create_namespaced_config_map(namespace, configmap("moving", {"app": "x"}))
    start = (await core.list_namespaced_config_map(namespace)).metadata.resource_version
    seen: list[str] = []

    async def follow() -> None:
        async with watch.Watch() as stream:
            async for event in stream.stream(
                core.list_namespaced_config_map,
                namespace,
                label_selector="app=x",
                resource_version=start,
                timeout_seconds=10,
            ):
                seen.append(event["type"])
                if len(seen) == 2:
                    return

    follower = asyncio.create_task(follow())
    await core.patch_namespaced_config_map(
        "moving", namespace, {"metadata": {"labels": {"app": "y"}}}
    )
    await core.patch_namespaced_config_map("moving", namespace, {"data": {"ignored": "1"}})
    await core.patch_namespaced_config_map(
        "moving", namespace, {"metadata": {"labels": {"app": "x"}}}
    )
    await asyncio.wait_for(follower, 10)

    assert seen == ["DELETED", "ADDED"]


async def test_finalizers_hold_a_deleted_object_until_removed(
    api_client: client.ApiClient, dynamic: DynamicClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    held = configmap("held")
    held["metadata"]["finalizers"] = ["example.com/cleanup"]
    await core.create_namespaced_config_map(namespace, held)
    path = f"/api/v1/namespaces/{namespace}/configmaps/held"

    marked = await request(dynamic, "DELETE", path)

    assert marked["metadata"]["deletionTimestamp"]
    assert (await core.read_namespaced_config_map("held", namespace)).metadata.deletion_timestamp
    await core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as caught:
        await core.read_namespaced_config_map("held", namespace)
    assert caught.value.status == 404


async def test_lists_page_with_limit_and_continue(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    for index in range(5):
        await core.create_namespaced_config_map(namespace, configmap(f"cm-{index}"))

    first = await core.list_namespaced_config_map(namespace, limit=2)
    second = await core.list_namespaced_config_map(
        namespace, limit=2, _continue=first.metadata._continue
    )
    third = await core.list_namespaced_config_map(
        namespace, limit=2, _continue=second.metadata._continue
    )

    pages = [[item.metadata.name for item in page.items] for page in (first, second, third)]
    assert pages == [["cm-0", "cm-1"], ["cm-2", "cm-3"], ["cm-4"]]
    assert third.metadata._continue is None


async def test_generate_name_gives_a_fresh_name(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    body = configmap("")
    body["metadata"] = {"generateName": "job-"}

    created = await core.create_namespaced_config_map(namespace, body)

    assert created.metadata.name.startswith("job-")
    assert len(created.metadata.name) == len("job-") + 5


async def test_dry_run_patch_and_update_change_nothing(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    created = await core.create_namespaced_config_map(namespace, configmap("cm", v="1"))

    patched = await core.patch_namespaced_config_map(
        "cm", namespace, {"data": {"v": "2"}}, dry_run="All"
    )
    created.data = {"v": "3"}
    replaced = await core.replace_namespaced_config_map("cm", namespace, created, dry_run="All")

    assert patched.data == {"v": "2"}
    assert replaced.data == {"v": "3"}
    live = await core.read_namespaced_config_map("cm", namespace)
    assert live.data == {"v": "1"}
    assert live.metadata.resource_version == created.metadata.resource_version


async def test_a_cluster_scoped_crd_serves_its_kind_without_namespaces(
    dynamic: DynamicClient,
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "regions.infra.example.com"},
        "spec": {
            "group": "infra.example.com",
            "scope": "Cluster",
            "names": {"plural": "regions", "kind": "Region", "listKind": "RegionList"},
            "versions": [{"name": "v1alpha1", "served": True, "storage": True}],
        },
    }
    await apply(dynamic, crd, "")
    await dynamic.resources.invalidate_cache()

    region = {
        "apiVersion": "infra.example.com/v1alpha1",
        "kind": "Region",
        "metadata": {"name": "eu-west"},
        "spec": {"zones": 3},
    }
    obj = await apply(dynamic, region, "")

    assert "namespace" not in obj["metadata"]
    regions = await dynamic.resources.get(api_version="infra.example.com/v1alpha1", kind="Region")
    assert not regions.namespaced
    assert regions.path(name="eu-west") == "/apis/infra.example.com/v1alpha1/regions/eu-west"
    assert (await request(dynamic, "GET", regions.path(name="eu-west")))["spec"] == {"zones": 3}


async def test_with_ready_workloads_a_rollout_completes_when_applied():
    from services.sandbox import Sandbox

    async with Sandbox(ready_workloads=True) as sandbox:
        deployments = sandbox.resource_type("apps/v1", "Deployment")
        body = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
        }
        sandbox.store.create(deployments, "default", body, manager="test", dry_run=False)
        status = sandbox.get("apps/v1", "Deployment", "web", namespace="default")["status"]
        assert status["observedGeneration"] == 1 and status["availableReplicas"] == 3
        # a status written for the current generation is left as written
        sandbox.set_status(
            "apps/v1",
            "Deployment",
            "web",
            {"observedGeneration": 1, "replicas": 3},
            namespace="default",
        )
        assert (
            "availableReplicas"
            not in sandbox.get("apps/v1", "Deployment", "web", namespace="default")["status"]
        )
