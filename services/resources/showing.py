"""Resources as people read them in diffs: sorted YAML, Secret values redacted. Pure.

Secret values never reach a diff: each `data`/`stringData` value shows as
`<redacted hmac-sha256:abcd1234>` (keyed: `events.redaction`), so a changed
secret shows as changed without revealing either value.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml

from events import redaction
from events.payloads import ResourceRef
from services.resources.desired import group_of

Resource = dict[str, Any]

SECRET_VALUE_FIELDS = ("data", "stringData")


def redacted(obj: Resource) -> Resource:
    """`obj` with a Secret's values replaced by a short digest of each; other kinds as they are."""
    if obj.get("kind") != "Secret" or group_of(str(obj.get("apiVersion", ""))) != "":
        return obj
    clean = dict(obj)
    for field in SECRET_VALUE_FIELDS:
        values = clean.get(field)
        if isinstance(values, dict):
            clean[field] = {key: _redact(value) for key, value in values.items()}
    return clean


def _redact(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return redaction.redacted_value(text)


# libyaml's emitter where PyYAML was built with it: the pure-Python one was a
# sixth of the planner's CPU in the 1000-app fan-out.
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _DiffDumper(_SafeDumper):  # type: ignore[misc, valid-type]
    """YAML for humans: a multi-line string (a config file in a ConfigMap) as a literal block."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_DiffDumper.add_representer(str, _represent_str)


def as_yaml(obj: Resource | None) -> list[str]:
    """The lines of `obj` as sorted-key YAML; none for no object.

    Exactly what PyYAML writes (`_pyyaml_lines`). Most objects are mappings of
    names, numbers and flags, which `_Lines` writes itself at a tenth of the
    cost: PyYAML's representer was a fifth of the planner's CPU in a fan-out.
    Anything else (a multi-line string, a float, a key that is not a string)
    goes to PyYAML whole.
    """
    if obj is None:
        return []
    if isinstance(obj, dict) and obj:
        try:
            return _Lines().mapping(obj, 0)
        except _Unusual:
            pass
    return _pyyaml_lines(obj)


def _pyyaml_lines(obj: Any) -> list[str]:
    text = yaml.dump(
        obj,
        Dumper=_DiffDumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=10_000,
    )
    return text.splitlines()


class _Unusual(Exception):
    """A value `_Lines` leaves to PyYAML."""


# A string PyYAML writes plain: a letter, then letters, digits and `_./-`, and
# none of the words YAML 1.1 reads as a boolean or null.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_./-]*\Z")
_YAML11_WORDS = frozenset(
    variant
    for word in ("yes", "no", "true", "false", "on", "off", "null", "y", "n")
    for variant in (word, word.capitalize(), word.upper())
)
# Other scalars as PyYAML writes them alone (quoted, say), remembered: most recur.
_SCALARS: dict[object, str] = {}
_SCALARS_KEPT = 4096
_LONGEST = 120


class _Lines:
    """Block-style YAML lines as PyYAML writes them: two spaces a level, a list under
    a key not indented, a mapping in a list beginning on the dash's line."""

    def mapping(self, value: dict[Any, Any], indent: int) -> list[str]:
        pad = " " * indent
        lines: list[str] = []
        for key in sorted(value):
            if not isinstance(key, str):
                raise _Unusual
            item = value[key]
            head = f"{pad}{self.scalar(key)}:"
            if isinstance(item, dict) and item:
                lines.append(head)
                lines.extend(self.mapping(item, indent + 2))
            elif isinstance(item, list) and item:
                lines.append(head)
                lines.extend(self.sequence(item, indent))
            else:
                lines.append(f"{head} {self.scalar(item)}")
        return lines

    def sequence(self, value: list[Any], indent: int) -> list[str]:
        pad = " " * indent
        lines: list[str] = []
        for item in value:
            if isinstance(item, dict) and item:
                nested = self.mapping(item, indent + 2)
            elif isinstance(item, list) and item:
                nested = self.sequence(item, indent + 2)
            else:
                lines.append(f"{pad}- {self.scalar(item)}")
                continue
            lines.append(f"{pad}- {nested[0][indent + 2 :]}")
            lines.extend(nested[1:])
        return lines

    def scalar(self, value: Any) -> str:
        if isinstance(value, str):
            if len(value) > _LONGEST or "\n" in value:
                raise _Unusual
            if _PLAIN.match(value) and value not in _YAML11_WORDS:
                return value
        elif value is None:
            return "null"
        elif value is True:
            return "true"
        elif value is False:
            return "false"
        elif type(value) is int:
            return str(value)
        elif value == {}:
            return "{}"
        elif value == []:
            return "[]"
        elif not isinstance(value, float):
            raise _Unusual
        key = (type(value), value)
        text = _SCALARS.get(key)
        if text is None:
            [text] = _scalar_alone(value)
            if len(_SCALARS) >= _SCALARS_KEPT:
                _SCALARS.clear()
            _SCALARS[key] = text
        return text


def _scalar_alone(value: Any) -> list[str]:
    lines = _pyyaml_lines(value)
    if lines and lines[-1] == "...":
        lines = lines[:-1]  # the end of a document that is one plain scalar
    if len(lines) != 1:
        raise _Unusual
    return lines


def unified_diff(ref: ResourceRef, live: Resource | None, desired: Resource | None) -> str:
    """`--- live` / `+++ desired` unified diff of two normalized, redacted objects; "" if equal."""
    where = f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name
    label = f"{ref.api_version}/{ref.kind} {where}"
    lines = difflib.unified_diff(
        as_yaml(live),
        as_yaml(desired),
        fromfile=f"live {label}",
        tofile=f"desired {label}",
        lineterm="",
    )
    text = "\n".join(lines)
    return f"{text}\n" if text else ""
