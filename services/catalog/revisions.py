"""Applied revisions of an app: finding one by commit or apply id, and comparing two. Pure."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from events.bundle import Bundle, ref_of
from events.envelope import Envelope
from events.payloads import ApplySucceeded, ResourceRef
from services.resources.showing import as_yaml, redacted

MIN_COMMIT_PREFIX = 4


class RevisionNotApplied(LookupError):
    """The revision asked for was never applied to this app."""


@dataclass(frozen=True, slots=True)
class AppliedRevision:
    seq: int
    event: Envelope
    apply: ApplySucceeded


def applied_revisions(events: list[tuple[int, Envelope]]) -> list[AppliedRevision]:
    return [
        AppliedRevision(seq, event, event.payload)
        for seq, event in events
        if isinstance(event.payload, ApplySucceeded)
    ]


def find_applied(
    app: str,
    applied: list[AppliedRevision],
    target: str,
    *,
    commit: str = "",
    min_prefix: int = MIN_COMMIT_PREFIX,
) -> AppliedRevision:
    """The apply `target` names: an apply id or its unique prefix, or a commit or its prefix.

    A commit names its latest apply. `commit`, when given, is the commit to
    look for if `target` is no apply id. A prefix that names several applies,
    or an apply and a commit, is refused with what it names.
    """
    target = target.strip().lower()
    for revision in applied:
        if revision.apply.apply_id == target:
            return revision
    wanted = commit.strip().lower() or target
    if len(wanted) < min_prefix:
        raise RevisionNotApplied(
            f"{wanted!r} is too short: give an apply id or at least {min_prefix} "
            "characters of a commit"
        )
    by_id = (
        [r for r in applied if r.apply.apply_id.startswith(target)]
        if len(target) >= min_prefix
        else []
    )
    matches = [r for r in applied if r.apply.commit.startswith(wanted)]
    commits = {r.apply.commit for r in matches}
    if len(by_id) > 1 or (by_id and commits):
        named = [f"apply {r.apply.apply_id}" for r in by_id] + [
            f"commit {c[:12]}" for c in sorted(commits)
        ]
        raise RevisionNotApplied(f"{target!r} names several revisions of {app}: {', '.join(named)}")
    if by_id:
        return by_id[0]
    if len(commits) > 1:
        listed = ", ".join(sorted(c[:12] for c in commits))
        raise RevisionNotApplied(f"{wanted!r} names several applied commits of {app}: {listed}")
    if not matches:
        raise RevisionNotApplied(
            f"{wanted} was never applied to {app}: only an applied revision can be rolled back "
            "to or compared (see `wake history` or `wake plans`)"
        )
    return max(matches, key=lambda r: r.seq)


@dataclass(frozen=True, slots=True)
class ResourceDiff:
    ref: ResourceRef
    fields: list[str]
    text: str


@dataclass(frozen=True, slots=True)
class BundleDiff:
    added: list[ResourceRef]
    removed: list[ResourceRef]
    changed: list[ResourceDiff]
    unchanged: int


def _key(ref: ResourceRef) -> tuple[str, str, str, str]:
    return (ref.api_version.split("/")[0] if "/" in ref.api_version else "", ref.kind,
            ref.namespace, ref.name)  # fmt: skip


def diff_bundles(old: Bundle, new: Bundle) -> BundleDiff:
    """Resources added, removed and changed from `old` to `new`; Secret values redacted."""
    before = {_key(ref_of(r)): r for r in old.resources}
    after = {_key(ref_of(r)): r for r in new.resources}
    added = [ref_of(after[k]) for k in sorted(after.keys() - before.keys())]
    removed = [ref_of(before[k]) for k in sorted(before.keys() - after.keys())]
    changed, unchanged = [], 0
    for key in sorted(before.keys() & after.keys()):
        a, b = redacted(before[key]), redacted(after[key])
        fields = changed_pointers(a, b)
        if not fields:
            unchanged += 1
            continue
        ref = ref_of(after[key])
        text = "\n".join(
            difflib.unified_diff(
                as_yaml(a), as_yaml(b), fromfile=f"from {ref}", tofile=f"to {ref}", lineterm=""
            )
        )
        changed.append(ResourceDiff(ref=ref, fields=fields, text=text))
    return BundleDiff(added=added, removed=removed, changed=changed, unchanged=unchanged)


def changed_pointers(a: Any, b: Any, path: str = "") -> list[str]:
    """JSON pointers of every leaf that differs between `a` and `b` (lists compared by index)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(a.keys() | b.keys(), key=str):
            token = str(key).replace("~", "~0").replace("/", "~1")
            if key not in a or key not in b:
                out.append(f"{path}/{token}")
            else:
                out.extend(changed_pointers(a[key], b[key], f"{path}/{token}"))
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        for index in range(max(len(a), len(b))):
            if index >= len(a) or index >= len(b):
                out.append(f"{path}/{index}")
            else:
                out.extend(changed_pointers(a[index], b[index], f"{path}/{index}"))
        return out
    return [] if a == b else [path or "/"]
