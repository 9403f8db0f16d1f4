"""From a bundle's resource to what Wake applies: inventory labels and a definite namespace.

Pure. The planner dry-runs exactly what the applier will apply, because both
prepare resources with these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from services.resources.labels import with_inventory_labels

Resource = dict[str, Any]

CRD_KIND = "CustomResourceDefinition"
CRD_GROUP = "apiextensions.k8s.io"


def group_of(api_version: str) -> str:
    """`apps` for `apps/v1`, "" for the core group's `v1`."""
    return api_version.rpartition("/")[0]


def prepare(resource: Resource, *, app: str, namespaced: bool, default_namespace: str) -> Resource:
    """`resource` as Wake applies it (a copy; the input is left as it is).

    It carries the app's inventory labels. A namespaced kind rendered without a
    namespace goes to the app's namespace, as Argo CD's destination namespace
    does; a cluster-scoped kind loses any namespace it was given, so that its
    identity (ResourceRef) has namespace "" wherever it is compared.
    """
    labelled = with_inventory_labels(resource, app)
    metadata = dict(labelled["metadata"])
    if namespaced:
        if not metadata.get("namespace"):
            metadata["namespace"] = default_namespace
    else:
        metadata.pop("namespace", None)
    return {**labelled, "metadata": metadata}


def crd_scopes(resources: Iterable[Resource]) -> dict[tuple[str, str], bool]:
    """(group, kind) -> namespaced, for the kinds the CRDs among `resources` define.

    Lets a plan place and order a custom resource whose CRD is in the same
    bundle and not served yet.
    """
    scopes: dict[tuple[str, str], bool] = {}
    for resource in resources:
        if (
            resource.get("kind") != CRD_KIND
            or group_of(str(resource.get("apiVersion"))) != CRD_GROUP
        ):
            continue
        spec = resource.get("spec") or {}
        kind = (spec.get("names") or {}).get("kind")
        group = spec.get("group")
        if isinstance(kind, str) and isinstance(group, str):
            scopes[(group, kind)] = spec.get("scope", "Namespaced") == "Namespaced"
    return scopes
