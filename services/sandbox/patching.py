"""The three non-apply PATCH formats, over plain dicts.

- JSON merge patch (RFC 7386): maps merge, null deletes, lists are replaced.
- Strategic merge patch: like merge patch, but lists with a merge key merge
  item by item (the same keys server-side apply uses, see `fieldsets`), and
  the directives kubectl sends are honoured: `$patch: delete|replace|merge`,
  `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`,
  `$retainKeys`. Without OpenAPI schemas the list types are inferred, so
  this is close to, not identical with, the real thing.
- JSON patch (RFC 6902): add, remove, replace, move, copy, test.

Each raises PatchError with a message naming the path at fault.
"""

from __future__ import annotations

from typing import Any

from services.sandbox.cloning import clone
from services.sandbox.fieldsets import ListType, key_of, resolved_list_type, same


class PatchError(ValueError):
    pass


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    out = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    return _smp_map(target, patch)


def _smp_map(target: Any, patch: dict[str, Any]) -> dict[str, Any]:
    directive = patch.get("$patch")
    clean = {k: v for k, v in patch.items() if k != "$patch"}
    if directive == "replace":
        return _strip_directives(clean)
    if directive not in (None, "merge"):
        raise PatchError(f"unknown $patch directive {directive!r} in a map")
    out: dict[str, Any] = clone(target) if isinstance(target, dict) else {}
    orders: dict[str, list[Any]] = {}
    retain: list[str] | None = None
    for key, value in clean.items():
        if key.startswith("$setElementOrder/"):
            orders[key.partition("/")[2]] = value if isinstance(value, list) else []
        elif key.startswith("$deleteFromPrimitiveList/"):
            name = key.partition("/")[2]
            if isinstance(out.get(name), list) and isinstance(value, list):
                out[name] = [v for v in out[name] if not any(same(v, d) for d in value)]
        elif key == "$retainKeys":
            retain = value if isinstance(value, list) else []
        elif key.startswith("$"):
            raise PatchError(f"unknown strategic merge patch directive {key!r}")
        elif value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            if value.get("$patch") == "delete":
                out.pop(key, None)
            else:
                out[key] = _smp_map(out.get(key), value)
        elif isinstance(value, list):
            out[key] = _smp_list(key, out.get(key), value)
        else:
            out[key] = clone(value)
    if retain is not None:
        out = {k: v for k, v in out.items() if k in retain}
    for name, order in orders.items():
        if isinstance(out.get(name), list):
            out[name] = _reorder(name, out[name], order)
    return out


def _smp_list(field: str, target: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [
            _strip_directives(item)
            for item in patch
            if not (isinstance(item, dict) and item.get("$patch") == "replace")
        ]
    current: list[Any] = clone(target) if isinstance(target, list) else []
    plain = [item for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    kind = resolved_list_type(field, current, plain)
    if kind.keys:
        for raw in patch:
            item = dict(raw) if isinstance(raw, dict) else raw
            directive = item.pop("$patch", None) if isinstance(item, dict) else None
            index = _index_by_key(kind, current, item)
            if directive == "delete":
                if index is not None:
                    del current[index]
            elif index is None:
                current.append(_strip_directives(item))
            else:
                current[index] = _smp_map(current[index], item)
        return current
    if kind.is_set:
        current.extend(clone(v) for v in patch if not any(same(v, x) for x in current))
        return current
    return _strip_directives(patch)


def _index_by_key(kind: ListType, items: list[Any], item: Any) -> int | None:
    if not isinstance(item, dict):
        return None
    wanted = key_of(kind, item)
    for index, candidate in enumerate(items):
        if isinstance(candidate, dict) and same(key_of(kind, candidate), wanted):
            return index
    return None


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    kind = resolved_list_type(field, items, [o for o in order if isinstance(o, dict)])
    if not kind.keys:
        ranked = [next((i for i, o in enumerate(order) if same(o, v)), len(order)) for v in items]
    else:
        ranked = [
            next(
                (
                    i
                    for i, o in enumerate(order)
                    if isinstance(o, dict) and same(key_of(kind, o), key_of(kind, v))
                ),
                len(order),
            )
            if isinstance(v, dict)
            else len(order)
            for v in items
        ]
    return [v for _, _, v in sorted(zip(ranked, range(len(items)), items, strict=True))]


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return clone(value)


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a JSON array of operations")
    doc: Any = clone(target)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"operation {number} needs 'op' and 'path'")
        try:
            doc = _apply_operation(doc, op)
        except PatchError as exc:
            raise PatchError(f"operation {number} ({op['op']} {op['path']}): {exc}") from exc
    if not isinstance(doc, dict):
        raise PatchError("a JSON patch must leave an object")
    return doc


def _apply_operation(doc: Any, op: dict[str, Any]) -> Any:
    name = op["op"]
    path = _pointer(op["path"])
    if name == "add":
        doc = _add(doc, path, clone(_required(op, "value")))
    elif name == "remove":
        doc = _remove(doc, path)[0]
    elif name == "replace":
        doc = _remove(doc, path)[0]
        doc = _add(doc, path, clone(_required(op, "value")))
    elif name in ("move", "copy"):
        source = _pointer(_required(op, "from"))
        if name == "move":
            doc, value = _remove(doc, source)
        else:
            value = clone(_get(doc, source))
        doc = _add(doc, path, value)
    elif name == "test":
        if not same(_get(doc, path), _required(op, "value")):
            raise PatchError("the value there is not the tested value")
    else:
        raise PatchError(f"unknown operation {name!r}")
    return doc


def _required(op: dict[str, Any], key: str) -> Any:
    if key not in op:
        raise PatchError(f"{op['op']} needs {key!r}")
    return op[key]


def _pointer(text: Any) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise PatchError(f"invalid JSON pointer {text!r}")
    if text == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in text[1:].split("/")]


def _show(path: list[str]) -> str:
    return "/" + "/".join(path)


def _get(doc: Any, path: list[str]) -> Any:
    node = doc
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise PatchError(f"path {_show(path)} does not exist")
    return node


def _add(doc: Any, path: list[str], value: Any) -> Any:
    if not path:
        return value
    parent = _get(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"index {_show(path)} is out of range")
    else:
        raise PatchError(f"{_show(path[:-1])} is not a map or a list")
    return doc


def _remove(doc: Any, path: list[str]) -> tuple[Any, Any]:
    if not path:
        raise PatchError("cannot remove the whole document")
    parent = _get(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return doc, parent.pop(int(last))
    raise PatchError(f"path {_show(path)} does not exist")
