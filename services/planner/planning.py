"""The planner's decision: desired + dry-run + live + last inventory -> changes and prunes.

Pure: the shell (service.py) asks the API server for dry-run results and live
objects and hands them in as dicts.

- `create`: nothing live.
- `update`: the server's dry-run result differs from the live object, once
  both have lost what the server owns (managedFields, resourceVersion,
  generation, uid, creationTimestamp, kubectl's last-applied annotation,
  status) and the paths the app's ignore rules name (`differences.py`).
  Comparing against the dry-run result, not the manifest, is what makes the
  diff exact: defaults, merges and admission are the server's, on both sides.
- `unchanged`: they are equal.
- hooks (`resources/phases.py`): `create`, with their phases in `hook` --
  they are created afresh at every sync; a resource marked Skip (or a Helm
  hook Wake does not run) is left out of the plan, and not pruned.
- `prune`: in the last applied inventory, no longer desired (only when the
  app prunes), except a Namespace `--create-namespace` made (`namespaces`),
  an object the log does not show this app created (`created`: adopted
  objects are released, never deleted), and the namespaces a cluster or Wake
  lives in (`projects.rules.never_deleted`).
  Refs are compared by group, kind, namespace and name -- not version -- so
  moving a kind to a new apiVersion never prunes the object that was just
  applied under it.

A change the plan cannot make has an `error`: the API server refused its dry
run or would not show it, its wave annotation is bad, or the app may not own
its live object (`ownership`). One such change blocks the whole plan
(`errors_of`, `policy.decide`).

Secret values never reach a diff: each `data`/`stringData` value shows as
`<redacted hmac-sha256:abcd1234>` (keyed: `events.redaction`), so a changed
secret shows as changed without revealing either value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from events.bundle import ref_of
from events.payloads import IgnoreRule, ResourceChange, ResourceRef
from services.projects.rules import never_deleted
from services.resources.differences import (
    LAST_APPLIED,
    SERVER_OWNED_METADATA,
    comparable,
    normalized,
)
from services.resources.identity import Identity, identity, live_wave
from services.resources.namespaces import is_created_namespace
from services.resources.ordering import InvalidWave, order_key, prune_order, wave_of
from services.resources.ownership import ownership_error
from services.resources.phases import InvalidHook, placement_of
from services.resources.showing import redacted, unified_diff

__all__ = ["LAST_APPLIED", "SERVER_OWNED_METADATA", "normalized"]

Resource = dict[str, Any]


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """The API server refused to dry-run (or to show: `operation` "read") a resource."""

    status_code: int
    reason: str
    message: str
    operation: str = "dry run"

    def __str__(self) -> str:
        code = f"{self.status_code} " if self.status_code else ""
        return f"{code}{self.reason}: {self.message}"


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Changes of the desired resources in apply order; the refs to prune, in prune order.

    Prunes are not among `changes` (as PlanCreated has them: `prune` says it).
    """

    changes: list[ResourceChange]
    prune: list[ResourceRef]


DryRun = Resource | Refusal | None
"""A dry-run outcome: the object the server would store; its refusal; or None when
the resource could not be dry-run because this plan creates what it needs first
(its Namespace, or the CRD of its kind)."""


def prune_candidates(
    desired: Iterable[ResourceRef], last_inventory: Iterable[ResourceRef]
) -> list[ResourceRef]:
    """Refs of the last inventory that are not desired any more, in prune order."""
    wanted = {identity(ref) for ref in desired}
    seen: set[Identity] = set()
    candidates = []
    for ref in last_inventory:
        key = identity(ref)
        if key not in wanted and key not in seen:
            seen.add(key)
            candidates.append(ref)
    return prune_order(candidates)


