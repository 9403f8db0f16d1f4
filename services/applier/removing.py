"""`wake app remove NAME --cascade`: which of the app's objects the applier deletes. Pure.

The app's last inventory (its last ApplySucceeded; an apply still in flight
is waited for) is deleted in prune order, like a prune of everything, except what Wake must not
touch: an object already gone, one the log does not show this app created
(adopted with --adopt: released, never deleted), one that no longer carries
the app's inventory labels (someone else took it over), and the namespaces a
cluster or Wake itself lives in. A removal that a later registration of the same app made
moot (the app is back) deletes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from events.envelope import Envelope
from events.payloads import ResourceApplied, ResourceDeleted, ResourceRef
from services.projects.rules import NEVER_DELETED_NAMESPACES, never_deleted
from services.resources.identity import Identity, identity
from services.resources.labels import is_labelled_for

# Namespaces no cascade ever deletes, whoever's labels they carry.
PROTECTED_NAMESPACES = NEVER_DELETED_NAMESPACES


def created_by(events: Iterable[tuple[int, Envelope]]) -> set[Identity]:
    """What an app's ResourceApplied and ResourceDeleted events (in log order) show it
    created and did not delete since."""
    created: set[Identity] = set()
    for _, event in events:
        payload = event.payload
        if isinstance(payload, ResourceApplied):
            if payload.action == "created" and not payload.hook:
                created.add(identity(payload.ref))
            elif payload.action == "pruned":
                created.discard(identity(payload.ref))
        elif isinstance(payload, ResourceDeleted) and payload.action == "deleted":
            created.discard(identity(payload.ref))
    return created


def kept_because(
    ref: ResourceRef,
    live: dict[str, Any] | None,
    *,
    app: str,
    system_namespace: str,
    created: bool = True,
) -> str:
    """Why the cascade of `app` leaves `ref` alone, or "" when it deletes it.

    `created`: the log shows the app created `ref`.
    """
    if live is None:
        return "already gone"
    protected = never_deleted(ref, system_namespace=system_namespace)
    if protected:
        return protected
    if not created:
        return f"the log does not show that {app} created it (it was adopted): it is released"
    if not is_labelled_for(live, app):
        return "it no longer carries the app's inventory labels"
    return ""


def outdated(removal_seq: int, registered_seq: int | None) -> bool:
    """Whether the app was registered again after the removal at `removal_seq`."""
    return registered_seq is not None and registered_seq > removal_seq
