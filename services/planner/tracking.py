"""What the planner knows of one app, folded event by event from the log. Pure.

The planner's shell follows the log (services/catalog/following.py) and folds
each event of `FOLLOWED_TYPES` into the app's `AppState`; a handler then
decides from that state, never re-reading the app's history.

Per-app order (DESIGN §2): a revision is ordered by where its RevisionDetected
is in the log, a rollback by where its RollbackRequested is -- never by where
a later event (its render, its plan) landed. `newer_than` answers "was a
revision detected after this one already planned?"; if so this one is moot:
the planner records it superseded (a PlanSuperseded naming the commit and the
plan that made it moot) instead of planning it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from events.envelope import Envelope
from events.payloads import (
    ApplyStarted,
    ApplySucceeded,
    ApprovalRefused,
    AppSpec,
    DriftDetected,
    ManifestsRendered,
    PlanApproved,
    PlanCreated,
    PlanRejected,
    PlanSuperseded,
    ResourceApplied,
    ResourceDeleted,
    RevisionDetected,
    RollbackRequested,
    SyncRequested,
)
from services.catalog.registry import LIFECYCLE_TYPES, fold_spec
from services.catalog.revisions import AppliedRevision
from services.planner import policy
from services.projects.approving import Author
from services.projects.book import PROJECT_TYPES
from services.resources.identity import Identity, identity

# The events a planner decides on (and the app's spec, from its lifecycle).
FOLLOWED_TYPES = (
    *LIFECYCLE_TYPES,
    RevisionDetected.event_type,
    PlanCreated.event_type,
    PlanApproved.event_type,
    PlanRejected.event_type,
    PlanSuperseded.event_type,
    ApplyStarted.event_type,
    ApplySucceeded.event_type,
    SyncRequested.event_type,
    # What the app created (prune deletes nothing else) and who wrote each
    # commit (--separate-approver); the projects (folded apart, `Planner`).
    ResourceApplied.event_type,
    ResourceDeleted.event_type,
    ApprovalRefused.event_type,
    *PROJECT_TYPES,
)
# The events it handles: followed too (not folded), so that a handler can wait
# until the state has reached its own event.
INPUT_TYPES = (
    ManifestsRendered.event_type,
    RollbackRequested.event_type,
    DriftDetected.event_type,
)


def wanted(event_type: str, data: bytes) -> bool:
    """Whether an event could change an AppState: a ResourceApplied only when it created
    or pruned something (most are "unchanged" or "configured"; they are not decoded)."""
    if event_type != ResourceApplied.event_type:
        return True
    return b'"created"' in data or b'"pruned"' in data


@dataclass(frozen=True, slots=True)
class Planned:
    """The newest plan of the app by desired order (see `order`)."""

    order: int
    plan_id: str
    commit: str


@dataclass
class AppState:
    """One app's spec, revisions, plans and applies, as far as the log has been followed."""

    # None: not registered (or removed).
    spec: AppSpec | None = None

    # RevisionDetected event id -> its stream sequence: a render's order.
    detected: dict[str, int] = field(default_factory=dict)
    # Every plan id the log holds, planned or superseded before planning.
    plan_ids: set[str] = field(default_factory=set)
    # Plans awaiting approval, in log order (dict as an ordered set).
    awaiting: dict[str, None] = field(default_factory=dict)
    newest: Planned | None = None
    # The sequence of the app's last PlanCreated: plans are appended expecting it.
    last_plan_seq: int = 0
    applied: policy.Applied = field(
        default_factory=lambda: policy.Applied(commits=frozenset(), pin=None)
    )
    applies: list[AppliedRevision] = field(default_factory=list)
    # Each commit's author, from its RevisionDetected.
    authors: dict[str, Author] = field(default_factory=dict)
    # Each plan's commit, by plan id.
    plan_commits: dict[str, str] = field(default_factory=dict)
    # The objects the log shows this app created (a ResourceApplied "created")
    # and neither pruned nor deleted since: all that a prune may delete.
    created: set[Identity] = field(default_factory=set)
    # Plans rejected, superseded or started: never awaiting approval again.
    closed: set[str] = field(default_factory=set)

    def add(self, seq: int, event: Envelope) -> None:
        payload = event.payload
        if event.type in LIFECYCLE_TYPES:
            self.spec = fold_spec(self.spec, event)
        elif isinstance(payload, RevisionDetected):
            self.detected[event.event_id] = seq
            self.authors[payload.commit] = Author(payload.author, payload.author_email)
        elif isinstance(payload, ResourceApplied):
            if payload.action == "created" and not payload.hook:
                self.created.add(identity(payload.ref))
            elif payload.action == "pruned":
                self.created.discard(identity(payload.ref))
        elif isinstance(payload, ResourceDeleted):
            if payload.action == "deleted":
                self.created.discard(identity(payload.ref))
        elif isinstance(payload, PlanCreated):
            self.plan_commits[payload.plan_id] = payload.commit
            self.plan_ids.add(payload.plan_id)
            self.last_plan_seq = seq
            if payload.needs_approval:
                self.awaiting[payload.plan_id] = None
            if payload.reason != "drift":
                order = payload.desired_seq or seq
                if self.newest is None or order > self.newest.order:
                    self.newest = Planned(order, payload.plan_id, payload.commit)
        elif isinstance(payload, PlanSuperseded):
            self.plan_ids.add(payload.plan_id)
            self.awaiting.pop(payload.plan_id, None)
            self.closed.add(payload.plan_id)
        elif isinstance(payload, PlanApproved):
            self.awaiting.pop(payload.plan_id, None)
        elif isinstance(payload, PlanRejected | ApplyStarted):
            self.awaiting.pop(payload.plan_id, None)
            self.closed.add(payload.plan_id)
        elif isinstance(payload, ApprovalRefused):
            # The approval did not count: the plan awaits a person again.
            if payload.plan_id in self.plan_commits and payload.plan_id not in self.closed:
                self.awaiting[payload.plan_id] = None
        elif isinstance(payload, ApplySucceeded | SyncRequested):
            self.applied = policy.fold_applied(self.applied, payload)
            if isinstance(payload, ApplySucceeded):
                if self.applies and self.applies[-1].apply.inventory:
                    # Only the last apply's inventory is ever read (a plan prunes
                    # from it); an older one is kept as a rollback target only.
                    last = self.applies[-1]
                    slim = msgspec.structs.replace(last.apply, inventory=[])
                    self.applies[-1] = AppliedRevision(
                        last.seq, msgspec.structs.replace(last.event, payload=slim), slim
                    )
                self.applies.append(AppliedRevision(seq, event, payload))

    def order_of_render(self, rendered: Envelope, seq: int) -> int:
        """A render's place in the app's order: its RevisionDetected's sequence.

        A render whose RevisionDetected is not in the log (made by hand, or by
        a test) is ordered by its own place.
        """
        return self.detected.get(rendered.causation_id or "", seq)

    def newer_than(self, order: int) -> Planned | None:
        """The plan of a revision (or rollback) after `order`, if one was made."""
        if self.newest is not None and self.newest.order > order:
            return self.newest
        return None
