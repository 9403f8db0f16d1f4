"""The projector's pure core: one event and the rows it touches -> those rows changed.

No I/O here (DESIGN §1): the live projector, `wake replay` and `wake state --at`
all fold events through `fold`, so what each of them shows cannot disagree.
`ReadModels` holds the rows a fold may read (the shell loads them, see
`keys_needed`) and records which rows changed so the shell can write them.

Row columns are listed in `TABLES`, in the order of infra/postgres/001; a row
is a dict over exactly those columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from events.envelope import Envelope
from events.names import SYSTEM_APP
from events.payloads import (
    ApplicationRegistered,
    ApplicationRemoved,
    ApplicationUpdated,
    ApplyFailed,
    ApplyRetryScheduled,
    ApplyStarted,
    ApplySucceeded,
    ApprovalRefused,
    ApprovalRequested,
    DriftDetected,
    HealthChanged,
    ManifestsRendered,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    PlanRejected,
    PlanSuperseded,
    ProjectCreated,
    ProjectRemoved,
    ProjectUpdated,
    RenderFailed,
    ResourceApplied,
    ResourceDeleted,
    RevisionDetected,
    SyncRequested,
    TokenCreated,
    TokenRevoked,
)
from services.catalog import plans, syncing
from services.projects.rules import DEFAULT_PROJECT


@dataclass(frozen=True, slots=True)
class Table:
    """A read model: its columns in storage order and its primary key."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]


TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "applications",
            (
                "app",
                "repo_url",
                "path",
                "ref",
                "namespace",
                "auto_sync",
                "removed",
                "registered_at",
                "sync_state",
                "health",
                "desired_commit",
                "desired_bundle",
                "current_commit",
                "current_plan_id",
                "last_applied_commit",
                "last_applied_bundle",
                "last_apply_id",
                "last_applied_at",
                "rolled_back",
                "rolled_back_to",
                "last_seq",
                "updated_at",
                # infra/postgres/003_projects.sql
                "project",
            ),
            ("app",),
        ),
        Table("projects", ("name", "spec", "removed", "last_seq", "updated_at"), ("name",)),
        # infra/postgres/004_tokens.sql
        Table(
            "tokens",
            (
                "name",
                "role",
                "apps",
                "digest",
                "revoked",
                "created_by",
                "created_at",
                "last_seq",
                "updated_at",
            ),
            ("name",),
        ),
        Table(
            "revisions",
            (
                "revision_id",
                "app",
                "correlation_id",
                "commit",
                "parent",
                "author",
                "author_email",
                "message",
                "committed_at",
                "trigger",
                "detected_seq",
                "detected_at",
                "render_status",
                "bundle_digest",
                "bundle_size",
                "renderer",
                "resource_count",
                "render_error",
            ),
            ("revision_id",),
        ),
        Table(
            "plans",
            (
                "plan_id",
                "app",
                "correlation_id",
                "commit",
                "bundle_digest",
                "reason",
                "rollback_of",
                "needs_approval",
                "status",
                "creates",
                "updates",
                "unchanged",
                "prunes",
                "changes",
                "prune",
                "created_seq",
                "created_at",
                "superseded_by",
                "decided_at",
                "apply_id",
            ),
            ("plan_id",),
        ),
        Table(
            "approvals",
            (
                "event_id",
                "plan_id",
                "app",
                "decision",
                "actor",
                "via",
                "comment",
                "decided_at",
                "seq",
            ),
            ("event_id",),
        ),
        Table(
            "applies",
            (
                "apply_id",
                "app",
                "plan_id",
                "correlation_id",
                "commit",
                "bundle_digest",
                "rollback_of",
                "status",
                "started_at",
                "finished_at",
                "resources_applied",
                "inventory",
                "error",
                "failed_resource",
                "started_seq",
            ),
            ("apply_id",),
        ),
        Table(
            "resources",
            ("app", "api_version", "kind", "namespace", "name", "apply_id", "commit"),
            ("app", "api_version", "kind", "namespace", "name"),
        ),
        Table(
            "events",
            (
                "seq",
                "event_id",
                "type",
                "app",
                "occurred_at",
                "correlation_id",
                "causation_id",
                "actor",
            ),
            ("seq",),
        ),
    )
}

