"""What git-watcher remembers of each app, folded once from the log: pure.

A check needs, per app, its last RevisionDetected, the last render outcome
(what it read) and its last SourceFailed / SourceRecovered. Read with four
direct gets per app and check, a poll of 1000 apps cost 4000 round trips
even when nothing changed; folded by a `Follower` it costs none (DESIGN §2:
folded once at start and then followed, never re-read per check).

Only what the decisions use is kept (a detection without its commit message,
a render without its resources), so 10,000 apps stay small in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.envelope import Envelope
from events.payloads import (
    ManifestsRendered,
    RenderFailed,
    RevisionDetected,
    SourceFailed,
    SourceRecovered,
)
from services.git_watcher.changes import LastDetection, LastRender

FOLLOWED_TYPES = (
    RevisionDetected.event_type,
    ManifestsRendered.event_type,
    RenderFailed.event_type,
    SourceFailed.event_type,
    SourceRecovered.event_type,
)


@dataclass(slots=True)
class AppHistory:
    """The last event of each kind a check looks at, with its stream sequence."""

    detection: LastDetection | None = None
    render: tuple[int, LastRender] | None = None
    failed: tuple[int, Envelope] | None = None
    recovered: tuple[int, Envelope] | None = None

    def detection_since(self, registered_seq: int) -> LastDetection | None:
        """The last detection of the app's current registration (see `last_detection`)."""
        if self.detection is None or self.detection.seq < registered_seq:
            return None
        return self.detection

    def last_render(self) -> LastRender | None:
        return self.render[1] if self.render is not None else None


def fold(state: AppHistory, seq: int, event: Envelope) -> None:
    """Fold one followed event into the app's history; a sequence already passed is ignored."""
    payload = event.payload
    if isinstance(payload, RevisionDetected):
        if state.detection is None or seq > state.detection.seq:
            state.detection = LastDetection(
                event_id=event.event_id,
                commit=payload.commit,
                tree_id=payload.tree_id,
                repo_url=payload.repo_url,
                ref=payload.ref,
                seq=seq,
            )
    elif isinstance(payload, ManifestsRendered | RenderFailed):
        if state.render is None or seq > state.render[0]:
            inputs = tuple(payload.inputs) if isinstance(payload, ManifestsRendered) else ()
            state.render = (seq, LastRender(detection_id=event.causation_id or "", inputs=inputs))
    elif isinstance(payload, SourceFailed):
        if state.failed is None or seq > state.failed[0]:
            state.failed = (seq, event)
    elif isinstance(payload, SourceRecovered):
        if state.recovered is None or seq > state.recovered[0]:
            state.recovered = (seq, event)
