"""Every project, folded from ProjectCreated, ProjectUpdated and ProjectRemoved. Pure.

Project events are filed under the app token `_wake` (names.SYSTEM_APP), the
project's name in the payload; one filed under an application is not a
project's and is ignored, as a registration under `_wake` is not an app's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from events import names
from events.envelope import Envelope
from events.payloads import ProjectCreated, ProjectRemoved, ProjectSpec, ProjectUpdated

PROJECT_TYPES = (
    ProjectCreated.event_type,
    ProjectUpdated.event_type,
    ProjectRemoved.event_type,
)


@dataclass
class Projects:
    """Defined projects by name, and where each last changed (its event's sequence)."""

    specs: dict[str, ProjectSpec] = field(default_factory=dict)
    changed_at: dict[str, int] = field(default_factory=dict)

    def add(self, seq: int, event: Envelope) -> str | None:
        """Fold one event in; the name of the project it changed, or None."""
        if event.app != names.SYSTEM_APP:
            return None
        payload = event.payload
        if isinstance(payload, ProjectCreated | ProjectUpdated):
            self.specs[payload.name] = payload.spec
        elif isinstance(payload, ProjectRemoved):
            self.specs.pop(payload.name, None)
        else:
            return None
        self.changed_at[payload.name] = seq
        return payload.name

    def fold(self, seq: int, event: Envelope) -> None:
        self.add(seq, event)
