"""What `wake history` and `wake state --at` show, assembled from read-model rows. Pure.

A journey is everything one correlation id went through: the revision that
started it (or the rollback request), its plan, who decided on the plan and
through what, and how its apply ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from events.envelope import Envelope
from events.payloads import (
    HookDeleted,
    HookFinished,
    ResourceApplied,
    ResourceRef,
    WaveCompleted,
    WaveWaiting,
)
from services.projector.folding import ReadModels

Row = dict[str, Any]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    decision: str
    actor: str
    via: str
    at: datetime
    comment: str = ""


class Journey(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of `wake history`."""

    correlation_id: str
    seq: int
    started_at: datetime
    commit: str
    author: str = ""
    message: str = ""
    render: str = ""
    plan_id: str | None = None
    plan_status: str | None = None
    plan_summary: str = ""
    decisions: list[Decision] = []
    apply_id: str | None = None
    applied_at: datetime | None = None
    result: str = ""
    error: str | None = None
    rollback: bool = False
    rollback_of: str | None = None
    # Applies of its plan: 1, or more when a failed apply was retried.
    attempts: int = 0
    # The apply's phases, waves and hooks, one line each, in the order they ran.
    steps: list[str] = []


# What `apply_steps` reads: the events of an apply's waves and hooks.
STEP_TYPES: tuple[str, ...] = (
    ResourceApplied.event_type,
    WaveWaiting.event_type,
    WaveCompleted.event_type,
    HookFinished.event_type,
    HookDeleted.event_type,
)


def apply_steps(events: Iterable[Envelope]) -> dict[str, list[str]]:
    """Per apply id, a line for each wave and hook of the apply, in log order.

    An ordinary resource's ResourceApplied is summed up by its WaveCompleted;
    a hook gets a line when it is created, when it finishes and when its
    delete policy removes it. Applies from before waves were recorded get none.
    """
    steps: dict[str, list[str]] = {}
    for event in events:
        p = event.payload
        if isinstance(p, ResourceApplied) and p.hook:
            apply_id, line = p.apply_id, f"{p.hook} wave {p.wave}: hook {_ref(p.ref)} {p.action}"
        elif isinstance(p, HookFinished):
            why = f": {p.message}" if p.message else ""
            apply_id = p.apply_id
            line = f"{p.phase} wave {p.wave}: hook {_ref(p.ref)} {p.status.lower()}{why}"
        elif isinstance(p, HookDeleted):
            apply_id, line = p.apply_id, f"{p.phase}: hook {_ref(p.ref)} deleted ({p.policy})"
        elif isinstance(p, WaveWaiting):
            waiting = ", ".join(
                f"{_ref(w.ref)} ({w.status}{': ' + w.message if w.message else ''})"
                for w in p.waiting_for
            )
            apply_id, line = p.apply_id, f"{p.phase} wave {p.wave}: waiting for {waiting}"
        elif isinstance(p, WaveCompleted):
            what = _count(len(p.resources), "resource")
            if p.hooks:
                what += f", {_count(len(p.hooks), 'hook')}"
            healthy = ", healthy" if p.waited and p.resources else ""
            apply_id, line = p.apply_id, f"{p.phase} wave {p.wave}: done ({what}{healthy})"
        else:
            continue
        steps.setdefault(apply_id, []).append(line)
    return steps


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _ref(ref: ResourceRef) -> str:
    where = f"{ref.namespace}/" if ref.namespace else ""
    return f"{ref.kind} {where}{ref.name}"


def plan_summary(plan: Row) -> str:
    parts = [
        f"{plan[column]} to {verb}"
        for column, verb in (("creates", "create"), ("updates", "update"), ("prunes", "prune"))
        if plan[column]
    ]
    return ", ".join(parts) or "no changes"


