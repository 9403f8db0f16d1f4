"""Field paths and field sets, the vocabulary of server-side apply.

A field path is a tuple of path elements spelt as in `metadata.managedFields`
`fieldsV1`: `f:spec` (a map key), `k:{"name":"web"}` (an item of a list keyed
by its merge key), `v:"example.com/x"` (a member of a set of scalars). A field
set is the set of paths a manager owns.

The real API server knows each list's type from the OpenAPI schema. The
emulator has no schemas, so it decides by field name and contents: the merge
keys Kubernetes declares for the lists manifests use most (containers, ports,
env, volumes, volumeMounts, conditions...), a set for `finalizers`, any other
list of maps that all carry a distinct `name` keyed by name, and every other
list atomic (owned and replaced as a whole).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

FieldPath = tuple[str, ...]
FieldSet = set[FieldPath]

# Merge keys declared by the Kubernetes API for lists of maps (patchMergeKey /
# x-kubernetes-list-map-keys). The first key must be present in every item.
_KEYED_LISTS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "imagePullSecrets": ("name",),
    "resourceClaims": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "conditions": ("type",),
    "hostAliases": ("ip",),
    "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"),
}
# Lists of scalars that merge as sets (x-kubernetes-list-type: set).
_SET_LISTS = frozenset({"finalizers"})

# Server-owned metadata: never part of anyone's field set.
_UNMANAGED_METADATA = frozenset(
    {
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


@dataclass(frozen=True)
class ListType:
    """How a list merges and is owned: `keys` for a map list, `set`, or atomic."""

    keys: tuple[str, ...] = ()
    is_set: bool = False

    @property
    def atomic(self) -> bool:
        return not self.keys and not self.is_set


ATOMIC = ListType()
SET = ListType(is_set=True)


def list_type(field: str, items: Iterable[Any]) -> ListType:
    """The list type for a list under `field`, given all items that will meet in it."""
    items = list(items)
    if field in _SET_LISTS and all(_is_scalar(item) for item in items):
        return SET
    if not items or not all(isinstance(item, dict) for item in items):
        return ATOMIC
    candidates: tuple[str, ...]
    if field in _KEYED_LISTS:
        candidates = _KEYED_LISTS[field]
    elif field == "ports":
        # container ports and service ports share the field name, not the key
        if all("containerPort" in item for item in items):
            candidates = ("containerPort", "protocol")
        elif all("port" in item for item in items):
            candidates = ("port", "protocol")
        else:
            return ATOMIC
    elif all("name" in item for item in items):
        candidates = ("name",)
    else:
        return ATOMIC
    if not all(candidates[0] in item and _is_scalar(item[candidates[0]]) for item in items):
        return ATOMIC
    # An item repeated in the live object and the applied config is the same
    # item; a key repeated within one side would make ownership ambiguous,
    # which the caller avoids by asking per side (see `is_keyed_unique`).
    return ListType(keys=candidates)


def is_keyed_unique(list_kind: ListType, items: list[Any]) -> bool:
    """Whether no two items of one list share a key (else the list is treated as atomic)."""
    seen: set[str] = set()
    for item in items:
        token = key_element(list_kind, item)
        if token in seen:
            return False
        seen.add(token)
    return True


def resolved_list_type(field: str, *sides: list[Any]) -> ListType:
    """The list type for merging `sides` of one field, atomic if any side has duplicate keys."""
    kind = list_type(field, [item for side in sides for item in side])
    if kind.keys and not all(is_keyed_unique(kind, side) for side in sides):
        return ATOMIC
    if kind.is_set and not all(len({_token(v) for v in side}) == len(side) for side in sides):
        return ATOMIC
    return kind


def key_of(list_kind: ListType, item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in list_kind.keys if k in item}


def key_element(list_kind: ListType, item: dict[str, Any]) -> str:
    return "k:" + json.dumps(key_of(list_kind, item), sort_keys=True, separators=(",", ":"))


def value_element(value: Any) -> str:
    return "v:" + _token(value)


def _token(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def same(a: Any, b: Any) -> bool:
    """Value equality as JSON sees it (so `True` is not `1`)."""
    return _token(a) == _token(b)


def managed_view(obj: dict[str, Any]) -> dict[str, Any]:
    """The part of an object that field ownership covers (no apiVersion, kind, server metadata)."""
    view = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    metadata = view.get("metadata")
    if isinstance(metadata, dict):
        kept = {k: v for k, v in metadata.items() if k not in _UNMANAGED_METADATA}
        if kept:
            view["metadata"] = kept
        else:
            del view["metadata"]
    return view


def members(obj: dict[str, Any]) -> dict[FieldPath, Any]:
    """Every owned path of an object and the value found there.

    Leaves (scalars, atomic lists, empty maps) map to their value; items of
    keyed lists map to the item (they are owned as well as their fields); set
    members map to the scalar.
    """
    found: dict[FieldPath, Any] = {}
    _walk_map(managed_view(obj), (), found)
    return found


def field_set(obj: dict[str, Any]) -> FieldSet:
    return set(members(obj))


def _walk_map(value: dict[str, Any], path: FieldPath, found: dict[FieldPath, Any]) -> None:
    for key, child in value.items():
        _walk_value(key, child, (*path, f"f:{key}"), found)


def _walk_value(field: str, value: Any, path: FieldPath, found: dict[FieldPath, Any]) -> None:
    if isinstance(value, dict):
        if value:
            _walk_map(value, path, found)
        else:
            found[path] = value
    elif isinstance(value, list):
        kind = resolved_list_type(field, value)
        if kind.keys:
            for item in value:
                item_path = (*path, key_element(kind, item))
                found[item_path] = item
                _walk_map(item, item_path, found)
        elif kind.is_set:
            for item in value:
                found[(*path, value_element(item))] = item
        else:
            found[path] = value
    elif value is not None:
        found[path] = value


def is_item(path: FieldPath) -> bool:
    """Whether a path names a keyed-list item or set member rather than a leaf value."""
    return bool(path) and path[-1][:2] in ("k:", "v:")


def changed_paths(before: dict[str, Any], after: dict[str, Any]) -> tuple[FieldSet, FieldSet]:
    """(paths added or modified, paths removed) going from `before` to `after`."""
    old, new = members(before), members(after)
    changed = {
        path
        for path, value in new.items()
        if path not in old or (not is_item(path) and not same(old[path], value))
    }
    removed = set(old) - set(new)
    return changed, removed


def is_key_field(path: FieldPath) -> bool:
    """Whether `path` is a merge-key field of a list item (it lives and dies with the item)."""
    if len(path) < 2 or not path[-2].startswith("k:") or not path[-1].startswith("f:"):
        return False
    return path[-1][2:] in json.loads(path[-2][2:])


def has_descendant(path: FieldPath, fields: FieldSet) -> bool:
    n = len(path)
    return any(len(other) > n and other[:n] == path for other in fields)


def describe(path: FieldPath) -> str:
    """A path as the API server prints it in conflicts: `.spec.containers[name="web"].image`."""
    out = []
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            out.append(f".{rest}")
        elif kind == "k":
            keys = json.loads(rest)
            out.append("[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]")
        else:
            out.append(f"[={rest}]")
    return "".join(out)


def encode_fields_v1(fields: FieldSet) -> dict[str, Any]:
    """A field set in the `fieldsV1` tree form (`.` marks an item that is owned itself)."""
    root: dict[str, Any] = {}
    for path in fields:
        node = root
        for element in path:
            node = node.setdefault(element, {})
        node.setdefault(".", {})
    return _finish(root)


def _finish(node: dict[str, Any]) -> dict[str, Any]:
    children = {k: _finish(v) for k, v in node.items() if k != "."}
    if "." in node and not children:
        return {}
    out: dict[str, Any] = {".": {}} if "." in node else {}
    for key in sorted(children):
        out[key] = children[key]
    return out


def decode_fields_v1(tree: dict[str, Any]) -> FieldSet:
    fields: FieldSet = set()
    _decode(tree, (), fields)
    return fields


def _decode(node: dict[str, Any], path: FieldPath, fields: FieldSet) -> None:
    for key, child in node.items():
        if key == ".":
            fields.add(path)
        elif not child:
            fields.add((*path, key))
        elif isinstance(child, dict):
            _decode(child, (*path, key), fields)


def _find_item(items: list[Any], element: str, field: str) -> int | None:
    kind, _, rest = element.partition(":")
    wanted = json.loads(rest)
    keyed = list_type(field, items) if kind == "k" else ATOMIC
    for index, item in enumerate(items):
        if kind == "v" and same(item, wanted):
            return index
        if kind == "k" and isinstance(item, dict) and same(key_of(keyed, item), wanted):
            return index
    return None


def remove_path(obj: dict[str, Any], path: FieldPath) -> None:
    """Remove what `path` names from `obj` (in place); a missing path is a no-op."""
    parents: list[tuple[Any, str | int]] = []
    node: Any = obj
    field = ""
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            if not isinstance(node, dict) or rest not in node:
                return
            parents.append((node, rest))
            node, field = node[rest], rest
        else:
            if not isinstance(node, list):
                return
            index = _find_item(node, element, field)
            if index is None:
                return
            parents.append((node, index))
            node = node[index]
    if not parents:
        return
    container, slot = parents[-1]
    del container[slot]  # type: ignore[arg-type]


def prune_empty(obj: dict[str, Any], path: FieldPath, keep: FieldSet) -> None:
    """After removing `path`, drop the maps and lists above it left empty that nobody owns."""
    for depth in range(len(path) - 1, 0, -1):
        parent = path[:depth]
        if parent in keep or not parent[-1].startswith("f:"):
            return
        value = get_path(obj, parent)
        if value == {} or value == []:
            remove_path(obj, parent)
        else:
            return


def get_path(obj: dict[str, Any], path: FieldPath) -> Any:
    node: Any = obj
    field = ""
    for element in path:
        kind, _, rest = element.partition(":")
        if kind == "f":
            if not isinstance(node, dict) or rest not in node:
                return None
            node, field = node[rest], rest
        else:
            if not isinstance(node, list):
                return None
            index = _find_item(node, element, field)
            if index is None:
                return None
            node = node[index]
    return node
