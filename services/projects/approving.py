"""Who may approve a plan: the verdict on a person's PlanApproved. Pure.

A person's approval (any PlanApproved the planner did not append itself by
policy) is checked here, whatever the channel that appended it (CLI, API,
chat): the approver is the event's `actor` -- the identity that appended it --
never a field a client fills in.

1. The app's approvers and its project's are pooled. None anywhere: any
   operator may approve through the CLI (Wake's behaviour before approvers
   existed), and nobody from chat.
2. Otherwise the actor must be one of them, or a member of a `group:NAME`
   among them (groups come from the notify file, `WAKE_NOTIFY_CONFIG`, which
   the planner reads at start like the notifier).
3. With `separate_approver` (on the app or its project) the actor must not be
   the author of the commit the plan is for. A person's identity `user:ana`
   is that author when `ana` equals (case-insensitively) the commit's author
   email, the part of it before `@`, or the author name. An author the log
   does not know (no RevisionDetected of that commit) is refused: it cannot be
   told apart.

The verdict is an event (ApprovalAccepted or ApprovalRefused); the applier
applies a person's approval only once it is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from events import ownership
from events.envelope import Envelope
from events.payloads import AppSpec, PlanApproved
from services.projects.approvers import member_of
from services.projects.rules import Missing, Project

# Who appends policy approvals: the planner's signing identity (services/wiring/signing).
PLANNER = "service:planner"


@dataclass(frozen=True, slots=True)
class Author:
    """Who wrote a commit, as its RevisionDetected says."""

    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str


def by_policy(approval: Envelope) -> bool:
    """Whether `approval` is the planner's own, by policy: it needs no verdict."""
    payload = approval.payload
    return (
        isinstance(payload, PlanApproved) and payload.via == "policy" and approval.actor == PLANNER
    )


def person_of(actor: str) -> str:
    """The name part of an identity: `ana` of `user:ana`."""
    return actor.partition(":")[2] if ":" in actor else actor


def wrote(actor: str, author: Author) -> bool:
    """Whether the person `actor` is `author` (see rule 3)."""
    who = person_of(actor).casefold()
    if not who:
        return False
    email = author.email.casefold()
    return who in {email, email.partition("@")[0], author.name.casefold()} - {""}


def verdict(
    *,
    approver: str,
    app: str,
    spec: AppSpec | None,
    project: Project | Missing | None,
    commit: str,
    author: Author | None,
    groups: Mapping[str, Iterable[str]] | None = None,
) -> Verdict:
    """Whether `approver` may approve `app`'s plan for `commit` (see the module docstring)."""
    if spec is None:
        return Verdict(False, f"app {app!r} is not registered")
    if isinstance(project, Missing):
        return Verdict(False, f"app {app!r} is in no project that exists: {project}")
    project_approvers = list(project.spec.approvers) if project is not None else []
    project_name = project.name if project is not None else ""
    approvers = [*spec.approvers, *(a for a in project_approvers if a not in spec.approvers)]
    groups = groups or {}
    by_app = member_of(approver, spec.approvers, groups)
    by_project = member_of(approver, project_approvers, groups)
    # With no approvers named, chat people may not approve (issue 12's contract: the
    # CLI only); an API token may, its role and apps having been checked by the api
    # (services/api/access.py) as an operator's key is by being registered.
    if not approvers and ownership.vouched_namespace(approver) not in (None, "token"):
        return Verdict(
            False,
            f"app {app!r} and its project {project_name!r} name no approvers: only the CLI may "
            f"approve, not {approver}",
        )
    if not approvers:
        why = f"app {app!r} and its project {project_name!r} name no approvers: any operator "
        why += "may approve"
    elif by_app is not None:
        why = f"{approver} is an approver of app {app!r}"
        if by_app != approver:
            why += f" (in {by_app})"
    elif by_project is not None:
        why = f"{approver} is an approver of project {project_name!r}"
        if by_project != approver:
            why += f" (in {by_project})"
    else:
        return Verdict(
            False,
            f"{approver} may not approve plans of app {app!r}: the approvers of the app and "
            f"of its project {project_name!r} are {', '.join(approvers)}",
        )
    separate = spec.separate_approver or (project is not None and project.spec.separate_approver)
    if separate:
        whose = "app" if spec.separate_approver else f"project {project_name!r}"
        if author is None:
            return Verdict(
                False,
                f"the author of commit {commit[:12]} is not in the log, and {whose} wants a "
                "separate approver (--separate-approver)",
            )
        if wrote(approver, author):
            return Verdict(
                False,
                f"{approver} wrote commit {commit[:12]} ({author}), and {whose} wants a "
                "separate approver (--separate-approver)",
            )
        why += f"; not the author of commit {commit[:12]} ({author})"
    return Verdict(True, why)
