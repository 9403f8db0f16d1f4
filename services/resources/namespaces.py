"""`--create-namespace`: the destination Namespace as part of the plan, as Argo CD's
CreateNamespace=true sync option. Pure.

When the app asks for it and its bundle has no Namespace of the destination's
name, the plan adds one, labelled for the app like every resource Wake applies,
in the first wave (Namespaces sort first within a wave), so that it exists
before anything is applied into it. Like Argo CD, it is created only when
missing: a namespace that exists and is not the app's (another app's, an
administrator's, `default`) is left as it is -- not relabelled, not in the plan.
One the app created earlier stays in its plans (unchanged), so that it stays in
its inventory.

A namespace created this way carries the annotation `wake.dev/created-by:
create-namespace` and is never pruned -- not when the option is turned off, not
when the destination changes: deleting it would delete everything in it, and
Argo CD never deletes a namespace CreateNamespace made either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from events.payloads import PlanCreated, ResourceRef
from services.resources.ordering import WAVE_ANNOTATION
from services.resources.ownership import owner_of

Resource = dict[str, Any]

CREATED_BY_ANNOTATION = "wake.dev/created-by"
CREATED_BY = "create-namespace"


def namespace_ref(name: str) -> ResourceRef:
    return ResourceRef(api_version="v1", kind="Namespace", name=name)


def lacks_namespace(refs: Iterable[ResourceRef], name: str) -> bool:
    """Whether none of `refs` is the Namespace `name`."""
    return not any(ref.kind == "Namespace" and ref.name == name for ref in refs)


def is_creatable(live: Resource | None, *, app: str) -> bool:
    """Whether the plan includes the destination Namespace, given what is live: it is
    missing, or the app's own."""
    return live is None or owner_of(live) == app


def destination_namespace(name: str, *, wave: int = 0) -> Resource:
    """The Namespace `name`, as if rendered, in `wave` (the earliest of the app's
    resources, so that nothing is applied before it); prepared like the bundle's."""
    annotations = {CREATED_BY_ANNOTATION: CREATED_BY}
    if wave < 0:
        annotations[WAVE_ANNOTATION] = str(wave)
    metadata = {"name": name, "annotations": annotations}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def is_created_namespace(obj: Resource | None) -> bool:
    """Whether a live object is a Namespace `--create-namespace` made (never pruned)."""
    if obj is None or obj.get("kind") != "Namespace":
        return False
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return annotations.get(CREATED_BY_ANNOTATION) == CREATED_BY


def planned_namespace(plan: PlanCreated, refs: Iterable[ResourceRef], name: str) -> Resource | None:
    """The destination Namespace `name` to apply with `plan` when the planner added it
    (the plan changes it and the bundle's `refs` do not have it), else None."""
    if not lacks_namespace(refs, name):
        return None
    ref = namespace_ref(name)
    for change in plan.changes:
        if change.ref == ref:
            return destination_namespace(name, wave=change.wave)
    return None
