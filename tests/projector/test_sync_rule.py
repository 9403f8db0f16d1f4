"""The read model's Synced follows the shared rule, not the last event type. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

from events import new_event
from events import payloads as p
from services.projector.folding import OUT_OF_SYNC, SYNCED, ReadModels, fold

A, B, C = "a" * 40, "b" * 40, "c" * 40
BUNDLE = {A: "1" * 64, B: "2" * 64, C: "3" * 64}


class App:
    def __init__(self) -> None:
        self.models = ReadModels()
        self.seq = 0

    def add(self, payload: p.Payload, cause=None):
        self.seq += 1
        event = new_event(payload, app="shop", actor="t", cause=cause)
        fold(self.models, self.seq, event)
        return event

    def detect(self, commit: str):
        return self.add(
            p.RevisionDetected(
                repo_url="/r",
                ref="main",
                commit=commit,
                committed_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )

    def render(self, detected, commit: str) -> None:
        self.add(
            p.ManifestsRendered(
                commit=commit,
                bundle_digest=BUNDLE[commit],
                bundle_size=1,
                renderer="y",
                resources=[],
            ),
            cause=detected,
        )

    def applied(self, commit: str, apply_id: str, rollback_of: str | None = None) -> None:
        self.add(
            p.ApplySucceeded(
                apply_id=apply_id,
                plan_id=f"plan-{apply_id}",
                commit=commit,
                bundle_digest=BUNDLE[commit],
                inventory=[],
                rollback_of=rollback_of,
            )
        )

    @property
    def state(self) -> str:
        return self.models.rows["applications"]["shop"]["sync_state"]


def test_synced_only_at_the_latest_detected_revision() -> None:
    app = App()
    a = app.detect(A)
    app.render(a, A)
    app.applied(A, "1")
    assert app.state == SYNCED
    b = app.detect(B)
    app.render(b, B)
    assert app.state == OUT_OF_SYNC
    # an older revision's apply appended last does not make the app synced
    app.applied(A, "2")
    assert app.state == OUT_OF_SYNC
    app.applied(B, "3")
    assert app.state == SYNCED
    # a rollback asked for is what is desired until the next detection
    app.applied(A, "4", rollback_of="1")
    assert app.state == SYNCED
    app.detect(C)
    assert app.state == OUT_OF_SYNC
    # a self-heal of the rolled-back bundle does not hide that C is desired
    app.applied(A, "5", rollback_of="1")
    assert app.state == OUT_OF_SYNC
