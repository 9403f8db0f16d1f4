"""What a chaos run must not break, computed from the log alone: events in, findings out.

Pure: every check takes the stream's events (sequence and envelope, in
sequence order) and returns what it found, each finding naming the app and the
event ids at fault, so a failed run says exactly where to look
(`wake events tail`, `wake history APP`).

- at latest: each app's last ApplySucceeded is of its last detected revision,
  or that revision rendered unchanged from the applied one (nothing to plan);
- regressions: an ApplySucceeded of a revision detected before the revision of
  an earlier ApplySucceeded of the same app (rollbacks are the recorded
  exception and do not count);
- duplicate applies: two ApplySucceeded of one plan, two ApplyStarted of one
  approval (or retry), or two outcomes of one apply;
- overlapping applies: an ApplyStarted of an app while another apply of it has
  not finished;
- sequence gaps: stream sequences missing between the first and the last.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from events.envelope import Envelope
from events.names import SYSTEM_APP
from events.payloads import (
    ApplyFailed,
    ApplyStarted,
    ApplySucceeded,
    ManifestsRendered,
    RevisionDetected,
)

Logged = tuple[int, Envelope]
"""One event of the stream and its sequence number."""


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "nothing"


@dataclass(frozen=True)
class NotAtLatest:
    app: str
    latest: str | None
    applied: str | None

    def __str__(self) -> str:
        return (
            f"{self.app}: last detected revision {_short(self.latest)}, "
            f"last applied {_short(self.applied)}"
        )


@dataclass(frozen=True)
class Regression:
    """`applied` (event `event_id` at `seq`) went back behind `newer`, applied before it."""

    app: str
    seq: int
    event_id: str
    applied: str
    newer: str
    newer_event_id: str

    def __str__(self) -> str:
        return (
            f"{self.app}: ApplySucceeded {self.event_id} (seq {self.seq}) applied "
            f"{_short(self.applied)} after {_short(self.newer)}, detected later, was applied "
            f"by {self.newer_event_id}"
        )


@dataclass(frozen=True)
class Duplicate:
    """`kind`: "plan applied twice", "approval started twice", "apply finished twice"."""

    app: str
    kind: str
    key: str
    event_ids: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.app}: {self.kind} ({self.key}): events {', '.join(self.event_ids)}"


@dataclass(frozen=True)
class Overlap:
    """ApplyStarted `event_id` at `seq` while the apply `running` had not finished."""

    app: str
    seq: int
    event_id: str
    running: str

    def __str__(self) -> str:
        return (
            f"{self.app}: apply {self.event_id} started (seq {self.seq}) while apply "
            f"{self.running} had not finished"
        )


def _by_app(events: Iterable[Logged]) -> dict[str, list[Logged]]:
    apps: dict[str, list[Logged]] = defaultdict(list)
    for seq, event in events:
        # The system app's events (key registrations, rejections of messages that
        # name no app) are no application's.
        if event.app != SYSTEM_APP:
            apps[event.app].append((seq, event))
    return apps


def not_at_latest(events: Iterable[Logged], apps: Iterable[str] = ()) -> list[NotAtLatest]:
    """Apps (those in the log, and `apps`) whose last detected revision is not applied."""
    by_app = _by_app(events)
    found = []
    for app in sorted(set(by_app) | set(apps)):
        latest: str | None = None
        applied: str | None = None
        unchanged: dict[str, str] = {}
        for _, event in by_app.get(app, []):
            payload = event.payload
            if isinstance(payload, RevisionDetected):
                latest = payload.commit
            elif isinstance(payload, ApplySucceeded):
                applied = payload.commit
            elif isinstance(payload, ManifestsRendered) and payload.unchanged_from:
                unchanged[payload.commit] = payload.unchanged_from
        # A revision rendered unchanged from the applied one is applied: its
        # bundle is byte for byte the one in the cluster.
        equivalent, seen = latest, set()
        while equivalent is not None and equivalent != applied and equivalent not in seen:
            seen.add(equivalent)
            equivalent = unchanged.get(equivalent)
        if latest is None or applied is None or equivalent != applied:
            found.append(NotAtLatest(app=app, latest=latest, applied=applied))
    return found


def regressions(events: Iterable[Logged]) -> list[Regression]:
    """ApplySucceeded events that applied a revision older than one applied before them.

    "Older" is the order in which the app's revisions were detected (the first
    RevisionDetected of each commit), never the log position of a later event.
    """
    found = []
    for app, logged in sorted(_by_app(events).items()):
        detected: dict[str, int] = {}
        newest: tuple[int, str, str] | None = None  # (rank, commit, ApplySucceeded id)
        for seq, event in logged:
            payload = event.payload
            if isinstance(payload, RevisionDetected):
                detected.setdefault(payload.commit, len(detected))
            elif isinstance(payload, ApplySucceeded) and payload.rollback_of is None:
                rank = detected.get(payload.commit)
                if rank is None:
                    continue  # never detected: nothing to order it by
                if newest is not None and rank < newest[0]:
                    found.append(
                        Regression(
                            app=app,
                            seq=seq,
                            event_id=event.event_id,
                            applied=payload.commit,
                            newer=newest[1],
                            newer_event_id=newest[2],
                        )
                    )
                elif newest is None or rank > newest[0]:
                    newest = (rank, payload.commit, event.event_id)
    return found


def duplicate_applies(events: Iterable[Logged]) -> list[Duplicate]:
    """Plans applied twice, approvals started twice, applies that finished twice."""
    by_plan: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_cause: dict[tuple[str, str], list[str]] = defaultdict(list)
    by_apply: dict[tuple[str, str], list[str]] = defaultdict(list)
    for _, event in events:
        payload = event.payload
        if isinstance(payload, ApplySucceeded):
            by_plan[event.app, payload.plan_id].append(event.event_id)
        if isinstance(payload, ApplyStarted):
            by_cause[event.app, event.causation_id or event.event_id].append(event.event_id)
        if isinstance(payload, ApplySucceeded | ApplyFailed):
            by_apply[event.app, payload.apply_id].append(event.event_id)
    found = []
    for kind, groups, what in (
        ("plan applied twice", by_plan, "plan"),
        ("approval started twice", by_cause, "approval"),
        ("apply finished twice", by_apply, "apply"),
    ):
        for (app, key), ids in groups.items():
            if len(ids) > 1:
                found.append(
                    Duplicate(app=app, kind=kind, key=f"{what} {key}", event_ids=tuple(ids))
                )
    return sorted(found, key=lambda d: (d.app, d.kind, d.key))


def overlapping_applies(events: Iterable[Logged]) -> list[Overlap]:
    """ApplyStarted events of an app while another apply of it had not finished.

    An apply finishes with its ApplySucceeded or ApplyFailed (an expired one
    with the ApplyFailed recorded for it); an apply resumed after a crash
    appends no second ApplyStarted, so it stays one apply.
    """
    found = []
    for app, logged in sorted(_by_app(events).items()):
        running: dict[str, str] = {}  # apply id -> its ApplyStarted id
        for seq, event in logged:
            payload = event.payload
            if isinstance(payload, ApplyStarted):
                for apply_id in running:
                    if apply_id != payload.apply_id:
                        found.append(
                            Overlap(app=app, seq=seq, event_id=event.event_id, running=apply_id)
                        )
                running[payload.apply_id] = event.event_id
            elif isinstance(payload, ApplySucceeded | ApplyFailed):
                running.pop(payload.apply_id, None)
    return found


def sequence_gaps(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Ranges (first, last) of sequences missing between the first and the last seen."""
    gaps = []
    previous: int | None = None
    for seq in sorted(set(seqs)):
        if previous is not None and seq > previous + 1:
            gaps.append((previous + 1, seq - 1))
        previous = seq
    return gaps


