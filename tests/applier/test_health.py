"""Health of each kind, and of an app, with literals."""

from __future__ import annotations

from typing import Any

from events.payloads import ResourceHealth, ResourceRef
from services.applier.health import aggregate, assess, timed_out


def ref(kind: str, api_version: str = "apps/v1") -> ResourceRef:
    return ResourceRef(api_version=api_version, kind=kind, name="x", namespace="shop")


def obj(generation: int = 1, spec: dict[str, Any] | None = None, **status: Any) -> dict:
    return {"metadata": {"generation": generation}, "spec": spec or {}, "status": status}


def status_of(kind: str, o: dict | None, api_version: str = "apps/v1") -> str:
    return assess(ref(kind, api_version), o).status


def test_deployment_rollout() -> None:
    spec = {"replicas": 2}
    assert status_of("Deployment", obj(spec=spec)) == "Progressing"  # not observed yet
    assert status_of("Deployment", obj(2, spec, observedGeneration=1)) == "Progressing"
    rolling = obj(spec=spec, observedGeneration=1, updatedReplicas=2, replicas=3)
    assert status_of("Deployment", rolling) == "Progressing"
    unavailable = obj(
        spec=spec, observedGeneration=1, updatedReplicas=2, replicas=2, availableReplicas=1
    )
    assert status_of("Deployment", unavailable) == "Progressing"
    done = obj(spec=spec, observedGeneration=1, updatedReplicas=2, replicas=2, availableReplicas=2)
    assert status_of("Deployment", done) == "Healthy"
    stuck = obj(
        spec=spec,
        observedGeneration=1,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    assert status_of("Deployment", stuck) == "Degraded"
    assert status_of("Deployment", obj(spec={"paused": True})) == "Suspended"


def test_statefulset_and_daemonset_rollouts() -> None:
    spec = {"replicas": 3}
    assert status_of("StatefulSet", obj(spec=spec, observedGeneration=1, readyReplicas=2)) == (
        "Progressing"
    )
    ready = obj(spec=spec, observedGeneration=1, readyReplicas=3, updatedReplicas=3)
    assert status_of("StatefulSet", ready) == "Healthy"
    scheduled = obj(observedGeneration=1, desiredNumberScheduled=2, updatedNumberScheduled=2)
    assert status_of("DaemonSet", scheduled) == "Progressing"
    available = obj(
        observedGeneration=1, desiredNumberScheduled=2, updatedNumberScheduled=2, numberAvailable=2
    )
    assert status_of("DaemonSet", available) == "Healthy"


def test_jobs_and_claims() -> None:
    complete = obj(conditions=[{"type": "Complete", "status": "True"}])
    failed = obj(conditions=[{"type": "Failed", "status": "True", "message": "BackoffLimit"}])
    assert status_of("Job", complete, "batch/v1") == "Healthy"
    assert assess(ref("Job", "batch/v1"), failed).message == "BackoffLimit"
    assert status_of("Job", failed, "batch/v1") == "Degraded"
    assert status_of("Job", obj(), "batch/v1") == "Progressing"
    assert status_of("PersistentVolumeClaim", obj(phase="Bound"), "v1") == "Healthy"
    assert status_of("PersistentVolumeClaim", obj(phase="Pending"), "v1") == "Progressing"
    assert status_of("PersistentVolumeClaim", obj(phase="Lost"), "v1") == "Degraded"


def test_conditions_of_any_kind() -> None:
    cr = "example.com/v1"
    ready = obj(conditions=[{"type": "Ready", "status": "True"}])
    assert status_of("Widget", ready, cr) == "Healthy"
    assert status_of("Widget", obj(conditions=[{"type": "Ready", "status": "False"}]), cr) == (
        "Progressing"
    )
    assert status_of("Widget", obj(conditions=[{"type": "Available", "status": "True"}]), cr) == (
        "Healthy"
    )
    stalled = obj(conditions=[{"type": "Stalled", "status": "True", "message": "bad spec"}])
    assert status_of("Widget", stalled, cr) == "Degraded"
    assert status_of("ConfigMap", {"data": {}}, "v1") == "Healthy"
    assert status_of("ConfigMap", None, "v1") == "Missing"


def test_the_app_is_as_healthy_as_its_worst_resource_and_times_out_degraded() -> None:
    healthy = ResourceHealth(ref=ref("A"), status="Healthy")
    progressing = ResourceHealth(ref=ref("B"), status="Progressing", message="1 of 2")
    assert aggregate([healthy, progressing]) == "Progressing"
    assert aggregate([]) == "Healthy"
    late = timed_out([healthy, progressing], 30)
    assert aggregate(late) == "Degraded"
    assert late[0] == healthy
    assert late[1].message == "not healthy within 30s (was Progressing: 1 of 2)"
