"""In which order an apply touches resources: waves, then kinds, as Argo CD does.

The sort key of a resource is (wave, kind rank, kind, namespace, name):

- wave: the integer annotation `wake.dev/wave`, else Argo CD's
  `argocd.argoproj.io/sync-wave`, else Helm's `helm.sh/hook-weight` (as Argo
  CD reads it, on any resource), default 0; lowest first. When `wake.dev/wave`
  and `argocd.argoproj.io/sync-wave` both say something, Wake's own wins: it
  lets a Wake user move a resource of a repository shared with Argo CD
  without editing what Argo CD reads.
  Wave first, kind second -- Argo CD's sync-wave semantics -- so an operator
  can put anything before anything else. The flip side, as in Argo CD: a
  resource in wave -1 goes before a Namespace of wave 0, so give a namespace
  a wave no later than its contents'.
- kind rank, within a wave: Namespaces, then CRDs (what others need to
  exist), then Helm's install order (RBAC and config before the workloads
  that use them, Services before the Deployments behind them, Ingresses
  after), then every other kind alphabetically by kind name (custom
  resources, whose CRDs came first).

Resources of one wave are applied concurrently tier by tier (`apply_tier`):
Namespaces, then CRDs, then what workloads read (RBAC, Secrets, ConfigMaps,
storage), then Services, workloads and Ingresses, then custom resources. A
tier whose every resource the plan found live and unchanged waits for
nothing and is waited for by nothing: the applier sends it with the tier
beside it (services/applier/syncing.py).

Prunes run after every apply, in exactly the reverse order: workloads go
before the config they read, Namespaces and CRDs last.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from events.payloads import ResourceRef

WAVE_ANNOTATION = "wake.dev/wave"
ARGO_WAVE_ANNOTATION = "argocd.argoproj.io/sync-wave"
HELM_WEIGHT_ANNOTATION = "helm.sh/hook-weight"
# Most specific first: the first one a resource carries is its wave.
WAVE_ANNOTATIONS = (WAVE_ANNOTATION, ARGO_WAVE_ANNOTATION, HELM_WEIGHT_ANNOTATION)

KIND_ORDER: tuple[str, ...] = (
    "Namespace",
    "CustomResourceDefinition",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
)
_RANK = {kind: rank for rank, kind in enumerate(KIND_ORDER)}
_OTHER_KINDS = len(KIND_ORDER)

OrderKey = tuple[int, int, str, str, str, str]


class InvalidWave(ValueError):
    """A wave annotation that is not an integer; names the resource and the annotation."""

    def __init__(self, ref: ResourceRef, value: object, annotation: str = WAVE_ANNOTATION) -> None:
        super().__init__(
            f'{ref}: annotation {annotation} must be an integer like "-1" or "2", not {value!r}'
        )
        self.ref = ref
        self.value = value


def wave_of(resource: Mapping[str, Any], ref: ResourceRef) -> int:
    """The resource's wave (default 0); InvalidWave if its annotation is not an integer."""
    annotations = (resource.get("metadata") or {}).get("annotations") or {}
    for annotation in WAVE_ANNOTATIONS:
        raw = annotations.get(annotation)
        if raw is None:
            continue
        try:
            return int(str(raw).strip())
        except ValueError:
            raise InvalidWave(ref, raw, annotation) from None
    return 0


def kind_rank(kind: str) -> int:
    """Position of `kind` in KIND_ORDER; every other kind ranks after all of them."""
    return _RANK.get(kind, _OTHER_KINDS)


# Within a wave, the applier sends a tier's resources at once and the next
# tier only after: what others need to exist (Namespaces; CRDs), then what
# workloads read (policies, accounts, Secrets, ConfigMaps, storage, RBAC),
# then Services, workloads and Ingresses, then custom resources. Within a tier
# nothing waits for anything (gitops-engine runs a wave's tasks concurrently too).
_TIER_STARTS = (
    kind_rank("CustomResourceDefinition"),
    kind_rank("NetworkPolicy"),
    kind_rank("Service"),
    _OTHER_KINDS,
)


def apply_tier(kind: str) -> int:
    """Which tier of a wave `kind` is applied in (0: Namespaces first; see `_TIER_STARTS`)."""
    rank = kind_rank(kind)
    return sum(1 for start in _TIER_STARTS if rank >= start)


def order_key(ref: ResourceRef, wave: int = 0) -> OrderKey:
    """Sort key of a resource in apply order (see the module docstring)."""
    return (wave, kind_rank(ref.kind), ref.kind, ref.namespace, ref.name, ref.api_version)


def prune_order(
    refs: Iterable[ResourceRef], waves: Mapping[ResourceRef, int] | None = None
) -> list[ResourceRef]:
    """`refs` in the order to delete them: apply order reversed."""
    waves = waves or {}
    return sorted(refs, key=lambda ref: order_key(ref, waves.get(ref, 0)), reverse=True)