@dataclass
class Findings:
    """Every check's findings over one log, and counts of what the log holds."""

    events: int
    first_seq: int
    last_seq: int
    not_at_latest: list[NotAtLatest]
    regressions: list[Regression]
    duplicates: list[Duplicate]
    overlaps: list[Overlap]
    gaps: list[tuple[int, int]]
    counts: Counter[str] = field(default_factory=Counter)
    instances: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def missing(self) -> int:
        return sum(last - first + 1 for first, last in self.gaps)

    def problems(self) -> list[str]:
        """One line per finding; empty when every invariant holds."""
        lines = [f"not at latest: {f}" for f in self.not_at_latest]
        lines += [f"regression: {f}" for f in self.regressions]
        lines += [f"duplicate apply: {f}" for f in self.duplicates]
        lines += [f"overlapping apply: {f}" for f in self.overlaps]
        lines += [f"sequence gap: {a}..{b}" for a, b in self.gaps]
        return lines


def assess(events: Sequence[Logged], apps: Iterable[str] = ()) -> Findings:
    """Run every check over the stream's events; `apps` must all be at latest too."""
    counts: Counter[str] = Counter(event.type for _, event in events)
    instances: dict[str, Counter[str]] = defaultdict(Counter)
    for _, event in events:
        # Envelopes record the replica that appended them once replicas exist.
        instance = getattr(event, "instance", "")
        if instance:
            instances[event.type][instance] += 1
    seqs = [seq for seq, _ in events]
    return Findings(
        events=len(events),
        first_seq=min(seqs, default=0),
        last_seq=max(seqs, default=0),
        not_at_latest=not_at_latest(events, apps),
        regressions=regressions(events),
        duplicates=duplicate_applies(events),
        overlaps=overlapping_applies(events),
        gaps=sequence_gaps(seqs),
        counts=counts,
        instances=dict(instances),
    )