# Tables whose rows a fold reads back (keyed by one value each); `resources`
# is only ever replaced per app and `events` only appended, so neither is read.
KEYED_TABLES = (
    "applications",
    "revisions",
    "plans",
    "approvals",
    "applies",
    "projects",
    "tokens",
)

# Plan status: services/catalog/plans.py's, moved by its `next_status` (one state machine).
CREATED = plans.CREATED
AWAITING_APPROVAL = plans.AWAITING_APPROVAL
APPROVED = plans.APPROVED
REJECTED = plans.REJECTED
SUPERSEDED = plans.SUPERSEDED
APPLYING = plans.APPLYING
APPLIED = plans.APPLIED
FAILED = plans.FAILED
RETRYING = plans.RETRYING
BLOCKED = plans.BLOCKED

# Sync state of an application.
UNKNOWN = "Unknown"
OUT_OF_SYNC = "OutOfSync"
WAITING = "AwaitingApproval"
SYNCING = "Syncing"
SYNCED = "Synced"
SYNC_FAILED = "Failed"

EventRow = tuple[int, str, str, str, datetime, str, str | None, str]
"""A row of the `events` index, in column order."""

_json = msgspec.json.Encoder()


def json_text(value: Any) -> str:
    """The JSON of a Struct or builtin value, as stored in a jsonb column."""
    return _json.encode(value).decode()


@dataclass
class ReadModels:
    """The rows a fold works on, and what changed since `take_changes`.

    `rows[table][key]` for the keyed tables; `resources[app]` is an app's
    whole resource list; `events` the index rows added. The shell decides
    what is loaded: everything (replay, `wake state --at`: start empty and
    fold from the first event) or the rows `keys_needed` names (the live
    projector, one batch at a time).
    """

    rows: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {name: {} for name in KEYED_TABLES}
    )
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events: list[EventRow] = field(default_factory=list)
    dirty: dict[str, set[str]] = field(
        default_factory=lambda: {name: set() for name in KEYED_TABLES}
    )
    dirty_resources: set[str] = field(default_factory=set)
    last_seq: int = 0

    def get(self, table: str, key: str | None) -> dict[str, Any] | None:
        if key is None:
            return None
        return self.rows[table].get(key)

    def put(self, table: str, row: dict[str, Any]) -> None:
        key = row[TABLES[table].key[0]]
        self.rows[table][key] = row
        self.dirty[table].add(key)

    def changed_rows(self, table: str) -> list[dict[str, Any]]:
        """The rows of `table` changed since the last `take_changes`."""
        return [self.rows[table][key] for key in self.dirty[table]]

    def changed_resources(self) -> dict[str, list[dict[str, Any]]]:
        return {app: self.resources.get(app, []) for app in self.dirty_resources}

    def take_changes(self) -> None:
        """Forget what changed (the shell has written it) and the index rows added."""
        for keys in self.dirty.values():
            keys.clear()
        self.dirty_resources.clear()
        self.events = []

    def forget(self) -> None:
        """Drop every loaded row: the next batch loads what it needs afresh."""
        for rows in self.rows.values():
            rows.clear()
        self.resources.clear()
        self.take_changes()


def keys_needed(event: Envelope) -> list[tuple[str, str]]:
    """(table, key) of every row `fold(models, seq, event)` may read."""
    payload = event.payload
    keys: list[tuple[str, str]] = []
    if event.app != SYSTEM_APP:
        keys.append(("applications", event.app))
    if isinstance(payload, ManifestsRendered | RenderFailed) and event.causation_id:
        keys.append(("revisions", event.causation_id))
    plan_id = getattr(payload, "plan_id", None)
    if isinstance(plan_id, str):
        keys.append(("plans", plan_id))
    apply_id = getattr(payload, "apply_id", None)
    if isinstance(apply_id, str):
        keys.append(("applies", apply_id))
    if isinstance(payload, TokenCreated | TokenRevoked):
        keys.append(("tokens", payload.name))
    return keys


def fold(models: ReadModels, seq: int, event: Envelope) -> None:
    """Fold the event at `seq` into `models`: its index row and every read model it changes.

    Deterministic in (rows, seq, event): folding the same log from the same
    rows gives the same rows, which is what `wake replay --verify` checks.
    """
    models.events.append(
        (
            seq,
            event.event_id,
            event.type,
            event.app,
            event.occurred_at,
            event.correlation_id,
            event.causation_id,
            event.actor,
        )
    )
    models.last_seq = seq
    handler = _HANDLERS.get(type(event.payload))
    if handler is not None:
        handler(models, seq, event)


