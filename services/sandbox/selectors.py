"""Label and field selectors, parsed once per request and matched per object.

Label selectors take the whole Kubernetes grammar: `k=v`, `k==v`, `k!=v`,
`k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not exist), and the
numeric `k>n`, `k<n`. As on the real server, `!=` and `notin` also match
objects without the label.

Field selectors take `=`, `==`, `!=` on `metadata.name` and
`metadata.namespace` for every kind, plus the few fields the API server
indexes for some built-in kinds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_KEY = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9.]*[A-Za-z0-9])?/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\((.*)\)$")
_NUMERIC = re.compile(rf"^({_KEY})\s*(>|<)\s*(-?[0-9]+)$")
_EXISTS = re.compile(rf"^({_KEY})$")
_NOT_EXISTS = re.compile(rf"^!\s*({_KEY})$")
_VALUE_ONLY = re.compile(rf"^{_VALUE}$")


class SelectorError(ValueError):
    pass


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "in", "notin", "exists", "!exists", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if not present or value is None:
            return False
        try:
            number = int(value)
        except ValueError:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == "gt" else number < bound


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_label_selector(text: str | None) -> LabelSelector:
    if not text or not text.strip():
        return LabelSelector()
    requirements = []
    for raw in _split_top_level(text):
        part = raw.strip()
        requirements.append(_parse_requirement(part, text))
    return LabelSelector(tuple(requirements))


def _parse_requirement(part: str, whole: str) -> Requirement:
    if m := _NOT_EXISTS.match(part):
        return Requirement(m[1], "!exists")
    if m := _EQUALITY.match(part):
        operator = "notin" if m[2] == "!=" else "in"
        return Requirement(m[1], operator, (m[3],))
    if m := _SET.match(part):
        values = tuple(v.strip() for v in m[3].split(","))
        if m[3].strip() == "" and m[2] == "in":
            raise SelectorError(
                f"unable to parse requirement {part!r} in {whole!r}: empty value set"
            )
        if not all(_VALUE_ONLY.match(v) for v in values):
            raise SelectorError(f"unable to parse requirement {part!r} in {whole!r}: invalid value")
        return Requirement(m[1], m[2], values)
    if m := _NUMERIC.match(part):
        return Requirement(m[1], "gt" if m[2] == ">" else "lt", (m[3],))
    if m := _EXISTS.match(part):
        return Requirement(m[1], "exists")
    raise SelectorError(f"unable to parse requirement {part!r} in label selector {whole!r}")


def _dotted(path: str) -> Callable[[dict[str, Any]], str]:
    keys = path.split(".")

    def get(obj: dict[str, Any]) -> str:
        node: Any = obj
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return ""
        if isinstance(node, bool):
            return "true" if node else "false"
        return str(node)

    return get


_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
# Fields the API server offers as field selectors for some built-in kinds.
_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Node": ("spec.unschedulable",),
    "Job": ("status.successful",),
    "ReplicaSet": ("status.replicas",),
    "ReplicationController": ("status.replicas",),
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        return (_dotted(self.field)(obj) == self.value) == self.equal


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: dict[str, Any]) -> bool:
        return all(r.matches(obj) for r in self.requirements)


def parse_field_selector(text: str | None, kind: str) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    allowed = _COMMON_FIELDS + _KIND_FIELDS.get(kind, ())
    requirements = []
    for raw in text.split(","):
        part = raw.strip()
        m = re.match(r"^([A-Za-z0-9.]+)\s*(==|=|!=)\s*(.*)$", part)
        if m is None:
            raise SelectorError(f"invalid field selector requirement {part!r} in {text!r}")
        if m[1] not in allowed:
            known = ", ".join(f'"{f}"' for f in allowed)
            raise SelectorError(
                f'"{m[1]}" is not a known field selector for {kind}: only {known} are supported'
            )
        requirements.append(FieldRequirement(m[1], m[2] != "!=", m[3].strip()))
    return FieldSelector(tuple(requirements))
