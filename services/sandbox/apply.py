"""Server-side apply: merge, conflicts and field ownership, over plain dicts.

No I/O: `server_side_apply` and `record_update` take the live object and
return the next one with `metadata.managedFields` rewritten, so tests can call
them with literals. The rules follow structured-merge-diff as the API server
uses it:

- an apply merges the applied config into the live object (maps by key, keyed
  lists by merge key, sets by value, everything else replaced);
- the applier then owns exactly the fields of its config;
- a field another manager owns whose value the apply would change is a
  conflict, unless forced, in which case ownership moves to the applier;
- a field the applier owned before and no longer applies is removed from the
  object, unless some other manager still owns it (or something below it);
- a non-apply write (create, update, patch) takes every field it changes from
  whoever owned it, and fields it removes are owned by nobody.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.sandbox.cloning import clone
from services.sandbox.fieldsets import (
    FieldPath,
    FieldSet,
    ListType,
    changed_paths,
    decode_fields_v1,
    describe,
    encode_fields_v1,
    field_set,
    has_descendant,
    is_key_field,
    key_of,
    prune_empty,
    remove_path,
    resolved_list_type,
    same,
)

APPLY = "Apply"
UPDATE = "Update"


@dataclass
class ManagedEntry:
    """One `metadata.managedFields` entry: what one manager owns through one operation."""

    manager: str
    operation: str
    api_version: str
    time: str
    fields: FieldSet = field(default_factory=set)
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode_fields_v1(self.fields),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


@dataclass(frozen=True)
class Conflict:
    """A field `path` that the entry of another manager owns and the apply would change."""

    manager: str
    operation: str
    api_version: str
    time: str
    subresource: str
    path: FieldPath

    @property
    def who(self) -> str:
        """The manager as the API server prints it: Update managers with version and time."""
        name = f'"{self.manager}"'
        if self.subresource:
            name += f' with subresource "{self.subresource}"'
        if self.operation == UPDATE:
            name += f" using {self.api_version}"
            if self.time:
                name += f" at {self.time}"
        return name


class ApplyConflict(Exception):
    """The apply would change fields other managers own; carries each (manager, field)."""

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = sorted(conflicts, key=lambda c: (c.manager, c.path))
        super().__init__(self.message)

    @property
    def message(self) -> str:
        by_who: dict[str, list[str]] = {}
        for c in self.conflicts:
            by_who.setdefault(c.who, []).append(describe(c.path))
        parts = []
        for who, paths in by_who.items():
            if len(paths) == 1:
                parts.append(f"conflict with {who}: {paths[0]}")
            else:
                parts.append(f"conflicts with {who}:\n" + "\n".join(f"- {p}" for p in paths))
        n = len(self.conflicts)
        return f"Apply failed with {n} conflict{'s' if n > 1 else ''}: " + "\n".join(parts)

    def causes(self) -> list[dict[str, str]]:
        return [
            {
                "type": "FieldManagerConflict",
                "message": f"conflict with {c.who}",
                "field": describe(c.path),
            }
            for c in self.conflicts
        ]


def read_managed_fields(obj: dict[str, Any]) -> list[ManagedEntry]:
    entries = []
    for raw in (obj.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(raw, dict):
            continue
        entries.append(
            ManagedEntry(
                manager=str(raw.get("manager", "")),
                operation=str(raw.get("operation", UPDATE)),
                api_version=str(raw.get("apiVersion", "")),
                time=str(raw.get("time", "")),
                fields=decode_fields_v1(raw.get("fieldsV1") or {}),
                subresource=str(raw.get("subresource", "")),
            )
        )
    return entries


def _with_managed_fields(obj: dict[str, Any], entries: list[ManagedEntry]) -> dict[str, Any]:
    metadata = obj.setdefault("metadata", {})
    kept = [e.to_json() for e in entries if e.fields]
    if kept:
        metadata["managedFields"] = kept
    else:
        metadata.pop("managedFields", None)
    return obj


def merge(live: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """`config` merged into a copy of `live`; an explicit null removes the field."""
    out = clone(live)
    for key, value in config.items():
        if value is None:
            out.pop(key, None)
        elif key in out:
            out[key] = _merge_value(key, out[key], value)
        else:
            out[key] = clone(value)
    return out


def _merge_value(name: str, live: Any, config: Any) -> Any:
    if isinstance(live, dict) and isinstance(config, dict):
        return merge(live, config)
    if isinstance(live, list) and isinstance(config, list):
        kind = resolved_list_type(name, live, config)
        if kind.keys:
            result = clone(live)
            positions = {_key_token(kind, item): i for i, item in enumerate(result)}
            for item in config:
                token = _key_token(kind, item)
                if token in positions:
                    index = positions[token]
                    result[index] = merge(result[index], item)
                else:
                    positions[token] = len(result)
                    result.append(clone(item))
            return result
        if kind.is_set:
            result = clone(live)
            result.extend(clone(v) for v in config if not any(same(v, x) for x in live))
            return result
    return clone(config)


def _key_token(kind: ListType, item: dict[str, Any]) -> str:
    return repr(sorted(key_of(kind, item).items()))


def server_side_apply(
    live: dict[str, Any] | None,
    config: dict[str, Any],
    *,
    manager: str,
    api_version: str,
    force: bool,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """The object after `manager` applies `config` over `live` (None: create).

    `config` is what the server will merge: the caller has already removed
    what the endpoint ignores (`.status` on the main resource of a kind with
    a status subresource). Raises ApplyConflict unless `force`.
    """
    base: dict[str, Any] = clone(live) if live is not None else {}
    entries = read_managed_fields(base)
    applied = field_set(config)
    merged = merge(base, config)
    changed, _ = changed_paths(base, merged)

    me = (manager, APPLY, subresource)
    conflicts = [
        Conflict(
            entry.manager, entry.operation, entry.api_version, entry.time, entry.subresource, path
        )
        for entry in entries
        if entry.identity != me
        for path in entry.fields & changed
    ]
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for entry in entries:
        if entry.identity != me:
            entry.fields -= changed

    previous = next((e for e in entries if e.identity == me), None)
    others: FieldSet = set()
    for entry in entries:
        if entry.identity != me:
            others |= entry.fields
    if previous is not None:
        dropped = previous.fields - applied
        # Shallowest first: a list item goes whole, and its fields with it
        # (removing its key fields first would leave an item nobody can find).
        for path in sorted(dropped, key=len):
            if path in others or has_descendant(path, others) or is_key_field(path):
                continue
            remove_path(merged, path)
            prune_empty(merged, path, others | applied)

    if previous is None:
        entries.append(ManagedEntry(manager, APPLY, api_version, now, applied, subresource))
    elif previous.fields != applied or previous.api_version != api_version:
        previous.fields, previous.api_version, previous.time = applied, api_version, now
    _retime(entries, read_managed_fields(base), now)
    return _with_managed_fields(merged, entries)


def record_update(
    before: dict[str, Any] | None,
    after: dict[str, Any],
    *,
    manager: str,
    api_version: str,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """`after` with managedFields for a non-apply write by `manager` (None `before`: create)."""
    base = before if before is not None else {}
    entries = read_managed_fields(base)
    changed, removed = changed_paths(base, after)
    me = (manager, UPDATE, subresource)
    for entry in entries:
        entry.fields -= removed
        if entry.identity != me:
            entry.fields -= changed
    mine = next((e for e in entries if e.identity == me), None)
    if mine is None:
        if changed:
            entries.append(
                ManagedEntry(manager, UPDATE, api_version, now, set(changed), subresource)
            )
    elif changed:
        mine.fields |= changed
        mine.api_version, mine.time = api_version, now
    _retime(entries, read_managed_fields(base), now)
    return _with_managed_fields(clone(after), entries)


def _retime(entries: list[ManagedEntry], old: list[ManagedEntry], now: str) -> None:
    """Stamp `now` on entries whose ownership changed (a forced apply shrinks others')."""
    before = {e.identity: e.fields for e in old}
    for entry in entries:
        if entry.identity in before and before[entry.identity] != entry.fields:
            entry.time = now