def fold_all(models: ReadModels, events: Iterable[tuple[int, Envelope]]) -> ReadModels:
    """Fold events in order; for tests and `wake state --at`."""
    for seq, event in events:
        fold(models, seq, event)
    return models


# --- applications -----------------------------------------------------------------


def _app_row(models: ReadModels, event: Envelope) -> dict[str, Any]:
    # An app's row exists from its first event on, registered or not: the log
    # is the truth, and a read model that dropped events of an app it did not
    # know would hide them.
    row = models.get("applications", event.app)
    if row is None:
        row = {
            "app": event.app,
            "repo_url": "",
            "path": "",
            "ref": "",
            "namespace": "",
            "auto_sync": False,
            "removed": False,
            "registered_at": None,
            "sync_state": UNKNOWN,
            "health": UNKNOWN,
            "desired_commit": None,
            "desired_bundle": None,
            "current_commit": None,
            "current_plan_id": None,
            "last_applied_commit": None,
            "last_applied_bundle": None,
            "last_apply_id": None,
            "last_applied_at": None,
            "rolled_back": False,
            "rolled_back_to": None,
            "last_seq": 0,
            "updated_at": event.occurred_at,
            "project": DEFAULT_PROJECT,
        }
    # Changed in place: the row is this fold's working copy, written back by the shell.
    return row


def _touch(models: ReadModels, row: dict[str, Any], seq: int, event: Envelope) -> None:
    row["last_seq"] = seq
    row["updated_at"] = event.occurred_at
    models.put("applications", row)


def _registered(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, ApplicationRegistered | ApplicationUpdated)
    row = _app_row(models, event)
    spec = payload.spec
    row.update(
        repo_url=spec.repo_url,
        path=spec.path,
        ref=spec.ref,
        namespace=spec.namespace,
        auto_sync=spec.auto_sync,
        removed=False,
        project=spec.project or DEFAULT_PROJECT,
    )
    if isinstance(payload, ApplicationRegistered):
        row["registered_at"] = event.occurred_at
    _touch(models, row, seq, event)


def _project(models: ReadModels, seq: int, event: Envelope) -> None:
    """A project defined, changed or removed (filed under `_wake`; none elsewhere counts)."""
    payload = event.payload
    assert isinstance(payload, ProjectCreated | ProjectUpdated | ProjectRemoved)
    if event.app != SYSTEM_APP:
        return
    row = models.get("projects", payload.name)
    if isinstance(payload, ProjectRemoved):
        if row is None:
            return
        row = {**row, "removed": True}
    else:
        row = {"name": payload.name, "spec": json_text(payload.spec), "removed": False}
    models.put("projects", {**row, "last_seq": seq, "updated_at": event.occurred_at})


def _removed(models: ReadModels, seq: int, event: Envelope) -> None:
    row = _app_row(models, event)
    row["removed"] = True
    _touch(models, row, seq, event)


def _sync_requested(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, SyncRequested)
    row = _app_row(models, event)
    if payload.resume:
        # `wake sync --resume` ends a rollback's pin: auto-sync moves on again.
        row["rolled_back"] = False
        row["rolled_back_to"] = None
    _touch(models, row, seq, event)


def _health(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, HealthChanged)
    row = _app_row(models, event)
    row["health"] = payload.status
    _touch(models, row, seq, event)


def _drift(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, DriftDetected)
    row = _app_row(models, event)
    if payload.resources:
        row["sync_state"] = OUT_OF_SYNC
    _touch(models, row, seq, event)


# --- revisions --------------------------------------------------------------------


def _revision(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, RevisionDetected)
    models.put(
        "revisions",
        {
            "revision_id": event.event_id,
            "app": event.app,
            "correlation_id": event.correlation_id,
            "commit": payload.commit,
            "parent": payload.parent,
            "author": payload.author,
            "author_email": payload.author_email,
            "message": payload.message,
            "committed_at": payload.committed_at,
            "trigger": payload.trigger,
            "detected_seq": seq,
            "detected_at": event.occurred_at,
            "render_status": "pending",
            "bundle_digest": None,
            "bundle_size": None,
            "renderer": None,
            "resource_count": None,
            "render_error": None,
        },
    )
    row = _app_row(models, event)
    row["current_commit"] = payload.commit
    row["sync_state"] = OUT_OF_SYNC
    _touch(models, row, seq, event)


