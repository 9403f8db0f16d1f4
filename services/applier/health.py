"""How healthy an applied resource is, and the app as a whole. Pure: live objects in, verdicts out.

Per kind, after kstatus (Flux) and Argo CD's health checks:

- Deployment: Suspended if paused; Degraded if its Progressing condition says
  ProgressDeadlineExceeded; Progressing until the controller observed the
  current generation and every desired replica is updated and available, and
  no old replica remains; then Healthy.
- StatefulSet: Progressing until the current generation is observed and every
  replica (above the rolling update's partition) is updated and ready.
- DaemonSet: Progressing until the current generation is observed and every
  scheduled pod is updated and available.
- Job: Healthy once Complete, Degraded once Failed, Suspended if suspended,
  else Progressing.
- PersistentVolumeClaim: Healthy once Bound, Degraded if Lost, else Progressing.
- Any other kind with conditions: Degraded if Stalled is True; Progressing
  while status.observedGeneration lags metadata.generation; Healthy if its
  Ready (else Available) condition is True, Progressing if it is not (yet).
- Anything else that exists is Healthy; a resource that does not exist is Missing.

The app's status is its worst resource's (Degraded > Missing > Unknown >
Progressing > Suspended > Healthy). Healthy, Degraded and Suspended are final:
health watching stops there. A rollout that is not final by the app's
health_timeout_seconds is Degraded, saying which resources were not ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from events.payloads import ResourceHealth, ResourceRef

Status = Literal["Healthy", "Progressing", "Degraded", "Missing", "Suspended", "Unknown"]
Resource = dict[str, Any]

SEVERITY: dict[str, int] = {
    "Healthy": 0,
    "Suspended": 1,
    "Progressing": 2,
    "Unknown": 3,
    "Missing": 4,
    "Degraded": 5,
}
FINAL: frozenset[str] = frozenset({"Healthy", "Degraded", "Suspended"})


def assess(ref: ResourceRef, obj: Resource | None) -> ResourceHealth:
    """The health of the live object `obj` of `ref` (None: it does not exist)."""
    if obj is None:
        return ResourceHealth(ref=ref, status="Missing", message="not found in the cluster")
    group = ref.api_version.rpartition("/")[0]
    check = _BY_KIND.get((group, ref.kind), _by_conditions)
    status, message = check(obj)
    return ResourceHealth(ref=ref, status=status, message=message)


def aggregate(resources: Iterable[ResourceHealth]) -> Status:
    """The app's status: its worst resource's; Healthy for no resources."""
    worst: Status = "Healthy"
    for resource in resources:
        if SEVERITY[resource.status] > SEVERITY[worst]:
            worst = resource.status
    return worst


def is_final(status: str) -> bool:
    return status in FINAL


def timed_out(resources: Sequence[ResourceHealth], timeout: float) -> list[ResourceHealth]:
    """`resources` once the health timeout passed: every one not final is Degraded, saying so."""
    return [
        resource
        if is_final(resource.status)
        else ResourceHealth(
            ref=resource.ref,
            status="Degraded",
            message=f"not healthy within {timeout:g}s (was {resource.status}"
            + (f": {resource.message})" if resource.message else ")"),
        )
        for resource in resources
    ]


# --- per kind --------------------------------------------------------------------

Verdict = tuple[Status, str]


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _parts(obj: Resource) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}


def _conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for condition in status.get("conditions") or []:
        if isinstance(condition, dict) and isinstance(condition.get("type"), str):
            found[condition["type"]] = condition
    return found


def _generation_observed(metadata: dict[str, Any], status: dict[str, Any]) -> bool:
    observed = status.get("observedGeneration")
    return isinstance(observed, int) and observed >= _int(metadata.get("generation"), 1)


def _deployment(obj: Resource) -> Verdict:
    metadata, spec, status = _parts(obj)
    if spec.get("paused"):
        return "Suspended", "rollout paused"
    progressing = _conditions(status).get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return "Degraded", str(progressing.get("message") or "progress deadline exceeded")
    if not _generation_observed(metadata, status):
        return "Progressing", "waiting for the rollout to be observed"
    wanted = _int(spec.get("replicas"), 1)
    updated = _int(status.get("updatedReplicas"))
    total = _int(status.get("replicas"))
    available = _int(status.get("availableReplicas"))
    if updated < wanted:
        return "Progressing", f"{updated} of {wanted} replicas updated"
    if total > updated:
        return "Progressing", f"{total - updated} old replicas pending termination"
    if available < updated:
        return "Progressing", f"{available} of {updated} updated replicas available"
    return "Healthy", ""


def _statefulset(obj: Resource) -> Verdict:
    metadata, spec, status = _parts(obj)
    if not _generation_observed(metadata, status):
        return "Progressing", "waiting for the rollout to be observed"
    wanted = _int(spec.get("replicas"), 1)
    rolling = (spec.get("updateStrategy") or {}).get("rollingUpdate") or {}
    partition = _int(rolling.get("partition"))
    ready = _int(status.get("readyReplicas"))
    updated = _int(status.get("updatedReplicas"))
    if ready < wanted:
        return "Progressing", f"{ready} of {wanted} replicas ready"
    if updated < wanted - partition:
        return "Progressing", f"{updated} of {wanted - partition} replicas updated"
    return "Healthy", ""


def _daemonset(obj: Resource) -> Verdict:
    metadata, _, status = _parts(obj)
    if not _generation_observed(metadata, status):
        return "Progressing", "waiting for the rollout to be observed"
    desired = _int(status.get("desiredNumberScheduled"))
    updated = _int(status.get("updatedNumberScheduled"))
    available = _int(status.get("numberAvailable"))
    if updated < desired:
        return "Progressing", f"{updated} of {desired} scheduled pods updated"
    if available < desired:
        return "Progressing", f"{available} of {desired} scheduled pods available"
    return "Healthy", ""


def _job(obj: Resource) -> Verdict:
    _, spec, status = _parts(obj)
    conditions = _conditions(status)
    failed = conditions.get("Failed") or {}
    if failed.get("status") == "True":
        return "Degraded", str(failed.get("message") or failed.get("reason") or "job failed")
    if (conditions.get("Complete") or {}).get("status") == "True":
        return "Healthy", ""
    if spec.get("suspend"):
        return "Suspended", "job suspended"
    return "Progressing", f"{_int(status.get('succeeded'))} pods succeeded"


def _pvc(obj: Resource) -> Verdict:
    phase = (obj.get("status") or {}).get("phase")
    if phase == "Bound":
        return "Healthy", ""
    if phase == "Lost":
        return "Degraded", "claim lost its volume"
    return "Progressing", f"phase {phase or 'Pending'}"


def _by_conditions(obj: Resource) -> Verdict:
    metadata, _, status = _parts(obj)
    conditions = _conditions(status)
    stalled = conditions.get("Stalled") or {}
    if stalled.get("status") == "True":
        return "Degraded", str(stalled.get("message") or stalled.get("reason") or "stalled")
    if "observedGeneration" in status and not _generation_observed(metadata, status):
        return "Progressing", "waiting for the controller to observe the current generation"
    ready = conditions.get("Ready") or conditions.get("Available")
    if ready is None:
        return "Healthy", ""
    if ready.get("status") == "True":
        return "Healthy", ""
    why = ready.get("message") or ready.get("reason") or f"{ready.get('type')} is not True"
    return "Progressing", str(why)


_BY_KIND = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("batch", "Job"): _job,
    ("", "PersistentVolumeClaim"): _pvc,
}
