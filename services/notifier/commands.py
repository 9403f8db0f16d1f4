"""Commands given in chat: what was asked, and whether it may be done. Pure.

`!wake approve PLAN` (Matrix; the same words come from Slack's `/wake` and
buttons) is parsed into a Command; the shell (`chatops`) looks up the plan or
the app in the log and asks `refusal` whether the requester may: a refusal is
the reason told in the thread and recorded as ChatCommandRefused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.catalog.plans import AWAITING_APPROVAL, SUPERSEDED
from services.projects.approvers import member_of

PREFIX = "!wake"

# A plan id may be given by a prefix this long or longer (a UUID's first 8 digits).
MIN_PLAN_PREFIX = 8

# A plan waiting longer than this is not approved from chat: the person clicking
# an old button most likely means a newer plan. The CLI can still approve it.
PLAN_EXPIRY = timedelta(days=7)

USAGE = (
    "commands: approve PLAN | reject PLAN REASON | rollback APP COMMIT|APPLY_ID | sync APP | "
    "status APP (PLAN: a plan id or its first 8+ characters)"
)

# Verbs that change something: only the app's approvers may give them.
DECIDING = frozenset(("approve", "reject", "rollback", "sync"))


class CommandError(ValueError):
    """Text that is no command; the message says what is expected."""


@dataclass(frozen=True, slots=True)
class Command:
    verb: str
    plan: str = ""
    app: str = ""
    target: str = ""
    reason: str = ""

    def __str__(self) -> str:
        words = [self.verb, self.plan or self.app, self.target, self.reason]
        return " ".join(w for w in words if w)


def is_command(text: str) -> bool:
    """Whether a chat message is addressed to Wake (`!wake ...`)."""
    return text.strip().split(maxsplit=1)[:1] == [PREFIX]


def parse(text: str) -> Command:
    """The command in `text` (with or without the leading `!wake`), or CommandError."""
    words = text.strip().split()
    if words[:1] == [PREFIX]:
        words = words[1:]
    if not words:
        raise CommandError(USAGE)
    verb, args = words[0].lower(), words[1:]
    if verb == "approve" and len(args) == 1:
        return Command(verb, plan=args[0])
    if verb == "reject" and len(args) >= 2:
        return Command(verb, plan=args[0], reason=" ".join(args[1:]))
    if verb == "reject" and len(args) == 1:
        raise CommandError("reject needs a reason: reject PLAN REASON")
    if verb == "rollback" and len(args) == 2:
        return Command(verb, app=args[0], target=args[1])
    if verb in ("sync", "status") and len(args) == 1:
        return Command(verb, app=args[0])
    raise CommandError(f"not understood: {' '.join(words)!r}; {USAGE}")


def resolve_plan(given: str, plan_ids: Iterable[str]) -> str:
    """The one plan id `given` is or starts; CommandError (unknown, ambiguous, too short)."""
    ids = set(plan_ids)
    if given in ids:
        return given
    if len(given) < MIN_PLAN_PREFIX:
        raise CommandError(
            f"plan {given!r}: give the plan id or at least its first {MIN_PLAN_PREFIX} characters"
        )
    matches = sorted(i for i in ids if i.startswith(given))
    if not matches:
        raise CommandError(f"unknown plan {given!r}")
    if len(matches) > 1:
        raise CommandError(f"plan {given!r} is ambiguous: {', '.join(m[:13] for m in matches)}")
    return matches[0]


@dataclass(frozen=True, slots=True)
class PlanFacts:
    """What the log says of a plan a command names."""

    plan_id: str
    app: str
    status: str
    created_at: datetime
    superseded_by: str = ""


def place_refusal(plan: PlanFacts, *, channel_serves: bool, thread_app: str = "") -> str | None:
    """Why a plan cannot be decided from this channel or thread, or None if it can."""
    if not channel_serves:
        return f"plan {plan.plan_id[:8]} is of app {plan.app!r}, which this channel does not serve"
    if thread_app and thread_app != plan.app:
        return (
            f"plan {plan.plan_id[:8]} is of app {plan.app!r}, not of this thread's {thread_app!r}"
        )
    return None


def state_refusal(plan: PlanFacts, *, now: datetime) -> str | None:
    """Why a plan cannot be approved or rejected any more, or None if it can."""
    if plan.status == SUPERSEDED:
        by = f" by {plan.superseded_by[:8]}" if plan.superseded_by else ""
        return f"plan {plan.plan_id[:8]} of {plan.app!r} is superseded{by}"
    if plan.status != AWAITING_APPROVAL:
        return f"plan {plan.plan_id[:8]} of {plan.app!r} is {plan.status}, not awaiting approval"
    if now - plan.created_at > PLAN_EXPIRY:
        days = PLAN_EXPIRY.days
        return (
            f"plan {plan.plan_id[:8]} of {plan.app!r} has expired (waiting for more than "
            f"{days} days); approve it with `wake approve` if it is still meant"
        )
    return None


def requester_refusal(
    requester: str,
    *,
    app: str,
    verb: str,
    approvers: Iterable[str],
    groups: Mapping[str, Iterable[str]],
) -> str | None:
    """Why `requester` may not give `verb` for `app`, or None if they may.

    Anyone in the room may ask for a status; the rest is for the approvers of
    the app and its project (`approvers`, pooled), in person or through a
    `group:NAME`. An app that names none accepts decisions from the CLI only.
    """
    if verb not in DECIDING:
        return None
    approvers = list(approvers)
    if not approvers:
        return f"app {app!r} names no approvers: only the CLI may {verb} it"
    if member_of(requester, approvers, groups) is None:
        return f"{requester} may not {verb} app {app!r}: its approvers are {', '.join(approvers)}"
    return None