def _rendered(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, ManifestsRendered)
    revision = models.get("revisions", event.causation_id)
    if revision is not None:
        revision.update(
            # "unchanged": its resources are those applied at `unchanged_from`.
            render_status="unchanged" if payload.unchanged_from else "rendered",
            bundle_digest=payload.bundle_digest,
            bundle_size=payload.bundle_size,
            renderer=payload.renderer,
            resource_count=len(payload.resources),
            render_error=None,
        )
        models.put("revisions", revision)
    row = _app_row(models, event)
    row["desired_commit"] = payload.commit
    row["desired_bundle"] = payload.bundle_digest
    if payload.unchanged_from and row["last_applied_commit"] == payload.unchanged_from:
        # The new commit renders exactly what is applied: synced at it, no plan
        # (the renderer decided so; see services/renderer/unchanged.py). Its
        # desired bundle is the applied one: that is what `_synced` compares.
        row["desired_bundle"] = row["last_applied_bundle"]
        if _synced(row):
            row["sync_state"] = SYNCED
    _touch(models, row, seq, event)


def _synced(row: dict[str, Any]) -> bool:
    """The shared rule (services/catalog/syncing.py) on an app's row.

    `current_commit` is the latest detected revision (or the rollback's, see
    `_apply_succeeded`); `desired_*` its render once it is rendered.
    """
    applied = (
        syncing.Applied(row["last_applied_commit"], row["last_applied_bundle"] or "")
        if row["last_applied_commit"]
        else None
    )
    desired = None
    if row["current_commit"]:
        rendered = row["desired_commit"] == row["current_commit"]
        desired = syncing.Desired(
            row["current_commit"], row["desired_bundle"] if rendered else None
        )
    return syncing.verdict(desired, applied).synced


def _render_failed(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, RenderFailed)
    revision = models.get("revisions", event.causation_id)
    where = payload.location
    error = f"{where}: {payload.reason}" if where else payload.reason
    if revision is not None:
        revision.update(render_status="failed", render_error=error, renderer=payload.renderer)
        models.put("revisions", revision)
    row = _app_row(models, event)
    row["sync_state"] = SYNC_FAILED
    _touch(models, row, seq, event)


# --- plans and approvals -------------------------------------------------------------


def _plan(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, PlanCreated)
    counts = {"create": 0, "update": 0, "unchanged": 0, "prune": 0}
    for change in payload.changes:
        counts[change.action] += 1
    models.put(
        "plans",
        {
            "plan_id": payload.plan_id,
            "app": event.app,
            "correlation_id": event.correlation_id,
            "commit": payload.commit,
            "bundle_digest": payload.bundle_digest,
            "reason": payload.reason,
            "rollback_of": payload.rollback_of,
            "needs_approval": payload.needs_approval,
            "status": plans.next_status(None, payload),
            "creates": counts["create"],
            "updates": counts["update"],
            "unchanged": counts["unchanged"],
            "prunes": counts["prune"] + len(payload.prune),
            "changes": json_text(payload.changes),
            "prune": json_text(payload.prune),
            "created_seq": seq,
            "created_at": event.occurred_at,
            "superseded_by": None,
            "decided_at": None,
            "apply_id": None,
        },
    )
    row = _app_row(models, event)
    row["current_plan_id"] = payload.plan_id
    if payload.needs_approval:
        row["sync_state"] = WAITING
    _touch(models, row, seq, event)


def _move_plan(models: ReadModels, plan_id: str, payload: object, **changes: Any) -> bool:
    """Move the plan's status by `plans.next_status`; `changes` only if it moved. Moved?"""
    plan = models.get("plans", plan_id)
    if plan is None:
        return False
    status = plans.next_status(plan["status"], payload)
    if status == plan["status"]:
        return False
    plan.update(changes, status=status)
    models.put("plans", plan)
    return True


def _superseded(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, PlanSuperseded)
    _move_plan(
        models,
        payload.plan_id,
        payload,
        superseded_by=payload.superseded_by,
        decided_at=event.occurred_at,
    )


