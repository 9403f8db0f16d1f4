"""`kubectl create <kind>` against the emulator: the real kubectl sends protobuf bodies.

Each case creates an object with one of kubectl's typed subcommands (which
send `application/vnd.kubernetes.protobuf`), reads it back with
`kubectl get -o json` and checks the fields the command filled in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from services.sandbox import Sandbox
from tests.sandbox.test_kubectl import Kubectl, kubectl

__all__ = ["kubectl"]  # the fixture

Check = Callable[[dict[str, Any], str], None]


def _namespace(obj: dict[str, Any], ns: str) -> None:
    assert obj["metadata"]["labels"]["kubernetes.io/metadata.name"] == obj["metadata"]["name"]
    assert obj["status"] == {"phase": "Active"}


def _configmap(obj: dict[str, Any], ns: str) -> None:
    assert obj["metadata"]["namespace"] == ns
    assert obj["data"] == {"a": "1", "empty": "", "b": "two words"}


def _secret(obj: dict[str, Any], ns: str) -> None:
    assert obj["type"] == "Opaque"
    assert obj["data"] == {"password": "aHVudGVyMg=="}  # base64 of hunter2


def _docker_secret(obj: dict[str, Any], ns: str) -> None:
    assert obj["type"] == "kubernetes.io/dockerconfigjson"
    assert list(obj["data"]) == [".dockerconfigjson"]


def _deployment(obj: dict[str, Any], ns: str) -> None:
    spec = obj["spec"]
    assert obj["metadata"]["labels"] == {"app": "web"}
    assert spec["replicas"] == 3
    assert spec["selector"] == {"matchLabels": {"app": "web"}}
    assert spec["template"]["metadata"]["labels"] == {"app": "web"}
    assert spec["template"]["spec"]["containers"] == [
        {"name": "nginx", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}
    ]
    # --ready-workloads is off in this sandbox: no controller wrote a status.
    assert "status" not in obj


def _zero_replicas(obj: dict[str, Any], ns: str) -> None:
    assert obj["spec"]["replicas"] == 0  # a pointer field: its zero is a value


def _clusterip(obj: dict[str, Any], ns: str) -> None:
    assert obj["spec"]["type"] == "ClusterIP"
    assert obj["spec"]["selector"] == {"app": "api"}
    assert obj["spec"]["ports"] == [
        {"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}
    ]


def _nodeport(obj: dict[str, Any], ns: str) -> None:
    assert obj["spec"]["type"] == "NodePort"
    assert obj["spec"]["ports"][0]["nodePort"] == 30080


def _externalname(obj: dict[str, Any], ns: str) -> None:
    assert obj["spec"]["type"] == "ExternalName"
    assert obj["spec"]["externalName"] == "db.example.com"


def _job(obj: dict[str, Any], ns: str) -> None:
    pod = obj["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"] == [
        {"name": "migrate", "image": "busybox:1.36", "command": ["echo", "hi"]}
    ]


def _cronjob(obj: dict[str, Any], ns: str) -> None:
    assert obj["spec"]["schedule"] == "*/5 * * * *"
    job = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert job["containers"][0]["image"] == "busybox:1.36"
    assert job["restartPolicy"] == "OnFailure"


def _serviceaccount(obj: dict[str, Any], ns: str) -> None:
    assert obj["metadata"]["name"] == "bot"
    assert obj["metadata"]["namespace"] == ns


def _role(obj: dict[str, Any], ns: str) -> None:
    assert obj["rules"] == [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]


def _rolebinding(obj: dict[str, Any], ns: str) -> None:
    assert obj["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}
    assert obj["subjects"] == [{"kind": "ServiceAccount", "name": "bot", "namespace": ns}]


def _quota(obj: dict[str, Any], ns: str) -> None:
    assert obj["spec"]["hard"] == {"cpu": "500m", "pods": "2"}


def _pdb(obj: dict[str, Any], ns: str) -> None:
    assert obj["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}


def _ingress(obj: dict[str, Any], ns: str) -> None:
    [rule] = obj["spec"]["rules"]
    assert rule["host"] == "shop.example.com"
    [path] = rule["http"]["paths"]
    assert path["path"] == "/api"
    assert path["backend"] == {"service": {"name": "api", "port": {"number": 80}}}


CASES = [
    pytest.param(["configmap", "settings", "--from-literal=a=1", "--from-literal=empty=",
                  "--from-literal=b=two words"], "configmap/settings", _configmap, id="configmap"),
    pytest.param(["secret", "generic", "db", "--from-literal=password=hunter2",
                  "--type=Opaque"], "secret/db",
                 _secret, id="secret-generic"),
    pytest.param(["secret", "docker-registry", "pull", "--docker-server=r.example.com",
                  "--docker-username=u", "--docker-password=p"], "secret/pull", _docker_secret,
                 id="secret-docker-registry"),
    pytest.param(["deployment", "web", "--image=nginx:1.27", "--replicas=3", "--port=80"],
                 "deployment/web", _deployment, id="deployment"),
    pytest.param(["deployment", "idle", "--image=nginx:1.27", "--replicas=0"],
                 "deployment/idle", _zero_replicas, id="deployment-zero-replicas"),
    pytest.param(["service", "clusterip", "api", "--tcp=80:8080"], "service/api", _clusterip,
                 id="service-clusterip"),
    pytest.param(["service", "nodeport", "edge", "--tcp=80:8080", "--node-port=30080"],
                 "service/edge", _nodeport, id="service-nodeport"),
    pytest.param(["service", "externalname", "db", "--external-name=db.example.com"],
                 "service/db", _externalname, id="service-externalname"),
    pytest.param(["job", "migrate", "--image=busybox:1.36", "--", "echo", "hi"], "job/migrate",
                 _job, id="job"),
    pytest.param(["cronjob", "tick", "--image=busybox:1.36", "--schedule=*/5 * * * *"],
                 "cronjob/tick", _cronjob, id="cronjob"),
    pytest.param(["serviceaccount", "bot"], "serviceaccount/bot", _serviceaccount,
                 id="serviceaccount"),
    pytest.param(["role", "r", "--verb=get,list", "--resource=pods"], "role/r", _role, id="role"),
    pytest.param(["rolebinding", "rb", "--role=r", "--serviceaccount={ns}:bot"],
                 "rolebinding/rb", _rolebinding, id="rolebinding"),
    pytest.param(["quota", "q", "--hard=cpu=500m,pods=2"], "resourcequota/q", _quota, id="quota"),
    pytest.param(["pdb", "web", "--selector=app=web", "--min-available=1"],
                 "pdb/web", _pdb, id="poddisruptionbudget"),
    pytest.param(["ingress", "shop", "--rule=shop.example.com/api=api:80"], "ingress/shop",
                 _ingress, id="ingress"),
]  # fmt: skip


@pytest.fixture
async def fresh_namespace(kubectl: Kubectl) -> str:
    name = f"c-{uuid.uuid4().hex[:10]}"
    out = await kubectl.ok("create", "namespace", name)
    assert out.strip() == f"namespace/{name} created"
    _namespace(await kubectl.json("get", "namespace", name), name)
    return name


@pytest.mark.parametrize(("args", "target", "check"), CASES)
async def test_kubectl_create_sends_protobuf_and_gets_the_object_back(
    kubectl: Kubectl, fresh_namespace: str, args: list[str], target: str, check: Check
) -> None:
    ns = fresh_namespace
    args = [arg.replace("{ns}", ns) for arg in args]

    code, out, err = await kubectl.run("-v=8", "create", "-n", ns, *args)

    assert code == 0, err
    assert out.strip().endswith(" created")
    # -v=8 logs the request's headers: the body really went as protobuf.
    assert "Content-Type: application/vnd.kubernetes.protobuf" in err
    obj = await kubectl.json("get", "-n", ns, target)
    check(obj, ns)
    assert obj["metadata"]["resourceVersion"]


async def test_kubectl_create_clusterrole_and_binding(kubectl: Kubectl) -> None:
    suffix = uuid.uuid4().hex[:8]
    await kubectl.ok("create", "clusterrole", f"read-{suffix}", "--verb=get", "--resource=nodes")
    await kubectl.ok(
        "create", "clusterrolebinding", f"read-{suffix}", f"--clusterrole=read-{suffix}",
        "--user=ada",
    )  # fmt: skip

    role = await kubectl.json("get", "clusterrole", f"read-{suffix}")
    binding = await kubectl.json("get", "clusterrolebinding", f"read-{suffix}")
    assert role["rules"] == [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]}]
    assert "namespace" not in role["metadata"]
    assert binding["subjects"] == [
        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "ada"}
    ]
    assert binding["roleRef"]["name"] == f"read-{suffix}"


async def test_kubectl_create_job_from_a_cronjob(kubectl: Kubectl, fresh_namespace: str) -> None:
    ns = fresh_namespace
    await kubectl.ok("create", "-n", ns, "cronjob", "tick", "--image=busybox:1.36",
                     "--schedule=*/5 * * * *", "--", "date")  # fmt: skip
    cronjob = await kubectl.json("get", "-n", ns, "cronjob", "tick")

    await kubectl.ok("create", "-n", ns, "job", "--from=cronjob/tick", "tick-now")

    job = await kubectl.json("get", "-n", ns, "job", "tick-now")
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "name": "tick",
            "uid": cronjob["metadata"]["uid"],
            "controller": True,
        }
    ]
    assert job["metadata"]["annotations"] == {"cronjob.kubernetes.io/instantiate": "manual"}
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["date"]


async def test_kubectl_autoscale_creates_an_hpa(kubectl: Kubectl, fresh_namespace: str) -> None:
    ns = fresh_namespace
    await kubectl.ok("create", "-n", ns, "deployment", "api", "--image=api:1")

    await kubectl.ok("autoscale", "-n", ns, "deployment", "api", "--min=2", "--max=5", "--cpu=80%")

    hpa = await kubectl.json("get", "-n", ns, "hpa", "api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "api"},
        "minReplicas": 2,
        "maxReplicas": 5,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80},
                },
            }
        ],
    }


async def test_kubectl_create_twice_is_already_exists(
    kubectl: Kubectl, fresh_namespace: str
) -> None:
    await kubectl.ok("create", "-n", fresh_namespace, "serviceaccount", "bot")

    code, _, err = await kubectl.run("create", "-n", fresh_namespace, "serviceaccount", "bot")

    assert code != 0
    assert 'serviceaccounts "bot" already exists' in err


# --- what the reader refuses, over HTTP --------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return b"k8s\x00" + _field(1, type_meta) + _field(2, raw)


def configmap_message(name: str, *extra: bytes) -> bytes:
    return _field(1, _field(1, name.encode())) + b"".join(extra)


async def post_protobuf(sandbox: Sandbox, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {
        "Content-Type": "application/vnd.kubernetes.protobuf",
        "Accept": "application/vnd.kubernetes.protobuf,application/json",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(sandbox.url + path, data=body, headers=headers) as response,
    ):
        assert response.content_type == "application/json"
        return response.status, await response.json()


CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


async def test_a_protobuf_configmap_is_created_and_answered_in_json(sandbox: Sandbox) -> None:
    name = f"pb-{uuid.uuid4().hex[:8]}"
    data_entry = _field(1, b"key") + _field(2, b"value")

    body = envelope("v1", "ConfigMap", configmap_message(name, _field(2, data_entry)))

    code, obj = await post_protobuf(sandbox, CONFIGMAPS, body)

    assert code == 201
    assert obj["metadata"]["name"] == name
    assert obj["data"] == {"key": "value"}
    assert sandbox.get("v1", "ConfigMap", name, namespace="default")["data"] == {"key": "value"}


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        pytest.param(
            envelope("scheduling.k8s.io/v1", "PriorityClass", b""),
            415,
            "cannot read PriorityClass (scheduling.k8s.io/v1) in protobuf",
            id="unknown-kind",
        ),
        pytest.param(
            envelope("v1", "ConfigMap", configmap_message("x", _field(9, b"surprise"))),
            415,
            "field 9 of core.ConfigMap is not supported",
            id="unknown-field",
        ),
        pytest.param(
            envelope("v1", "ConfigMap", configmap_message("x"))[:-3],
            400,
            "error decoding the protobuf body",
            id="truncated",
        ),
        pytest.param(
            b'{"kind": "ConfigMap"}', 400, "does not start with the Kubernetes protobuf magic",
            id="json-labelled-protobuf",
        ),
    ],
)  # fmt: skip
async def test_a_protobuf_body_it_cannot_read_is_refused_by_name(
    sandbox: Sandbox, body: bytes, code: int, says: str
) -> None:
    status_code, status = await post_protobuf(sandbox, CONFIGMAPS, body)

    assert status_code == code
    assert status["kind"] == "Status"
    assert says in status["message"]


async def test_a_client_that_accepts_protobuf_only_is_told_so(sandbox: Sandbox) -> None:
    headers = {"Accept": "application/vnd.kubernetes.protobuf"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(sandbox.url + CONFIGMAPS, headers=headers) as response,
    ):
        status = await response.json(content_type=None)

    assert response.status == 406
    assert status["reason"] == "NotAcceptable"
    assert "answers in JSON only" in status["message"]
