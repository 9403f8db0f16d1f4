"""How healthy an applied resource is, and the app as a whole. Pure: live objects in, verdicts out.

A resource is Healthy only by a rule; with none that applies, it is Unknown.

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
- Pod: Healthy once Succeeded, or Running with its Ready condition True;
  Degraded if Failed; else Progressing.
- CustomResourceDefinition: Healthy once Established, Degraded if its names
  are not accepted, else Progressing.
- A few custom kinds by their own rules (`_CUSTOM_RULES`): cert-manager's
  Certificate, Issuer and ClusterIssuer (as Argo CD's checks), Argo Rollouts'
  Rollout (its status.phase), and Prometheus operator kinds that have no
  status by design (ServiceMonitor, PodMonitor, PrometheusRule: they exist).
- kstatus conventions, for any other kind: Progressing while it is being
  deleted or status.observedGeneration lags metadata.generation; Degraded if
  Stalled is True; Progressing if Reconciling is True; then Healthy if its
  Ready (else Available) condition is True, Progressing if it is not (yet);
  with no Ready condition, Healthy if the controller reports, by
  observedGeneration or by a False Reconciling or Stalled condition, that it
  has nothing left to do (kstatus' "Current").
- Beyond that, a built-in kind (its API group is Kubernetes' own) that exists
  is Healthy: ConfigMaps, Services, RBAC and the like have nothing to wait for.
  A custom resource that says none of the above is Unknown: Wake cannot tell
  whether its controller finished, so it does not claim it did.
- A resource that does not exist is Missing.

The app's status is its worst resource's (Degraded > Missing > Progressing >
Suspended > Unknown > Healthy): an app whose resources are all Healthy but
one it cannot judge is Unknown, not Healthy. Healthy, Degraded and Suspended
are final: health watching stops there. A rollout that is not final by the
app's health_timeout_seconds is Degraded, saying which resources were not
ready -- except that a resource still Unknown then stays Unknown (its
controller said nothing; that is not a failure Wake saw).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from events.bundle import BUILTIN_GROUPS
from events.payloads import ResourceHealth, ResourceRef

Status = Literal["Healthy", "Progressing", "Degraded", "Missing", "Suspended", "Unknown"]
Resource = dict[str, Any]

SEVERITY: dict[str, int] = {
    "Healthy": 0,
    "Unknown": 1,
    "Suspended": 2,
    "Progressing": 3,
    "Missing": 4,
    "Degraded": 5,
}
FINAL: frozenset[str] = frozenset({"Healthy", "Degraded", "Suspended"})
NO_RULE = "no health rule for"


def assess(ref: ResourceRef, obj: Resource | None) -> ResourceHealth:
    """The health of the live object `obj` of `ref` (None: it does not exist)."""
    if obj is None:
        return ResourceHealth(ref=ref, status="Missing", message="not found in the cluster")
    group = ref.api_version.rpartition("/")[0]
    check = _BY_KIND.get((group, ref.kind))
    if check is not None:
        status, message = check(obj)
    elif group in BUILTIN_GROUPS:
        status, message = _kstatus(obj) or ("Healthy", "")
    else:
        status, message = _kstatus(obj) or (
            "Unknown",
            f"{NO_RULE} {ref.kind} ({group}): it reports no Ready, Reconciling or "
            "Stalled condition and no status.observedGeneration",
        )
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


def unjudged(resource: ResourceHealth) -> bool:
    """Unknown because no rule applies (not because it could not be read).

    Such a resource need not hold up a sync wave: Argo CD lets a resource with
    no health check pass, since waiting cannot make it judgeable.
    """
    return resource.status == "Unknown" and resource.message.startswith(NO_RULE)


def timed_out(resources: Sequence[ResourceHealth], timeout: float) -> list[ResourceHealth]:
    """`resources` once the health timeout passed: each one not final is Degraded, saying so.

    Unknown stays Unknown: nothing said it failed, only that nothing can be told.
    """
    return [
        resource
        if is_final(resource.status) or resource.status == "Unknown"
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


def _pod(obj: Resource) -> Verdict:
    """As Argo CD: by phase; a running pod by its Ready condition."""
    status = obj.get("status") or {}
    phase = status.get("phase")
    if phase == "Succeeded":
        return "Healthy", ""
    if phase == "Failed":
        return "Degraded", str(status.get("message") or status.get("reason") or "pod failed")
    if phase == "Running":
        ready = _conditions(status).get("Ready") or {}
        if ready.get("status") == "True":
            return "Healthy", ""
        return "Progressing", str(ready.get("message") or "containers not ready")
    return "Progressing", f"pod {phase or 'Pending'}"


def _crd(obj: Resource) -> Verdict:
    conditions = _conditions(obj.get("status") or {})
    names = conditions.get("NamesAccepted") or {}
    if names.get("status") == "False":
        return "Degraded", str(names.get("message") or names.get("reason") or "names not accepted")
    if (conditions.get("Established") or {}).get("status") == "True":
        return "Healthy", ""
    return "Progressing", "waiting for the API server to establish it"


def _kstatus(obj: Resource) -> Verdict | None:
    """kstatus' conventions; None when the object follows none of them."""
    metadata, _, status = _parts(obj)
    if metadata.get("deletionTimestamp"):
        return "Progressing", "being deleted"
    conditions = _conditions(status)
    if "observedGeneration" in status and not _generation_observed(metadata, status):
        return "Progressing", "waiting for the controller to observe the current generation"
    stalled = conditions.get("Stalled") or {}
    if stalled.get("status") == "True":
        return "Degraded", str(stalled.get("message") or stalled.get("reason") or "stalled")
    reconciling = conditions.get("Reconciling") or {}
    if reconciling.get("status") == "True":
        return "Progressing", str(
            reconciling.get("message") or reconciling.get("reason") or "reconciling"
        )
    ready = conditions.get("Ready") or conditions.get("Available")
    if ready is not None:
        if ready.get("status") == "True":
            return "Healthy", ""
        why = ready.get("message") or ready.get("reason") or f"{ready.get('type')} is not True"
        return "Progressing", str(why)
    if "observedGeneration" in status or "Reconciling" in conditions or "Stalled" in conditions:
        return "Healthy", ""
    return None


