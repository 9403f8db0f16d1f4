"""`wake app remove NAME --cascade`: which of the app's objects the applier deletes. Pure.

The app's last inventory (its last ApplySucceeded; an apply still in flight
is waited for) is deleted in prune order, like a prune of everything, except what Wake must not
touch: an object already gone, one that no longer carries the app's inventory
labels (someone else took it over), and the namespaces a cluster or Wake
itself lives in. A removal that a later registration of the same app made
moot (the app is back) deletes nothing.
"""

from __future__ import annotations

from typing import Any

from events.payloads import ResourceRef
from services.resources.labels import is_labelled_for

# Namespaces no cascade ever deletes, whoever's labels they carry.
PROTECTED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease", "default"})


def kept_because(
    ref: ResourceRef, live: dict[str, Any] | None, *, app: str, system_namespace: str
) -> str:
    """Why the cascade of `app` leaves `ref` alone, or "" when it deletes it."""
    if live is None:
        return "already gone"
    if ref.kind == "Namespace" and ref.api_version == "v1":
        if ref.name in PROTECTED_NAMESPACES:
            return f"namespace {ref.name} is never deleted"
        if ref.name == system_namespace:
            return f"namespace {ref.name} is Wake's own"
    if not is_labelled_for(live, app):
        return "it no longer carries the app's inventory labels"
    return ""


def outdated(removal_seq: int, registered_seq: int | None) -> bool:
    """Whether the app was registered again after the removal at `removal_seq`."""
    return registered_seq is not None and registered_seq > removal_seq
