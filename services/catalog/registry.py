"""Fold application lifecycle events into the set of registered applications.

Pure: the shells feed it events read from the log. The projects are folded
too (`services/projects/book.py`): a change to a project counts as a change
of every app in it (its `updated_seq` moves), so the app is checked again
under the new rules, as after `wake app set`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from events import names
from events.envelope import Envelope
from events.payloads import ApplicationRegistered, ApplicationRemoved, ApplicationUpdated, AppSpec
from services.projects.book import PROJECT_TYPES, Projects
from services.projects.rules import DEFAULT_PROJECT

LIFECYCLE_TYPES = (
    ApplicationRegistered.event_type,
    ApplicationUpdated.event_type,
    ApplicationRemoved.event_type,
)
# What a registry folds: the apps' lifecycle and the projects.
REGISTRY_TYPES = (*LIFECYCLE_TYPES, *PROJECT_TYPES)


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
    projects: Projects = field(default_factory=Projects)

    def in_project(self, project: str) -> list[str]:
        """The names of the apps in `project`."""
        return [
            app.name
            for app in self.apps.values()
            if (app.spec.project or DEFAULT_PROJECT) == project
        ]

    def changed_by(self, seq: int, event: Envelope) -> list[str]:
        """Fold one event in; the names of the apps it changed (a project's: all of them)."""
        if event.type in PROJECT_TYPES:
            project = self.projects.add(seq, event)
            if project is None:
                return []
            changed = self.in_project(project)
            for name in changed:
                app = self.apps[name]
                self.apps[name] = Application(name, app.spec, app.registered_seq, seq)
            return changed
        return [event.app] if self.apply(seq, event) else []

    def apply(self, seq: int, event: Envelope) -> bool:
        """Fold one event in; True if it changed the registry."""
        if event.type in PROJECT_TYPES:
            return self.projects.add(seq, event) is not None
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
