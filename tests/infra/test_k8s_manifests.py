"""infra/k8s: the Kustomize base renders with kubectl and an API server accepts every object.

The API server is the sandbox (Wake's Kubernetes API emulator), asked for a
server-side dry run by the real kubectl, as `kubectl apply --dry-run=server`
would ask a cluster before a deployment.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import yaml

from services.sandbox import Sandbox
from services.wiring.runtime import SERVICES
from services.wiring.settings import describe

REPO = Path(__file__).resolve().parents[2]
KUBECTL = Path(sys.executable).parent / "kubectl"


async def kubectl(*args: str, stdin: str = "") -> str:
    # Not subprocess.run: the sandbox answering kubectl runs on this event loop.
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL), *args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode == 0, f"kubectl {' '.join(args)}: {stderr.decode()}"
    return stdout.decode()


async def test_the_base_deploys_every_service_as_docker_compose_runs_it() -> None:
    # When the base is rendered
    objects = list(yaml.safe_load_all(await kubectl("kustomize", str(REPO / "infra" / "k8s"))))
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    # Then there is one Deployment per service, in namespace wake
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert set(deployments) == {f"wake-{service}" for service in SERVICES}
    for service in SERVICES:
        deployment = deployments[f"wake-{service}"]
        assert deployment["metadata"]["namespace"] == "wake"
        assert deployment["spec"]["replicas"] >= 1
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        # running `wake run SERVICE` from the image docker compose builds
        assert container["args"] == compose[service]["command"] == ["run", service]
        assert container["image"] == compose[service].get("image", "wake:local") == "wake:local"
        # with probes, resources and a locked-down security context
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert probe in container, f"{service}: no {probe}"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert "memory" in container["resources"]["limits"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        # and its configuration from the ConfigMap and the Secret
        sources = {next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {"wake-config", "wake-secrets"}
        # and its own NATS identity, from a Secret of its own
        env = {e["name"]: e.get("value") for e in container["env"]}
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "nats-credentials"]
        assert env["WAKE_NATS_CREDENTIALS"].startswith(mount["mountPath"] + "/")
        (volume,) = [v for v in pod["volumes"] if v["name"] == "nats-credentials"]
        assert volume["secret"]["secretName"] == f"wake-nats-{service}"
    # Only the applier and the planner get a token, bound to the ClusterRole that may apply
    tokens = {
        service
        for service in SERVICES
        if deployments[f"wake-{service}"]["spec"]["template"]["spec"].get(
            "automountServiceAccountToken", True
        )
    }
    assert tokens == {"applier", "planner"}
    (binding,) = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    (role,) = [o for o in objects if o["kind"] == "ClusterRole"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    applier_account = deployments["wake-applier"]["spec"]["template"]["spec"]["serviceAccountName"]
    assert {"kind": "ServiceAccount", "name": applier_account, "namespace": "wake"} in binding[
        "subjects"
    ]
    assert any("patch" in rule["verbs"] and "delete" in rule["verbs"] for rule in role["rules"])
    # Every variable set is one Wake reads; NATS is found through the ConfigMap
    (config,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    known = {variable for variable, _, _ in describe()}
    assert set(config["data"]) | set(secret["stringData"]) <= known
    assert config["data"]["WAKE_NATS_URL"].startswith("nats://")
    assert "WAKE_DATABASE_URL" in secret["stringData"]


async def test_an_api_server_accepts_every_object_of_the_base_in_a_server_side_dry_run(
    tmp_path: Path,
) -> None:
    rendered = await kubectl("kustomize", str(REPO / "infra" / "k8s"))
    objects = list(yaml.safe_load_all(rendered))
    async with Sandbox() as sandbox:
        kubeconfig = str(sandbox.write_kubeconfig(tmp_path / "kubeconfig"))
        # Given the namespace exists (a dry run creates nothing to put the rest in)
        namespace = next(o for o in objects if o["kind"] == "Namespace")
        await kubectl(
            "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", "-",
            stdin=yaml.safe_dump(namespace),
        )  # fmt: skip
        # When every object is applied server-side as a dry run
        output = await kubectl(
            "--kubeconfig", kubeconfig, "apply", "--server-side", "--dry-run=server", "-f", "-",
            stdin=rendered,
        )  # fmt: skip
        # Then each one is accepted, and nothing but the namespace was stored
        accepted = [line for line in output.splitlines() if "serverside-applied" in line]
        assert len(accepted) == len(objects), output
        assert all("(server dry run)" in line for line in accepted)
        assert sandbox.objects("apps/v1", "Deployment", namespace="wake") == []