# --- custom kinds with rules of their own ------------------------------------------------


def _certificate(obj: Resource) -> Verdict:
    """cert-manager Certificate, as Argo CD's check: issuing, then Ready or not."""
    conditions = _conditions(obj.get("status") or {})
    issuing = conditions.get("Issuing") or {}
    if issuing.get("status") == "True":
        return "Progressing", str(issuing.get("message") or "issuing the certificate")
    ready = conditions.get("Ready")
    if ready is None:
        return "Progressing", "waiting for the certificate"
    if ready.get("status") == "True":
        return "Healthy", ""
    return "Degraded", str(ready.get("message") or ready.get("reason") or "certificate not ready")


def _issuer(obj: Resource) -> Verdict:
    """cert-manager Issuer and ClusterIssuer: Ready, else Degraded; no condition yet: starting."""
    ready = _conditions(obj.get("status") or {}).get("Ready")
    if ready is None:
        return "Progressing", "initializing the issuer"
    if ready.get("status") == "True":
        return "Healthy", ""
    return "Degraded", str(ready.get("message") or ready.get("reason") or "issuer not ready")


def _rollout(obj: Resource) -> Verdict:
    """Argo Rollouts' Rollout: the phase its controller writes, once it saw this generation."""
    metadata, spec, status = _parts(obj)
    observed = status.get("observedGeneration")
    # Rollouts writes observedGeneration as a string.
    if observed is None or str(observed) != str(_int(metadata.get("generation"), 1)):
        return "Progressing", "waiting for the rollout to be observed"
    phase = status.get("phase")
    message = str(status.get("message") or "")
    if phase == "Healthy":
        return "Healthy", ""
    if phase == "Paused" or spec.get("paused"):
        return "Suspended", message or "rollout paused"
    if phase == "Degraded":
        return "Degraded", message or "rollout degraded"
    return "Progressing", message or f"phase {phase or 'unknown'}"


def _exists(obj: Resource) -> Verdict:
    """Kinds with no status by design: existing is all they do."""
    return "Healthy", ""


_CUSTOM_RULES = {
    ("cert-manager.io", "Certificate"): _certificate,
    ("cert-manager.io", "Issuer"): _issuer,
    ("cert-manager.io", "ClusterIssuer"): _issuer,
    ("argoproj.io", "Rollout"): _rollout,
    ("monitoring.coreos.com", "ServiceMonitor"): _exists,
    ("monitoring.coreos.com", "PodMonitor"): _exists,
    ("monitoring.coreos.com", "PrometheusRule"): _exists,
}


_BY_KIND = {
    ("apps", "Deployment"): _deployment,
    ("apps", "StatefulSet"): _statefulset,
    ("apps", "DaemonSet"): _daemonset,
    ("batch", "Job"): _job,
    ("", "PersistentVolumeClaim"): _pvc,
    ("", "Pod"): _pod,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): _crd,
    **_CUSTOM_RULES,
}
