"""What `wake history` and `wake state --at` show, assembled from read-model rows. Pure.

A journey is everything one correlation id went through: the revision that
started it (or the rollback request), its plan, who decided on the plan and
through what, and how its apply ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec

from events.payloads import ResourceRef
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
) -> list[Journey]:
    """One Journey per correlation id of the app's revisions and plans, newest first."""
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
        last_apply = applies_of.get(plan["plan_id"], [])[-1:] if plan else []
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
        return {"applied": "applied", "failed": "apply failed"}.get(apply["status"], "applying")
    if plan is not None:
        return plan["status"]
    if revision is not None and revision["render_status"] == "failed":
        return "render failed"
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
    rendered = [r for r in revisions if r["render_status"] == "rendered"]
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
