"""Fold application lifecycle events into the set of registered applications.

Pure: the shells feed it events read from the log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from events import names
from events.envelope import Envelope
from events.payloads import ApplicationRegistered, ApplicationRemoved, ApplicationUpdated, AppSpec

LIFECYCLE_TYPES = (
    ApplicationRegistered.event_type,
    ApplicationUpdated.event_type,
    ApplicationRemoved.event_type,
)


@dataclass(frozen=True, slots=True)
class Application:
    name: str
    spec: AppSpec
    registered_seq: int
    updated_seq: int


@dataclass
class Registry:
    """Registered applications by name, as of the last event folded in."""

    apps: dict[str, Application] = field(default_factory=dict)

    def apply(self, seq: int, event: Envelope) -> bool:
        """Fold one event in; True if it changed the registry."""
        payload = event.payload
        if event.app == names.SYSTEM_APP:
            # Reserved for Wake's own events: a registration there is forged.
            return False
        current = self.apps.get(event.app)
        if isinstance(payload, ApplicationRegistered):
            self.apps[event.app] = Application(event.app, payload.spec, seq, seq)
            return True
        if isinstance(payload, ApplicationUpdated) and current is not None:
            self.apps[event.app] = Application(event.app, payload.spec, current.registered_seq, seq)
            return True
        if isinstance(payload, ApplicationRemoved) and current is not None:
            del self.apps[event.app]
            return True
        return False


def current_spec(
    registered: tuple[int, Envelope] | None,
    updated: tuple[int, Envelope] | None,
    removed: tuple[int, Envelope] | None,
) -> AppSpec | None:
    """An app's spec from its last Registered, Updated and Removed events (seq, event)."""
    if registered is None:
        return None
    latest = max((e for e in (registered, updated, removed) if e is not None), key=lambda e: e[0])
    if isinstance(latest[1].payload, ApplicationRemoved):
        return None
    if updated is not None and updated[0] > registered[0]:
        return updated[1].payload.spec
    return registered[1].payload.spec


def fold_spec(spec: AppSpec | None, event: Envelope) -> AppSpec | None:
    """An app's spec once `event` (of LIFECYCLE_TYPES, folded in log order) is in: as
    `Registry.apply` has it, for a follower that keeps each app's spec beside its state."""
    payload = event.payload
    if event.app == names.SYSTEM_APP:
        return spec
    if isinstance(payload, ApplicationRegistered):
        return payload.spec
    if isinstance(payload, ApplicationUpdated):
        return payload.spec if spec is not None else None
    if isinstance(payload, ApplicationRemoved):
        return None
    return spec
