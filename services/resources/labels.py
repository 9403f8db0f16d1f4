"""The inventory labels: how an object in the cluster says Wake applied it, for which app.

Every resource Wake applies carries them, so prune and drift detection can
find an app's objects by label selector even without the log. They win over
a rendered value of the same key (a chart's `managed-by: Helm`): an object
applied by Wake is managed by Wake.
"""

from __future__ import annotations

from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "wake"
APP_LABEL = "wake.dev/app"


def inventory_labels(app: str) -> dict[str, str]:
    """The labels of every object Wake applies for `app`; also the selector that finds them."""
    return {MANAGED_BY: MANAGER, APP_LABEL: app}


def with_inventory_labels(resource: dict[str, Any], app: str) -> dict[str, Any]:
    """A copy of `resource` whose metadata.labels include the inventory labels.

    The input is left as it is (it may be a bundle's resource, shared).
    """
    metadata = dict(resource.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **inventory_labels(app)}
    return {**resource, "metadata": metadata}


def is_labelled_for(obj: dict[str, Any], app: str) -> bool:
    """Whether a live object carries `app`'s inventory labels (so Wake may prune it)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(key) == value for key, value in inventory_labels(app).items())
