"""A sandbox given a state file keeps its objects across restarts, as a cluster outlives Wake."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.sandbox import Sandbox
from tests.waiting import eventually

KUBECTL = Path(sys.executable).parent / "kubectl"

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


def namespace(name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


async def kubectl(kubeconfig: Path, *args: str, stdin: str = "") -> str:
    # Not subprocess.run: the sandbox answering kubectl runs on this event loop.
    process = await asyncio.create_subprocess_exec(
        str(KUBECTL), "--kubeconfig", str(kubeconfig), *args,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    assert process.returncode == 0, f"kubectl {' '.join(args)}: {stderr.decode()}"
    return stdout.decode()


async def test_objects_crds_and_resource_versions_survive_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "objects.json"
    kubeconfig = tmp_path / "kubeconfig"
    # Given a sandbox with a namespace, a ConfigMap, a CRD and one of its objects
    async with Sandbox(state_file=state) as first:
        first.write_kubeconfig(kubeconfig)
        await kubectl(kubeconfig, "apply", "-f", "-", stdin=namespace("shop"))
        await kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(CRD))
        widget = {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "gear", "namespace": "shop"},
            "spec": {"teeth": 12},
        }
        await kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(widget))
        settings = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "shop"},
            "data": {"a": "1"},
        }
        await kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(settings))
        before = json.loads(
            await kubectl(kubeconfig, "get", "configmap", "settings", "-n", "shop", "-o", "json")
        )
        # Then the file holds them even before the sandbox stops (a SIGKILL loses little)
        await eventually(
            lambda: state.exists() and '"settings"' in state.read_text(),
            what="the state file written after the change",
        )
    # When a new sandbox starts on the same file
    async with Sandbox(state_file=state) as second:
        second.write_kubeconfig(kubeconfig)
        # Then every object is back, unchanged, and the CRD's kind is served again
        after = json.loads(
            await kubectl(kubeconfig, "get", "configmap", "settings", "-n", "shop", "-o", "json")
        )
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert after["data"] == {"a": "1"}
        teeth = await kubectl(
            kubeconfig, "get", "widget", "gear", "-n", "shop", "-o", "jsonpath={.spec.teeth}"
        )
        assert teeth == "12"
        # and resource versions go on from where they were
        await kubectl(kubeconfig, "label", "configmap", "settings", "-n", "shop", "tier=gold")
        relabelled = json.loads(
            await kubectl(kubeconfig, "get", "configmap", "settings", "-n", "shop", "-o", "json")
        )
        assert int(relabelled["metadata"]["resourceVersion"]) > int(
            before["metadata"]["resourceVersion"]
        )


async def test_a_state_file_that_is_not_one_is_named(tmp_path: Path) -> None:
    state = tmp_path / "objects.json"
    state.write_text('{"resourceVersion": 3, "objects": [{"group": "", "plural": "nothings"}]}')
    with pytest.raises(ValueError, match=r"objects\.json.*object 0"):
        await Sandbox(state_file=state).start()


async def test_without_a_state_file_the_sandbox_forgets(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    async with Sandbox() as first:
        first.write_kubeconfig(kubeconfig)
        await kubectl(kubeconfig, "apply", "-f", "-", stdin=namespace("gone"))
    async with Sandbox() as second:
        second.write_kubeconfig(kubeconfig)
        names = await kubectl(kubeconfig, "get", "namespaces", "-o", "name")
        assert "namespace/gone" not in names
    assert list(tmp_path.iterdir()) == [kubeconfig]
