"""Health of each kind, and of an app, with literals."""

from __future__ import annotations

from typing import Any

from events.payloads import ResourceHealth, ResourceRef
from services.resources.health import aggregate, assess, timed_out, unjudged


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


def test_a_custom_resource_is_healthy_only_by_a_rule() -> None:
    cr = "example.com/v1"
    nothing = assess(ref("Widget", cr), obj())
    assert nothing.status == "Unknown"
    assert nothing.message == (
        "no health rule for Widget (example.com): it reports no Ready, Reconciling or "
        "Stalled condition and no status.observedGeneration"
    )
    assert status_of("Widget", {"metadata": {}, "spec": {"size": 3}}, cr) == "Unknown"
    # A group named like Kubernetes' own but served by a CRD is custom too.
    assert status_of("HTTPRoute", obj(), "gateway.networking.k8s.io/v1") == "Unknown"
    # Built-in kinds with nothing to wait for are healthy when they exist.
    assert status_of("ConfigMap", obj(), "v1") == "Healthy"
    assert status_of("ClusterRole", obj(), "rbac.authorization.k8s.io/v1") == "Healthy"


def test_kstatus_conventions() -> None:
    cr = "example.com/v1"
    reconciling = [{"type": "Reconciling", "status": "True", "message": "scaling up"}]
    assert assess(ref("Widget", cr), obj(conditions=reconciling)).message == "scaling up"
    assert status_of("Widget", obj(conditions=reconciling), cr) == "Progressing"
    lagging = obj(2, observedGeneration=1, conditions=[{"type": "Ready", "status": "True"}])
    assert status_of("Widget", lagging, cr) == "Progressing"
    # Current: the controller saw this generation and reports nothing left to do.
    assert status_of("Widget", obj(2, observedGeneration=2), cr) == "Healthy"
    quiet = [{"type": "Reconciling", "status": "False"}, {"type": "Stalled", "status": "False"}]
    assert status_of("Widget", obj(conditions=quiet), cr) == "Healthy"
    deleting = obj(conditions=[{"type": "Ready", "status": "True"}])
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert status_of("Widget", deleting, cr) == "Progressing"


def test_custom_kinds_with_rules_of_their_own() -> None:
    cm = "cert-manager.io/v1"
    issuing = obj(conditions=[{"type": "Issuing", "status": "True"}])
    assert status_of("Certificate", issuing, cm) == "Progressing"
    assert status_of("Certificate", obj(), cm) == "Progressing"
    failed = obj(conditions=[{"type": "Ready", "status": "False", "message": "bad issuer"}])
    assert assess(ref("Certificate", cm), failed).message == "bad issuer"
    assert status_of("Certificate", failed, cm) == "Degraded"
    ready = obj(conditions=[{"type": "Ready", "status": "True"}])
    assert status_of("Certificate", ready, cm) == "Healthy"
    assert status_of("ClusterIssuer", ready, cm) == "Healthy"
    assert status_of("Issuer", obj(), cm) == "Progressing"

    argo = "argoproj.io/v1alpha1"
    assert status_of("Rollout", obj(observedGeneration="1", phase="Healthy"), argo) == "Healthy"
    assert status_of("Rollout", obj(2, observedGeneration="1", phase="Healthy"), argo) == (
        "Progressing"
    )
    assert status_of("Rollout", obj(observedGeneration="1", phase="Paused"), argo) == "Suspended"
    assert status_of("Rollout", obj(observedGeneration="1", phase="Degraded"), argo) == "Degraded"

    assert status_of("ServiceMonitor", obj(), "monitoring.coreos.com/v1") == "Healthy"

    crd = "apiextensions.k8s.io/v1"
    established = obj(conditions=[{"type": "Established", "status": "True"}])
    assert status_of("CustomResourceDefinition", established, crd) == "Healthy"
    assert status_of("CustomResourceDefinition", obj(), crd) == "Progressing"


def test_an_app_with_a_resource_no_rule_judges_is_unknown_and_stays_so_past_the_timeout() -> None:
    healthy = ResourceHealth(ref=ref("A"), status="Healthy")
    unknown = ResourceHealth(ref=ref("Widget", "example.com/v1"), status="Unknown", message="?")
    progressing = ResourceHealth(ref=ref("B"), status="Progressing", message="1 of 2")
    assert aggregate([healthy, unknown]) == "Unknown"
    # What is still rolling out is the news while it rolls out.
    assert aggregate([healthy, unknown, progressing]) == "Progressing"
    late = timed_out([healthy, unknown, progressing], 30)
    assert late[1] == unknown
    assert aggregate(late) == "Degraded"
    assert aggregate(timed_out([healthy, unknown], 30)) == "Unknown"


def test_unknown_for_want_of_a_rule_is_told_apart_from_unreadable() -> None:
    no_rule = assess(ref("Widget", "example.com/v1"), obj())
    unreadable = ResourceHealth(ref=ref("A"), status="Unknown", message="403 Forbidden")
    assert unjudged(no_rule)
    assert not unjudged(unreadable)
    assert not unjudged(assess(ref("Widget", "example.com/v1"), obj(observedGeneration=1)))


def test_pods_by_phase_and_readiness() -> None:
    ready = [{"type": "Ready", "status": "True"}]
    assert status_of("Pod", obj(phase="Succeeded"), "v1") == "Healthy"
    assert status_of("Pod", obj(phase="Running", conditions=ready), "v1") == "Healthy"
    assert status_of("Pod", obj(phase="Running"), "v1") == "Progressing"
    assert status_of("Pod", obj(phase="Failed", reason="Evicted"), "v1") == "Degraded"
    assert status_of("Pod", obj(), "v1") == "Progressing"
