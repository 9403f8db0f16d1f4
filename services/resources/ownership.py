"""One owner per object: may this app apply over what is live? Pure.

An object's owner is the app its `wake.dev/app` label names. An app applies
an object that exists already only if it owns it, if the object is in its last
applied inventory (Wake applied it for this app and someone stripped the
label: applying puts it back), or if the app was registered with `--adopt`.
Otherwise the resource is a plan error, and the plan is blocked:

- owned by another app: both would apply it with the same field manager and
  relabel it back and forth; the error names both apps, as Argo CD's
  SharedResourceWarning does. A Namespace is no exception: two apps sharing a
  namespace let one of them (or `--create-namespace`, or nobody) own the
  Namespace object, and the others only deploy into it.
- owned by nobody (no `wake.dev/app` label): Wake did not create it and does
  not take it over silently (Argo CD would; Wake's rule is to never adopt or
  prune what it did not create). Only objects the bundle itself lists are
  checked: deploying into an existing namespace (`default`, or one an
  administrator made) is fine, only listing that Namespace is not.
"""

from __future__ import annotations

from typing import Any

from events.payloads import ResourceRef
from services.resources.labels import APP_LABEL

Resource = dict[str, Any]


def owner_of(obj: Resource) -> str:
    """The app a live object's `wake.dev/app` label names; "" if none."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    owner = labels.get(APP_LABEL, "")
    return owner if isinstance(owner, str) else ""


def ownership_error(
    ref: ResourceRef,
    live: Resource | None,
    *,
    app: str,
    adopt: bool,
    inventoried: bool,
) -> str:
    """Why `app` may not apply `ref` over `live` ("" if it may).

    `inventoried`: the ref is in the app's last applied inventory.
    """
    if live is None or adopt:
        return ""
    owner = owner_of(live)
    if owner == app:
        return ""
    if owner:
        return (
            f"{ref} is managed by app {owner!r} (label {APP_LABEL}), and app {app!r} "
            f"applies it too: an object has one owner. Remove it from one of them, or "
            f"register {app} with --adopt to take it over"
        )
    if inventoried:
        return ""
    return (
        f"{ref} exists and is not managed by Wake (no {APP_LABEL} label); "
        f"register {app} with --adopt to take it over"
    )
