"""One readable line per event, for `wake events tail`, timelines and messages. Pure."""

from __future__ import annotations

from events.envelope import Envelope
from events.payloads import (
    ApplicationRegistered,
    ApplicationRemoved,
    ApplicationUpdated,
    ApplyFailed,
    ApplyRetryScheduled,
    ApplyStarted,
    ApplySucceeded,
    ApprovalAccepted,
    ApprovalRefused,
    ApprovalRequested,
    ChatCommandRefused,
    DriftDetected,
    EventRejected,
    HealthChanged,
    ManifestsRendered,
    NotificationFailed,
    NotificationSent,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    PlanRejected,
    PlanSuperseded,
    ProjectCreated,
    ProjectRemoved,
    ProjectUpdated,
    RenderFailed,
    ResourceApplied,
    ResourceDeleted,
    RevisionDetected,
    RollbackRequested,
    SourceFailed,
    SourceRecovered,
    SyncRequested,
)
from services.catalog.plans import blocked_line, summary

# A failure is status only until the step it failed succeeds again; then it
# is history (`wake events tail`, `wake history`), no longer the app's news.
OVERTAKEN_BY = {
    "ApplyFailed": "ApplySucceeded",
    "RenderFailed": "ManifestsRendered",
    "SourceFailed": "SourceRecovered",
}


def standing(latest: dict[str, int]) -> set[str]:
    """The types in `latest` ({event type: seq of its last event}) no success has overtaken."""
    return {
        event_type
        for event_type, seq in latest.items()
        if latest.get(OVERTAKEN_BY.get(event_type, ""), 0) < seq
    }


def decided_by(actor: str, via: str) -> str:
    """By whom, and how: "by alice via cli"; "by policy" alone when the policy decided."""
    return f"by {actor}" if not via or via == actor else f"by {actor} via {via}"


def short(commit: str | None) -> str:
    return (commit or "")[:7]


def _in_chat(p: PlanApproved | PlanRejected) -> str:
    return f" ({p.display_name} in {p.channel})" if p.display_name and p.channel else ""


def describe(event: Envelope) -> str:
    """What the event says, in a line a person reads."""
    p = event.payload
    match p:
        case ApplicationRegistered():
            policy = "auto-sync" if p.spec.auto_sync else "manual"
            return f"registered {p.spec.repo_url} path {p.spec.path} ref {p.spec.ref} ({policy})"
        case ApplicationUpdated():
            return f"updated: {', '.join(p.changed) or 'spec'}"
        case ApplicationRemoved():
            return f"removed{': ' + p.reason if p.reason else ''}"
        case SyncRequested():
            return "sync requested" + (" (resume)" if p.resume else "")
        case RevisionDetected():
            first_line = p.message.splitlines()[0] if p.message else ""
            return f"commit {short(p.commit)} by {p.author}: {first_line} [{p.trigger}]"
        case ManifestsRendered():
            bundle = p.bundle_digest[:12]
            if p.unchanged_from:
                return (
                    f"rendered {short(p.commit)}: {len(p.resources)} resources, unchanged from "
                    f"{short(p.unchanged_from)} (applied): nothing to plan"
                )
            return f"rendered {short(p.commit)}: {len(p.resources)} resources, bundle {bundle}"
        case RenderFailed():
            where = (
                f" at {p.location}" if p.line is not None else (f" in {p.file}" if p.file else "")
            )
            return f"render of {short(p.commit)} failed{where}: {p.reason}"
        case PlanCreated():
            return f"plan {p.plan_id[:8]} for {short(p.commit)}: {summary(p)}"
        case PlanSuperseded():
            if p.commit:
                return (
                    f"revision {short(p.commit)} not planned: superseded by plan "
                    f"{p.superseded_by[:8]} of a revision detected after it"
                )
            return f"plan {p.plan_id[:8]} superseded by {p.superseded_by[:8]}"
        case ApprovalRequested():
            return f"plan {p.plan_id[:8]} awaits approval: {p.summary}"
        case PlanApproved():
            return f"plan {p.plan_id[:8]} approved via {p.via}{_in_chat(p)}"
        case PlanRejected():
            return f"plan {p.plan_id[:8]} rejected via {p.via}{_in_chat(p)}: {p.reason}"
        case ChatCommandRefused():
            who = f"{p.display_name} ({p.requester})" if p.display_name else p.requester
            return f"{who} asked `{p.command}` in {p.channel or 'chat'}: refused: {p.reason}"
        case ApplyStarted():
            rollback = f" (rollback to apply {p.rollback_of[:8]})" if p.rollback_of else ""
            retry = f" (try {p.attempt})" if p.attempt > 1 else ""
            return f"apply {p.apply_id[:8]} of {short(p.commit)} started{rollback}{retry}"
        case ResourceApplied():
            return f"{p.action} {p.ref}"
        case ApplySucceeded():
            return f"applied {short(p.commit)}: {len(p.inventory)} resources"
        case ApplyFailed():
            at = f" at {p.resource}" if p.resource else ""
            retry = f" (try {p.attempt})" if p.attempt > 1 else ""
            return f"apply {p.apply_id[:8]} failed{at}{retry}: {p.error}"
        case HealthChanged():
            return f"health {p.status}"
        case DriftDetected():
            return f"drift in {len(p.resources)} resources"
        case RollbackRequested():
            target = short(p.commit) if p.commit else p.target
            return f"rollback to {target} requested" + (f": {p.reason}" if p.reason else "")
        case NotificationSent():
            tries = f"{p.attempts} attempt" + ("s" if p.attempts != 1 else "")
            return f"notified {p.channel} of {p.about_type} ({tries})"
        case NotificationFailed():
            return f"notifying {p.channel} of {p.about_type} failed after {p.attempts}: {p.error}"
        case PlanBlocked():
            return blocked_line(p.plan_id, p.errors)
        case EventRejected():
            return f"{p.consumer} rejected seq {p.stream_seq} ({p.subject}): {p.error}"
        case ApplyRetryScheduled():
            return (
                f"try {p.attempt} of plan {p.plan_id[:8]} due at {p.due_at:%H:%M:%S} "
                f"(in {p.delay_seconds:g}s, after apply {p.after_apply_id[:8]} failed)"
            )
        case ResourceDeleted():
            why = f": {p.reason}" if p.reason else ""
            return f"{p.action} {p.ref} (app removed with --cascade){why}"
        case SourceFailed():
            return f"source unreadable ({p.stage}): {p.error}"
        case SourceRecovered():
            at = f" at {short(p.commit)}" if p.commit else ""
            return f"source {p.repo_url} ref {p.ref} readable again{at}"
        case ApprovalAccepted():
            return f"approval of plan {p.plan_id[:8]} by {p.approver} accepted: {p.reason}"
        case ApprovalRefused():
            return f"approval of plan {p.plan_id[:8]} by {p.approver} refused: {p.reason}"
        case ProjectCreated():
            return f"project {p.name} defined"
        case ProjectUpdated():
            return f"project {p.name} updated: {', '.join(p.changed) or 'rules'}"
        case ProjectRemoved():
            return f"project {p.name} removed{': ' + p.reason if p.reason else ''}"
    return event.type
