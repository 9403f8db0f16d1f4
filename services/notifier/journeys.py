"""A journey in chat: one thread per revision, its first message kept current. Pure.

A journey is every event of one correlation id (a commit's detection,
render, plan, approval, apply, health; a rollback's own). Its first event
routed to a chat channel opens a thread there; the later ones are replies in
that thread, and the first message is edited to say where the journey
stands. Which message opened which thread is recorded in NotificationSent
(`thread_id`), so `Threads` is rebuilt from the log after a restart.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from events.envelope import Envelope
from events.payloads import (
    ApplyFailed,
    ApplySucceeded,
    ApprovalRefused,
    ApprovalRequested,
    NotificationSent,
    PlanBlocked,
    RenderFailed,
)
from services.catalog.describe import describe, short

# A message's text stops here; the log has the rest.
TEXT_LIMIT = 1500


@dataclass(frozen=True, slots=True)
class ChatText:
    """A message as plain text and as HTML (Matrix's `formatted_body`)."""

    plain: str
    html: str


@dataclass(slots=True)
class Thread:
    """A journey's thread on one channel: its first message, and what it says of the journey."""

    root_id: str
    app: str
    commit: str = ""


@dataclass(slots=True)
class Threads:
    """Every journey's thread, by (channel, correlation id)."""

    by_journey: dict[tuple[str, str], Thread] = field(default_factory=dict)

    def get(self, channel: str, correlation_id: str) -> Thread | None:
        return self.by_journey.get((channel, correlation_id))

    def opened(self, channel: str, event: Envelope, root_id: str) -> Thread:
        thread = Thread(root_id=root_id, app=event.app, commit=commit_of(event))
        self.by_journey[(channel, event.correlation_id)] = thread
        return thread

    def remember(self, record: Envelope) -> None:
        """Fold a NotificationSent of a chat channel (its journey is the record's)."""
        sent = record.payload
        if isinstance(sent, NotificationSent) and sent.thread_id:
            key = (sent.channel, record.correlation_id)
            self.by_journey.setdefault(key, Thread(root_id=sent.thread_id, app=record.app))

    def journey_of_root(self, channel: str, root_id: str) -> tuple[str, Thread] | None:
        """The correlation id and thread whose first message is `root_id`."""
        for (name, correlation_id), thread in self.by_journey.items():
            if name == channel and thread.root_id == root_id:
                return correlation_id, thread
        return None


def commit_of(event: Envelope) -> str:
    return str(getattr(event.payload, "commit", "") or "")


def mark(event: Envelope) -> str:
    """A sign a person sees at a glance: done, failed, waiting for someone, under way."""
    p = event.payload
    if isinstance(p, ApplySucceeded):
        return "\u2705"
    if isinstance(p, ApplyFailed | RenderFailed | PlanBlocked | ApprovalRefused):
        return "\u274c"
    if isinstance(p, ApprovalRequested):
        return "\u270b"
    return "\u2022"


def event_text(event: Envelope, *, approve_hint: str = "") -> ChatText:
    """The message of one event in its journey's thread.

    `approve_hint` (for ApprovalRequested) tells how to approve on this
    platform, e.g. `!wake approve 01a2164a`.
    """
    line = _clip(describe(event))
    plain = f"{mark(event)} {event.app}: {line}"
    markup = f"{mark(event)} <b>{html.escape(event.app)}</b>: {html.escape(line)}"
    if approve_hint and isinstance(event.payload, ApprovalRequested):
        plain += f"\nApprove: {approve_hint}"
        markup += f"<br>Approve: <code>{html.escape(approve_hint)}</code>"
    return ChatText(plain, markup)


def root_text(event: Envelope, thread: Thread | None) -> ChatText:
    """The first message of a journey, saying where it stands after `event`."""
    app = thread.app if thread is not None else event.app
    commit = (thread.commit if thread is not None else "") or commit_of(event)
    title = f"{app} {short(commit)}".strip() if commit else app
    state = _clip(describe(event))
    return ChatText(
        f"Wake journey {title} \u2014 {mark(event)} {state}",
        f"Wake journey <b>{html.escape(title)}</b> \u2014 {mark(event)} {html.escape(state)}",
    )


def reply_text(text: str, *, done: bool) -> ChatText:
    """The answer to a command: done, or refused and why."""
    sign = "\u2705" if done else "\u26d4"
    return ChatText(f"{sign} {text}", f"{sign} {html.escape(text)}")


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[: TEXT_LIMIT - 1] + "\u2026"
