"""Did this app's path change? The git-watcher's decision, pure (no git, no NATS).

The shell resolves the app's ref in a fresh mirror and reads the last
RevisionDetected from the log; this module decides whether a new one is due
and builds it. An app's journey starts anew at each detection: the event's
id is derived from the detection it follows, so two watcher replicas (or a
retry) that see the same change derive the same id and the log stores it once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from events.envelope import Envelope, derived_event_id
from events.payloads import AppSpec, RevisionDetected

Trigger = Literal["poll", "webhook", "sync", "register"]

# A commit message is a description, not a payload: a pasted log of megabytes
# would bloat every event of the journey that quotes it.
MAX_MESSAGE_CHARS = 8192


@dataclass(frozen=True, slots=True)
class Revision:
    """What the app's ref points at now, as read from the mirror.

    `tree_id` is the id of the tree at the app's path, "" if the path does
    not exist at this commit (the renderer then says so in a RenderFailed).
    """

    commit: str
    parent: str | None
    tree_id: str
    author: str
    author_email: str
    message: str
    committed_at: datetime


@dataclass(frozen=True, slots=True)
class LastDetection:
    """The app's previous RevisionDetected, as far as this decision needs it."""

    event_id: str
    commit: str
    tree_id: str
    repo_url: str
    ref: str


@dataclass(frozen=True, slots=True)
class Detection:
    """A RevisionDetected to append, with its deterministic id."""

    event_id: str
    payload: RevisionDetected


def last_detection(
    last: tuple[int, Envelope] | None, *, registered_seq: int
) -> LastDetection | None:
    """The previous detection of the app's current registration, from (seq, event).

    A detection from before the app was (re-)registered does not count: a
    registered app starts its history afresh, as a first detection.
    """
    if last is None:
        return None
    seq, event = last
    payload = event.payload
    if seq < registered_seq or not isinstance(payload, RevisionDetected):
        return None
    return LastDetection(
        event_id=event.event_id,
        commit=payload.commit,
        tree_id=payload.tree_id,
        repo_url=payload.repo_url,
        ref=payload.ref,
    )


def detect(
    *,
    app: str,
    spec: AppSpec,
    registered_seq: int,
    last: LastDetection | None,
    revision: Revision,
    trigger: Trigger,
    resume: str = "",
) -> Detection | None:
    """The RevisionDetected due for `revision`, or None if nothing changed for the app.

    Due when the app has none yet (since its registration), when the tree at
    its path differs from the last detected one, or when the app now follows
    another repository or ref (a new source is a first detection of it).
    A new commit that leaves the app's path untouched is not a change.

    `resume` is the id of a SyncRequested(resume=True): the ref's commit is
    detected even if unchanged (a rollback pinned the app to an older
    revision; this moves it forward again), once per request -- its id is
    keyed by the request, so a redelivered request finds its own detection
    last and detects nothing more.
    """
    if resume:
        event_id = derived_event_id(f"{app}/resume/{resume}", RevisionDetected.event_type)
        if last is not None and last.event_id == event_id:
            return None
        return Detection(
            event_id=event_id,
            payload=_payload(spec=spec, last=last, revision=revision, trigger=trigger),
        )
    if last is not None and (
        last.tree_id == revision.tree_id and last.repo_url == spec.repo_url and last.ref == spec.ref
    ):
        return None
    # The previous detection's id, not its commit, keys the new one: a branch
    # reset back and forth (A, B, A, B) detects B twice, and the second must
    # not be mistaken by the log's dedupe for the first.
    after = last.event_id if last is not None else f"registered@{registered_seq}"
    payload = _payload(spec=spec, last=last, revision=revision, trigger=trigger)
    event_id = derived_event_id(f"{app}/{after}/{revision.commit}", RevisionDetected.event_type)
    return Detection(event_id=event_id, payload=payload)


def _payload(
    *, spec: AppSpec, last: LastDetection | None, revision: Revision, trigger: Trigger
) -> RevisionDetected:
    return RevisionDetected(
        repo_url=spec.repo_url,
        ref=spec.ref,
        commit=revision.commit,
        parent=revision.parent,
        previous_commit=last.commit if last is not None else None,
        author=revision.author,
        author_email=revision.author_email,
        message=capped(revision.message),
        committed_at=revision.committed_at,
        tree_id=revision.tree_id,
        trigger=trigger,
    )


def capped(message: str) -> str:
    """The commit message, cut at MAX_MESSAGE_CHARS with a note saying so."""
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return (
        message[:MAX_MESSAGE_CHARS] + f"\n[... {len(message) - MAX_MESSAGE_CHARS} more characters]"
    )
