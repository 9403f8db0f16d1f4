"""Which object a ref names, where a live object sorts, what blocks a plan. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from events.payloads import ResourceChange, ResourceError, ResourceRef
from services.resources.desired import group_of
from services.resources.ordering import InvalidWave, wave_of

Resource = dict[str, Any]

Identity = tuple[str, str, str, str]


def identity(ref: ResourceRef) -> Identity:
    """What makes two refs the same object: group, kind, namespace, name (not version)."""
    return (group_of(ref.api_version), ref.kind, ref.namespace, ref.name)


def errors_of(changes: Iterable[ResourceChange]) -> list[ResourceError]:
    """The changes that cannot be applied, each with why: any one blocks the whole plan."""
    return [ResourceError(ref=c.ref, error=c.error) for c in changes if c.error]


def live_wave(obj: Resource | None, ref: ResourceRef) -> int:
    """The wave of a live object (0 if it has none, or a bad one): where its deletion sorts."""
    if obj is None:
        return 0
    try:
        return wave_of(obj, ref)
    except InvalidWave:
        return 0