def _blocked(models: ReadModels, seq: int, event: Envelope) -> None:
    # Nothing of the plan is applied: the app is out of sync with its latest
    # revision (never Synced while stale), and the plan says why in its changes.
    payload = event.payload
    assert isinstance(payload, PlanBlocked)
    _move_plan(models, payload.plan_id, payload, decided_at=event.occurred_at)
    row = _app_row(models, event)
    row["sync_state"] = OUT_OF_SYNC
    _touch(models, row, seq, event)


def _approval_requested(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, ApprovalRequested)
    _move_plan(models, payload.plan_id, payload)
    row = _app_row(models, event)
    row["sync_state"] = WAITING
    _touch(models, row, seq, event)


def _decided(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, PlanApproved | PlanRejected)
    approved = isinstance(payload, PlanApproved)
    models.put(
        "approvals",
        {
            "event_id": event.event_id,
            "plan_id": payload.plan_id,
            "app": event.app,
            "decision": APPROVED if approved else REJECTED,
            "actor": event.actor,
            "via": payload.via,
            "comment": payload.comment if isinstance(payload, PlanApproved) else payload.reason,
            "decided_at": event.occurred_at,
            "seq": seq,
        },
    )
    # Recorded above whatever happens; the plan moves only while undecided (a
    # blocked plan stays blocked: the applier refuses it).
    plan = models.get("plans", payload.plan_id)
    blocked = plan is not None and plan["status"] == BLOCKED
    _move_plan(models, payload.plan_id, payload, decided_at=event.occurred_at)
    if not approved and not blocked:
        row = _app_row(models, event)
        row["sync_state"] = OUT_OF_SYNC
        _touch(models, row, seq, event)


def _approval_refused(models: ReadModels, seq: int, event: Envelope) -> None:
    """The planner refused a person's approval: the plan awaits approval again."""
    payload = event.payload
    assert isinstance(payload, ApprovalRefused)
    if _move_plan(models, payload.plan_id, payload, decided_at=None):
        row = _app_row(models, event)
        row["sync_state"] = WAITING
        _touch(models, row, seq, event)


# --- applies and resources --------------------------------------------------------


def _apply_row(models: ReadModels, seq: int, event: Envelope, **known: Any) -> dict[str, Any]:
    row = models.get("applies", known["apply_id"])
    if row is not None:
        return row
    # An apply seen first by its result (its ApplyStarted is missing from the log).
    return {
        "app": event.app,
        "correlation_id": event.correlation_id,
        "commit": "",
        "bundle_digest": "",
        "plan_id": "",
        "rollback_of": None,
        "status": APPLYING,
        "started_at": None,
        "finished_at": None,
        "resources_applied": 0,
        "inventory": None,
        "error": None,
        "failed_resource": None,
        "started_seq": seq,
        **known,
    }


def _apply_started(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, ApplyStarted)
    row = _apply_row(models, seq, event, apply_id=payload.apply_id)
    row.update(
        plan_id=payload.plan_id,
        commit=payload.commit,
        bundle_digest=payload.bundle_digest,
        rollback_of=payload.rollback_of,
        started_at=event.occurred_at,
        started_seq=seq,
    )
    models.put("applies", row)
    _move_plan(models, payload.plan_id, payload, apply_id=payload.apply_id)
    app = _app_row(models, event)
    app["sync_state"] = SYNCING
    _touch(models, app, seq, event)


def _resource_applied(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, ResourceApplied)
    row = _apply_row(models, seq, event, apply_id=payload.apply_id)
    row["resources_applied"] += 1
    models.put("applies", row)


