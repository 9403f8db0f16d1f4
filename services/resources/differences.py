"""What counts as a difference between two views of an object: server fields, ignore rules.

Pure; used by the planner (diffs) and by the applier (drift), so that a
field hidden from a plan's diff is never reported as drift either.

- `normalized` drops what the server owns: managedFields, resourceVersion,
  generation, uid, creationTimestamp, kubectl's last-applied annotation, and
  status. Server defaults are not dropped here: they cancel out because both
  sides of every comparison come from the server (the live object and the
  server-side dry run of what Wake applies, which carries the same defaults).
- Ignore rules are Argo CD's ignoreDifferences by JSON pointer: a rule applies
  to a resource when each of its non-empty `kind`, `group`, `name` and
  `namespace` matches ("" matches any, so the core group cannot be singled
  out); its pointers (RFC 6901, `~1` for "/" and `~0` for "~"; a segment `*`
  matches every key or index) are removed from both sides before comparing.
  Ignored paths affect what a plan shows and what drift reports, not what is
  applied: the applier still applies the whole bundle, as Argo CD does by
  default.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from events.payloads import IgnoreRule, ResourceRef

Resource = dict[str, Any]

SERVER_OWNED_METADATA = (
    "managedFields",
    "resourceVersion",
    "generation",
    "uid",
    "creationTimestamp",
)
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
WILDCARD = "*"


def normalized(obj: Resource) -> Resource:
    """`obj` without what the server owns (see the module docstring); `obj` is left alone.

    Not a deep copy: the result shares every part it keeps with `obj` (only
    the top level, metadata and annotations are new dicts), so it must be read,
    never changed -- `without_pointers` copies before it removes anything.
    A plan normalizes every live object and dry run; copying whole objects
    (managedFields and all) to drop a few keys was most of a plan's CPU.
    """
    clean = {key: value for key, value in obj.items() if key != "status"}
    metadata = clean.get("metadata")
    if isinstance(metadata, dict):
        metadata = {
            key: value for key, value in metadata.items() if key not in SERVER_OWNED_METADATA
        }
        annotations = metadata.get("annotations")
        if isinstance(annotations, dict):
            if LAST_APPLIED in annotations:
                annotations = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
                metadata["annotations"] = annotations
            if not annotations:
                del metadata["annotations"]
        clean["metadata"] = metadata
    return clean


def rule_applies(rule: IgnoreRule, ref: ResourceRef) -> bool:
    """Whether `rule` concerns the resource `ref` ("" in a rule's field matches anything)."""
    group = ref.api_version.rpartition("/")[0]
    return (
        (not rule.kind or rule.kind == ref.kind)
        and (not rule.group or rule.group == group)
        and (not rule.name or rule.name == ref.name)
        and (not rule.namespace or rule.namespace == ref.namespace)
    )


def ignored_pointers(rules: Iterable[IgnoreRule], ref: ResourceRef) -> list[str]:
    """The JSON pointers ignored for `ref`, from every rule that applies to it."""
    return [pointer for rule in rules if rule_applies(rule, ref) for pointer in rule.json_pointers]


def parse_pointer(pointer: str) -> list[str]:
    """The reference tokens of an RFC 6901 pointer ("" is the whole document).

    A pointer without its leading "/" is read as if it had one, the way a
    person writing `spec/replicas` means it.
    """
    if not pointer:
        return []
    body = pointer[1:] if pointer.startswith("/") else pointer
    return [token.replace("~1", "/").replace("~0", "~") for token in body.split("/")]


def escape_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def without_pointers(obj: Resource, pointers: Sequence[str]) -> Resource:
    """A copy of `obj` without the values at `pointers` (absent paths are no error)."""
    if not pointers:
        return obj
    clean = copy.deepcopy(obj)
    for pointer in pointers:
        tokens = parse_pointer(pointer)
        if tokens:
            _remove(clean, tokens)
    return clean


def _remove(node: Any, tokens: list[str]) -> None:
    head, rest = tokens[0], tokens[1:]
    if isinstance(node, dict):
        keys = list(node) if head == WILDCARD else [head] if head in node else []
        for key in keys:
            if rest:
                _remove(node[key], rest)
            else:
                del node[key]
    elif isinstance(node, list):
        if head == WILDCARD:
            indexes = list(range(len(node)))
        elif head.isdigit() and int(head) < len(node):
            indexes = [int(head)]
        else:
            indexes = []
        # Backwards, so that deleting an element does not shift the ones still to visit.
        for index in reversed(indexes):
            if rest:
                _remove(node[index], rest)
            else:
                del node[index]


def comparable(obj: Resource, rules: Iterable[IgnoreRule], ref: ResourceRef) -> Resource:
    """`obj` as compared: normalized, without the paths the app's rules ignore for `ref`."""
    return without_pointers(normalized(obj), ignored_pointers(rules, ref))


def changed_pointers(before: Any, after: Any, at: str = "") -> list[str]:
    """JSON pointers of the values that differ between `before` and `after`, sorted.

    Objects are compared key by key; lists of equal length element by
    element; a list whose length changed is one difference, at the list.
    """
    if isinstance(before, dict) and isinstance(after, dict):
        found: list[str] = []
        for key in sorted(set(before) | set(after)):
            here = f"{at}/{escape_token(str(key))}"
            if key not in before or key not in after:
                found.append(here)
            else:
                found.extend(changed_pointers(before[key], after[key], here))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = []
        for index, (a, b) in enumerate(zip(before, after, strict=True)):
            found.extend(changed_pointers(a, b, f"{at}/{index}"))
        return found
    return [] if before == after else [at or "/"]
