"""Resources as people read them in diffs: sorted YAML, Secret values redacted. Pure.

Secret values never reach a diff: each `data`/`stringData` value shows as
`<redacted hmac-sha256:abcd1234>` (keyed: `events.redaction`), so a changed
secret shows as changed without revealing either value.
"""

from __future__ import annotations

import difflib
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
    """The lines of `obj` as sorted-key YAML; none for no object."""
    if obj is None:
        return []
    text = yaml.dump(
        obj,
        Dumper=_DiffDumper,
        sort_keys=True,
        default_flow_style=False,
        allow_unicode=True,
        width=10_000,
    )
    return text.splitlines()


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