def _apply_succeeded(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, ApplySucceeded)
    row = _apply_row(models, seq, event, apply_id=payload.apply_id)
    row.update(
        plan_id=payload.plan_id,
        commit=payload.commit,
        bundle_digest=payload.bundle_digest,
        rollback_of=payload.rollback_of,
        status=APPLIED,
        finished_at=event.occurred_at,
        inventory=json_text(payload.inventory),
    )
    models.put("applies", row)
    _move_plan(models, payload.plan_id, payload, apply_id=payload.apply_id)
    app = _app_row(models, event)
    if payload.rollback_of is not None and not (
        app["rolled_back"] and app["rolled_back_to"] == payload.commit
    ):
        # A rollback asked for explicitly is the desired revision until the next
        # detection; a self-heal of the rolled-back bundle (same commit) is not a
        # new request and leaves a revision detected since desired.
        app.update(
            current_commit=payload.commit,
            desired_commit=payload.commit,
            desired_bundle=payload.bundle_digest,
        )
    app.update(
        last_applied_commit=payload.commit,
        last_applied_bundle=payload.bundle_digest,
        last_apply_id=payload.apply_id,
        last_applied_at=event.occurred_at,
        rolled_back=payload.rollback_of is not None,
        rolled_back_to=payload.commit if payload.rollback_of is not None else None,
    )
    # Synced only if this is the latest desired revision (an older one applied
    # late is not): the shared rule, not the event type.
    app["sync_state"] = SYNCED if _synced(app) else OUT_OF_SYNC
    _touch(models, app, seq, event)
    resources = {
        (ref.api_version, ref.kind, ref.namespace, ref.name): {
            "app": event.app,
            "api_version": ref.api_version,
            "kind": ref.kind,
            "namespace": ref.namespace,
            "name": ref.name,
            "apply_id": payload.apply_id,
            "commit": payload.commit,
        }
        for ref in payload.inventory
    }
    models.resources[event.app] = list(resources.values())
    models.dirty_resources.add(event.app)


def _apply_failed(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, ApplyFailed)
    row = _apply_row(models, seq, event, apply_id=payload.apply_id)
    row.update(
        plan_id=payload.plan_id,
        status=FAILED,
        finished_at=event.occurred_at,
        error=payload.error,
        failed_resource=str(payload.resource) if payload.resource is not None else None,
    )
    models.put("applies", row)
    _move_plan(models, payload.plan_id, payload, apply_id=payload.apply_id)
    app = _app_row(models, event)
    app["sync_state"] = SYNC_FAILED
    _touch(models, app, seq, event)


def _retry_scheduled(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, ApplyRetryScheduled)
    _move_plan(models, payload.plan_id, payload)
    _touch(models, _app_row(models, event), seq, event)


def _resource_deleted(models: ReadModels, seq: int, event: Envelope) -> None:
    payload = event.payload
    assert isinstance(payload, ResourceDeleted)
    if payload.action == "deleted":
        ref = payload.ref
        models.resources[event.app] = [
            r
            for r in models.resources.get(event.app, [])
            if (r["api_version"], r["kind"], r["namespace"], r["name"])
            != (ref.api_version, ref.kind, ref.namespace, ref.name)
        ]
        models.dirty_resources.add(event.app)
    _touch(models, _app_row(models, event), seq, event)


def _token(models: ReadModels, seq: int, event: Envelope) -> None:
    """An API token made or revoked (filed under `_wake`; none elsewhere counts). A token
    made again under a revoked one's name replaces it."""
    payload = event.payload
    assert isinstance(payload, TokenCreated | TokenRevoked)
    if event.app != SYSTEM_APP:
        return
    row = models.get("tokens", payload.name)
    if isinstance(payload, TokenRevoked):
        if row is None:
            return
        row = {**row, "revoked": True}
    else:
        row = {
            "name": payload.name,
            "role": payload.role,
            "apps": payload.apps,
            "digest": payload.digest,
            "revoked": False,
            "created_by": event.actor,
            "created_at": event.occurred_at,
        }
    models.put("tokens", {**row, "last_seq": seq, "updated_at": event.occurred_at})


_HANDLERS = {
    ApplicationRegistered: _registered,
    ApplicationUpdated: _registered,
    ApplicationRemoved: _removed,
    SyncRequested: _sync_requested,
    RevisionDetected: _revision,
    ManifestsRendered: _rendered,
    RenderFailed: _render_failed,
    PlanCreated: _plan,
    PlanSuperseded: _superseded,
    ApprovalRequested: _approval_requested,
    PlanApproved: _decided,
    PlanRejected: _decided,
    ApplyStarted: _apply_started,
    ResourceApplied: _resource_applied,
    ApplySucceeded: _apply_succeeded,
    ApplyFailed: _apply_failed,
    HealthChanged: _health,
    DriftDetected: _drift,
    ApplyRetryScheduled: _retry_scheduled,
    ResourceDeleted: _resource_deleted,
    PlanBlocked: _blocked,
    ApprovalRefused: _approval_refused,
    ProjectCreated: _project,
    ProjectUpdated: _project,
    ProjectRemoved: _project,
    TokenCreated: _token,
    TokenRevoked: _token,
}
