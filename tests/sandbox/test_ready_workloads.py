"""With ready workloads, Jobs complete and claims bind as on an idle real cluster."""

from __future__ import annotations

from typing import Any

from services.sandbox import Sandbox


def job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "run", "image": "busybox:1.36"}],
                }
            },
            **spec,
        },
    }


def claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }


def create(sandbox: Sandbox, body: dict[str, Any]) -> dict[str, Any]:
    t = sandbox.resource_type(body["apiVersion"], body["kind"])
    sandbox.store.create(t, "default", body, manager="test", dry_run=False)
    found = sandbox.get(
        body["apiVersion"], body["kind"], body["metadata"]["name"], namespace="default"
    )
    assert found is not None
    return found


async def test_a_job_completes_when_created() -> None:
    async with Sandbox(ready_workloads=True) as sandbox:
        status = create(sandbox, job("migrate", completions=3))["status"]

        assert status["succeeded"] == 3
        assert status["completionTime"] == status["startTime"]
        complete = next(c for c in status["conditions"] if c["type"] == "Complete")
        assert complete["status"] == "True"
        # A suspended Job does not run.
        assert "status" not in create(sandbox, job("later", suspend=True))


async def test_a_status_written_by_a_test_stays() -> None:
    async with Sandbox(ready_workloads=True) as sandbox:
        create(sandbox, job("migrate"))
        failed = {"failed": 1, "conditions": [{"type": "Failed", "status": "True"}]}

        sandbox.set_status("batch/v1", "Job", "migrate", failed, namespace="default")

        assert sandbox.get("batch/v1", "Job", "migrate", namespace="default")["status"] == failed


async def test_a_claim_binds_with_what_it_asked_for() -> None:
    async with Sandbox(ready_workloads=True) as sandbox:
        status = create(sandbox, claim("data"))["status"]

        assert status == {
            "phase": "Bound",
            "accessModes": ["ReadWriteOnce"],
            "capacity": {"storage": "1Gi"},
        }


async def test_without_ready_workloads_nothing_runs() -> None:
    async with Sandbox() as sandbox:
        assert "status" not in create(sandbox, job("migrate"))
        assert "status" not in create(sandbox, claim("data"))


def pod(name: str, restart: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"restartPolicy": restart, "containers": [{"name": "main", "image": "x:1"}]},
    }


async def test_a_pod_runs_or_if_not_restarted_succeeds() -> None:
    async with Sandbox(ready_workloads=True) as sandbox:
        running = create(sandbox, pod("server", "Always"))["status"]
        finished = create(sandbox, pod("task", "Never"))["status"]

        assert running["phase"] == "Running"
        assert {c["type"]: c["status"] for c in running["conditions"]}["Ready"] == "True"
        assert running["containerStatuses"][0]["state"] == {
            "running": {"startedAt": running["startTime"]}
        }
        assert finished["phase"] == "Succeeded"
        assert finished["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
