"""Has the cluster drifted from the last applied bundle, and is that news? Pure.

A resource has drifted when its live object differs from the server-side
dry run of what Wake applied -- both normalized and without the app's
ignored paths (`planner.differences`), so drift and plans agree on what a
difference is -- or when it was deleted by hand. The server computes the
dry run against the live object, so a field another manager added and Wake
never set is not drift; a field Wake set and someone changed is.

Drift is reported (DriftDetected) only when the set of drifted resources and
fields differs from the one last seen for the same apply: a drift that stays
is reported once, not on every check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from events.payloads import DriftedResource, IgnoreRule, ResourceRef
from services.resources.differences import changed_pointers, comparable

Resource = dict[str, Any]


def drifted(
    ref: ResourceRef,
    dry_run: Resource | None,
    live: Resource | None,
    ignore: Sequence[IgnoreRule] = (),
) -> DriftedResource | None:
    """How `ref` drifted (live None: deleted), or None if it has not.

    `dry_run` None means it could not be dry-run (the server refused): only
    its deletion can be told then.
    """
    if live is None:
        return DriftedResource(ref=ref, deleted=True)
    if dry_run is None:
        return None
    fields = changed_pointers(comparable(dry_run, ignore, ref), comparable(live, ignore, ref))
    return DriftedResource(ref=ref, fields=fields) if fields else None


def drift_set(found: Sequence[DriftedResource | None]) -> list[DriftedResource]:
    """The drifted resources among `found`, in a stable order."""
    return sorted(
        (d for d in found if d is not None),
        key=lambda d: (d.ref.kind, d.ref.namespace, d.ref.name, d.ref.api_version),
    )


def is_news(current: Sequence[DriftedResource], previous: Sequence[DriftedResource]) -> bool:
    """Whether `current` drift must be reported, `previous` being the last seen for this apply."""
    return bool(current) and list(current) != list(previous)
