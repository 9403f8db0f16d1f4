"""Did anything this app's last render read change? The git-watcher's decision, pure.

The shell resolves the app's ref in a fresh mirror and reads the app's last
RevisionDetected and last render outcome from the log; this module decides
whether a new detection is due and builds it. No git, no NATS here: the two
commits come in as lookups from a repository path to the id of what is
there.

Why inputs, not the app's folder: an overlay (`deploy/overlays/prod`) reads
its bases (`deploy/bases/backend`), which lie outside its folder; a commit
changing only a base changes every overlay's render. Every ManifestsRendered
lists the paths its render read (`inputs`), and a new commit is a change of
the app when the object at any of them differs from the last detected
commit's. When that cannot be known -- no render of the last detection yet,
a failed one, one without inputs (rendered before they were recorded) -- a
new commit is detected anyway, and the renderer, comparing what it renders
with what is applied, records an unchanged revision without a plan
(`renderer/unchanged.py`).

An app's journey starts anew at each detection: the event's id is derived
from the detection it follows, so two watcher replicas (or a retry) that see
the same change derive the same id and the log stores it once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from events.envelope import Envelope, derived_event_id
from events.payloads import AppSpec, ManifestsRendered, RenderFailed, RevisionDetected

Trigger = Literal["poll", "webhook", "sync", "register"]

# A commit message is a description, not a payload: a pasted log of megabytes
# would bloat every event of the journey that quotes it.
MAX_MESSAGE_CHARS = 8192

# The id of the object (blob or tree) at a repository path in one commit, ""
# if nothing is there. Symlinks are not followed: a render that went through
# one lists the link itself among its inputs, and its target.
IdAt = Callable[[str], str]


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
    seq: int = 0


@dataclass(frozen=True, slots=True)
class LastRender:
    """The app's last render outcome: which detection it rendered, and what it read.

    `inputs` is () for a RenderFailed, or a render that did not record them.
    """

    detection_id: str
    inputs: tuple[str, ...]


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
        seq=seq,
    )


def last_render(
    rendered: tuple[int, Envelope] | None, failed: tuple[int, Envelope] | None
) -> LastRender | None:
    """The later of the app's last ManifestsRendered and last RenderFailed (seq, event)."""
    latest = max((e for e in (rendered, failed) if e is not None), key=lambda e: e[0], default=None)
    if latest is None:
        return None
    event = latest[1]
    payload = event.payload
    if isinstance(payload, ManifestsRendered):
        return LastRender(detection_id=event.causation_id or "", inputs=tuple(payload.inputs))
    if isinstance(payload, RenderFailed):
        return LastRender(detection_id=event.causation_id or "", inputs=())
    return None


def render_inputs(last: LastDetection | None, render: LastRender | None) -> tuple[str, ...] | None:
    """The paths that decide whether a commit after `last` changes the app; None in doubt.

    Known only when the last render is of the last detection itself (a
    render still pending, or of an older commit, may have read other paths)
    and recorded what it read.
    """
    if last is None or render is None or render.detection_id != last.event_id:
        return None
    return render.inputs or None


def inputs_changed(inputs: Iterable[str], *, before: IdAt, after: IdAt) -> bool:
    """True if the object at any of `inputs` differs between the two commits.

    A path is a file or a folder (whose tree id changes with anything under
    it); one that appears or disappears is a change too.
    """
    return any(before(path) != after(path) for path in inputs)


def detect(
    *,
    app: str,
    spec: AppSpec,
    registered_seq: int,
    last: LastDetection | None,
    revision: Revision,
    trigger: Trigger,
    resume: str = "",
    updated_seq: int = 0,
    inputs: tuple[str, ...] | None = None,
    before: IdAt | None = None,
    after: IdAt | None = None,
) -> Detection | None:
    """The RevisionDetected due for `revision`, or None if nothing changed for the app.

    Due when the app has none yet (since its registration), when the app now
    follows another repository or ref (a new source is a first detection of
    it), when its spec changed since the last detection (`updated_seq`, the
    sequence of its last ApplicationUpdated: another namespace or renderer
    option renders differently from the same commit), and for a new commit
    when any of `inputs` (`render_inputs`: what the last render read) differs
    between the last detected commit (`before`) and this one (`after`) -- or
    when `inputs` is None, which means in doubt: the renderer then decides.
    The same commit again is never a change by itself.

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
    key = ""
    if last is not None and last.repo_url == spec.repo_url and last.ref == spec.ref:
        if last.seq < updated_seq:
            # Keyed by the update too: the same commit may be detected once per spec.
            key = f"/updated@{updated_seq}"
        elif not _changed(last, revision, inputs=inputs, before=before, after=after):
            return None
    # The previous detection's id, not its commit, keys the new one: a branch
    # reset back and forth (A, B, A, B) detects B twice, and the second must
    # not be mistaken by the log's dedupe for the first.
    previous = last.event_id if last is not None else f"registered@{registered_seq}"
    payload = _payload(spec=spec, last=last, revision=revision, trigger=trigger)
    event_id = derived_event_id(
        f"{app}/{previous}/{revision.commit}{key}", RevisionDetected.event_type
    )
    return Detection(event_id=event_id, payload=payload)


def nothing_new(
    *,
    spec: AppSpec,
    last: LastDetection | None,
    commit: str,
    resume: str = "",
    updated_seq: int = 0,
) -> bool:
    """True when `detect` returns None for any revision of `commit`, so the shell need
    not read the commit's trees: the app's last detection is of this very commit, from
    the same repository and ref, under the current spec, and no resume is asked for."""
    return (
        not resume
        and last is not None
        and last.repo_url == spec.repo_url
        and last.ref == spec.ref
        and last.seq >= updated_seq
        and last.commit == commit
    )


def _changed(
    last: LastDetection,
    revision: Revision,
    *,
    inputs: tuple[str, ...] | None,
    before: IdAt | None,
    after: IdAt | None,
) -> bool:
    if revision.commit == last.commit:
        return False
    if inputs is None or before is None or after is None:
        return True
    return inputs_changed(inputs, before=before, after=after)


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