def journeys(
    *,
    revisions: Iterable[Row],
    plans: Iterable[Row],
    approvals: Iterable[Row],
    applies: Iterable[Row],
    steps: Mapping[str, list[str]] | None = None,
) -> list[Journey]:
    """One Journey per correlation id of the app's revisions and plans, newest first.

    `steps` (by apply id, from `apply_steps`) adds each apply's waves and hooks.
    """
    steps = steps or {}
    revisions = list(revisions)
    by_commit = {r["commit"]: r for r in sorted(revisions, key=lambda r: r["detected_seq"])}
    decisions: dict[str, list[Row]] = {}
    for approval in sorted(approvals, key=lambda a: a["seq"]):
        decisions.setdefault(approval["plan_id"], []).append(approval)
    applies_of: dict[str, list[Row]] = {}
    for apply in sorted(applies, key=lambda a: a["started_seq"]):
        applies_of.setdefault(apply["plan_id"], []).append(apply)

    entries: dict[str, dict[str, Any]] = {}
    for revision in revisions:
        entries.setdefault(revision["correlation_id"], {})["revision"] = revision
    for plan in sorted(plans, key=lambda p: p["created_seq"]):
        # A journey that planned twice (a drift or a superseded plan) shows its last plan.
        entries.setdefault(plan["correlation_id"], {})["plan"] = plan

    result = []
    for correlation_id, entry in entries.items():
        revision: Row | None = entry.get("revision")
        plan: Row | None = entry.get("plan")
        commit = revision["commit"] if revision else plan["commit"] if plan else ""
        # A rollback's journey starts at its request: author and message are its target's.
        source = revision or by_commit.get(commit)
        tries = applies_of.get(plan["plan_id"], []) if plan else []
        last_apply = tries[-1:]
        apply = last_apply[0] if last_apply else None
        rollback = bool(
            (plan and (plan["reason"] == "rollback" or plan["rollback_of"]))
            or (apply and apply["rollback_of"])
        )
        result.append(
            Journey(
                correlation_id=correlation_id,
                seq=revision["detected_seq"] if revision else plan["created_seq"],
                started_at=revision["detected_at"] if revision else plan["created_at"],
                commit=commit,
                author=source["author"] if source else "",
                message=source["message"] if source else "",
                render=_render(revision),
                plan_id=plan["plan_id"] if plan else None,
                plan_status=plan["status"] if plan else None,
                plan_summary=plan_summary(plan) if plan else "",
                decisions=[
                    Decision(
                        decision=d["decision"],
                        actor=d["actor"],
                        via=d["via"],
                        at=d["decided_at"],
                        comment=d["comment"],
                    )
                    for d in (decisions.get(plan["plan_id"], []) if plan else [])
                ],
                apply_id=apply["apply_id"] if apply else None,
                applied_at=apply["finished_at"] if apply else None,
                result=_result(revision, plan, apply),
                error=(apply or {}).get("error")
                or (revision or {}).get("render_error")
                or _blocked_by(plan),
                rollback=rollback,
                rollback_of=(apply or plan or {}).get("rollback_of"),
                attempts=len(tries),
                steps=steps.get(apply["apply_id"], []) if apply else [],
            )
        )
    return sorted(result, key=lambda j: -j.seq)


def _render(revision: Row | None) -> str:
    if revision is None:
        return ""
    return revision["render_status"]


def _blocked_by(plan: Row | None) -> str | None:
    """Why a blocked plan is: `Kind ns/name: error; ...` from its changes' errors."""
    if plan is None or plan["status"] != "blocked":
        return None
    changes = plan["changes"]
    if isinstance(changes, str | bytes):
        changes = msgspec.json.decode(changes)
    errors = [
        f"{ResourceRef(**change['ref'])}: {change['error']}"
        for change in changes
        if change.get("error")
    ]
    return "; ".join(errors) or None


def _result(revision: Row | None, plan: Row | None, apply: Row | None) -> str:
    if apply is not None:
        if apply["status"] == "failed" and plan is not None and plan["status"] == "retrying":
            return "apply failed, retrying"
        return {"applied": "applied", "failed": "apply failed"}.get(apply["status"], "applying")
    if plan is not None:
        return plan["status"]
    if revision is not None and revision["render_status"] == "failed":
        return "render failed"
    if revision is not None and revision["render_status"] == "unchanged":
        # Renders as what is applied: synced at this commit, nothing planned.
        return "unchanged"
    return "rendering" if revision is not None else ""


class Moment(msgspec.Struct, frozen=True, kw_only=True):
    """What `wake state NAME --at TIME` shows: the app as it was at `at`."""

    app: str
    at: datetime
    seq: int
    application: Row | None
    desired: Row | None
    planned: Row | None
    approved: Row | None
    applied: Row | None
    resources: list[Row]


def moment(models: ReadModels, app: str, at: datetime) -> Moment:
    """The app's desired, planned, approved and applied state in `models` (folded up to `at`)."""
    application = models.rows["applications"].get(app)
    revisions = [r for r in models.rows["revisions"].values() if r["app"] == app]
    rendered = [r for r in revisions if r["render_status"] in ("rendered", "unchanged")]
    plans = [p for p in models.rows["plans"].values() if p["app"] == app]
    approvals = [
        a
        for a in models.rows["approvals"].values()
        if a["app"] == app and a["decision"] == "approved"
    ]
    last_apply_id = application["last_apply_id"] if application else None
    return Moment(
        app=app,
        at=at,
        seq=models.last_seq,
        application=application,
        desired=max(rendered, key=lambda r: r["detected_seq"], default=None),
        planned=max(plans, key=lambda p: p["created_seq"], default=None),
        approved=max(approvals, key=lambda a: a["seq"], default=None),
        applied=models.get("applies", last_apply_id),
        resources=sorted(
            models.resources.get(app, []),
            key=lambda r: (r["kind"], r["namespace"], r["name"]),
        ),
    )