def contains(live: Any, desired: Any) -> bool:
    """Whether every field `desired` sets has the same value in `live` (lists by position)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            key in live and contains(live[key], value) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(contains(a, b) for a, b in zip(live, desired, strict=True))
        )
    return live == desired


def change_for(
    resource: Resource,
    dry_run: DryRun,
    live: Resource | None,
    ignore: Sequence[IgnoreRule] = (),
) -> ResourceChange:
    """What applying `resource` (as prepared) does, given its dry-run outcome and live object.

    Paths the app's `ignore` rules name for this resource neither show in the
    diff nor make it an update.
    """
    ref = ref_of(resource)
    error = ""
    try:
        wave = wave_of(resource, ref)
    except InvalidWave as exc:
        wave, error = 0, str(exc)
    hook = ""
    try:
        placement = placement_of(resource, ref)
    except InvalidHook as exc:
        error = "; ".join(filter(None, (error, str(exc))))
    except InvalidWave:
        pass
    else:
        if placement.hook:
            # Created afresh at every sync (its delete policy removes the old
            # one), never compared with what a past sync left behind.
            hook = placement.label
            return ResourceChange(
                ref=ref,
                action="create",
                diff=unified_diff(ref, None, redacted(comparable(resource, ignore, ref))),
                wave=wave,
                hook=hook,
            )

    def view(obj: Resource) -> Resource:
        return comparable(obj, ignore, ref)

    # Each side is normalized once, and compared and shown from that one view.
    live_seen = view(live) if live is not None else None
    live_view = redacted(live_seen) if live_seen is not None else None
    if isinstance(dry_run, Refusal):
        diff = unified_diff(ref, None, redacted(view(resource))) if live is None else ""
        action = "create" if live is None else "update"
        return ResourceChange(
            ref=ref,
            action=action,
            diff=diff,
            wave=wave,
            error="; ".join(filter(None, (f"{dry_run.operation} refused: {dry_run}", error))),
        )
    desired_seen = view(resource if dry_run is None else dry_run)
    desired_view = redacted(desired_seen)
    if live_seen is None:
        action = "create"
    elif dry_run is None:
        # Not dry-run: compare what we send with what is there, field by field.
        action = "unchanged" if contains(live_seen, desired_seen) else "update"
    else:
        action = "unchanged" if desired_seen == live_seen else "update"
    diff = "" if action == "unchanged" else unified_diff(ref, live_view, desired_view)
    return ResourceChange(ref=ref, action=action, diff=diff, wave=wave, error=error)


def plan(
    desired: Sequence[Resource],
    dry_run: Mapping[ResourceRef, DryRun],
    live: Mapping[ResourceRef, Resource | None],
    last_inventory: Sequence[ResourceRef],
    *,
    prune: bool,
    ignore: Sequence[IgnoreRule] = (),
    app: str | None = None,
    adopt: bool = False,
    created: set[Identity] | None = None,
    system_namespace: str = "",
) -> Plan:
    """The changes that bring the cluster to `desired` (resources as prepared, with labels).

    `dry_run` and `live` are keyed by the ref of each desired resource and, for
    `live`, of each prune candidate too (absent: nothing live; a live prune
    candidate's wave orders its deletion). `app`: whose plan this is; a live
    object it may not apply over (`ownership`) is an error of its change
    unless `adopt`. None leaves ownership unchecked. `created`: what the log
    shows the app created (None: not known, every candidate may be pruned).
    """
    changes = [
        change_for(resource, dry_run.get(ref_of(resource)), live.get(ref_of(resource)), ignore)
        for resource in desired
        if not _skipped(resource)
    ]
    if app is not None:
        inventoried = {identity(ref) for ref in last_inventory}
        changes = [_owned(change, live, app, adopt, inventoried) for change in changes]
    changes = [_with_version(change, live.get(change.ref)) for change in changes]
    changes.sort(key=lambda change: order_key(change.ref, change.wave))
    pruned: list[ResourceRef] = []
    if prune:
        # A resource marked Skip is still wanted: it is left alone, not pruned; a
        # namespace --create-namespace made is never pruned.
        candidates = [
            ref
            for ref in prune_candidates((ref_of(r) for r in desired), last_inventory)
            if not is_created_namespace(live.get(ref))
            and (created is None or identity(ref) in created)
            and not never_deleted(ref, system_namespace=system_namespace)
        ]
        waves = {ref: live_wave(live.get(ref), ref) for ref in candidates}
        pruned = prune_order(candidates, waves)
    return Plan(changes=changes, prune=pruned)


def _with_version(change: ResourceChange, live: Resource | None) -> ResourceChange:
    """`change` with the live object's resourceVersion, if one is live."""
    version = ((live or {}).get("metadata") or {}).get("resourceVersion")
    if not version or change.hook:
        return change
    return msgspec.structs.replace(change, resource_version=str(version))


def _skipped(resource: Resource) -> bool:
    """Whether `resource` is not applied at all (Skip, or a hook of no phase Wake runs)."""
    try:
        return not placement_of(resource, ref_of(resource)).applied
    except (InvalidHook, InvalidWave):
        return False  # shown, with its error


def _owned(
    change: ResourceChange,
    live: Mapping[ResourceRef, Resource | None],
    app: str,
    adopt: bool,
    inventoried: set[Identity],
) -> ResourceChange:
    """`change` with the ownership error of its live object added to its error, if any."""
    error = ownership_error(
        change.ref,
        live.get(change.ref),
        app=app,
        adopt=adopt,
        inventoried=identity(change.ref) in inventoried,
    )
    if not error:
        return change
    both = "; ".join(filter(None, (change.error, error)))
    return msgspec.structs.replace(change, error=both)


def summary(changes: Iterable[ResourceChange], prune: Sequence[ResourceRef] = ()) -> str:
    """Counts as a sentence: `2 to create, 1 to update, 1 to prune`; `no changes` if none.

    Zero counts are left out; changes with an error are counted once more, as such.
    """
    counts = {"create": 0, "update": 0, "prune": len(prune)}
    with_errors = 0
    for change in changes:
        if change.action in ("create", "update"):
            counts[change.action] += 1
        if change.error:
            with_errors += 1
    parts = [f"{n} to {action}" for action, n in counts.items() if n]
    if with_errors:
        parts.append(f"{with_errors} with errors")
    return ", ".join(parts) if parts else "no changes"
