"""`wake sync`, `wake plans`, `wake approve`, `wake reject`: commands given as events."""

from __future__ import annotations

import asyncio
import sys

import click
import msgspec

from events import names, new_event
from events.envelope import Envelope
from events.payloads import (
    ApprovalAccepted,
    ApprovalRefused,
    SyncRequested,
)
from services.catalog import deciding, lookup
from services.catalog.describe import decided_by
from services.catalog.plans import BLOCKED, PlanView, summary
from services.cli.connecting import (
    checked_app_name,
    connected,
    data_dir_option,
    run,
    settings_for,
)
from services.wiring import telemetry
from services.wiring.eventlog import EventLog


@click.command()
@data_dir_option
@click.argument("name")
@click.option("--reason", default="", help="Why, for the record.")
@click.option(
    "--resume",
    is_flag=True,
    help="End a rollback's pin: detect the ref's current commit again, even if unchanged, "
    "and let auto-sync move the app forward to it. (A failed app needs no --resume.)",
)
def sync(data_dir: str, name: str, reason: str, resume: bool) -> None:
    """Check application NAME's source now instead of at the next poll.

    If NAME's last apply failed (its retries ran out, or are still pending),
    its current revision is planned and applied again, through its approval
    policy, even if the source did not change.
    """
    name = checked_app_name(name)

    async def request() -> None:
        async with connected(settings_for(data_dir)) as log:
            if await lookup.app_spec(log, name) is None:
                raise click.ClickException(f"no application {name!r} is registered")
            event = new_event(
                SyncRequested(reason=reason, resume=resume),
                app=name,
                actor=log.actor,
                traceparent=telemetry.traceparent(),
            )
            appended = await log.append(event)
        what = "sync (resume)" if resume else "sync"
        click.echo(f"{what} of {name} requested (event {event.event_id}, seq {appended.seq})")

    run(request())


@click.command()
@data_dir_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per plan.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def plans(data_dir: str, name: str, as_json: bool, limit: int) -> None:
    """List application NAME's plans, newest first, with their diffs."""
    name = checked_app_name(name)

    async def show() -> None:
        async with connected(settings_for(data_dir)) as log:
            if await lookup.app_spec(log, name) is None:
                raise click.ClickException(f"no application {name!r} is registered")
            views = sorted((await lookup.app_plans(log, name)).values(), key=lambda v: -v.seq)
        views = views[:limit]
        if as_json:
            for view in views:
                sys.stdout.buffer.write(msgspec.json.encode(_as_json(view)) + b"\n")
            return
        if not views:
            click.echo(f"{name} has no plans yet")
        for view in views:
            _print_plan(view)

    run(show())


def _as_json(view: PlanView) -> dict:
    return {
        "plan_id": view.plan_id,
        "app": view.app,
        "status": view.status,
        "seq": view.seq,
        "created_at": view.created_at,
        "commit": view.plan.commit,
        "bundle_digest": view.plan.bundle_digest,
        "reason": view.plan.reason,
        "summary": summary(view.plan),
        "changes": msgspec.to_builtins(view.plan.changes),
        "prune": msgspec.to_builtins(view.plan.prune),
        "decided_by": view.decided_by or None,
        "decided_via": view.decided_via or None,
        "decided_at": view.decided_at,
        "rejection_reason": view.reason or None,
        "apply_id": view.apply_id or None,
        "error": view.error or None,
        "blocked_by": msgspec.to_builtins(view.blocked_by),
    }


def _print_plan(view: PlanView) -> None:
    created = view.created_at.strftime("%Y-%m-%d %H:%M:%S")
    click.echo(
        f"plan {view.plan_id}  {view.status}  commit {view.plan.commit[:7]}  {created}  "
        f"{summary(view.plan)}"
    )
    if view.decided_by:
        how = f"{view.status} {decided_by(view.decided_by, view.decided_via)}"
        click.echo(f"  {how}" + (f": {view.reason}" if view.reason else ""))
    if view.error:
        click.echo(f"  error: {view.error}")
    if view.status == BLOCKED:
        click.echo(
            f"  blocked: {len(view.blocked_by)} resource(s) cannot be applied, so nothing is; "
            "a new commit that fixes them plans again"
        )
    for change in view.plan.changes:
        if change.action == "unchanged" and not change.error:
            continue
        # A hook is created afresh at every sync, in its phase: say so.
        runs = f"  ({change.hook} hook, wave {change.wave})" if change.hook else ""
        click.echo(f"  {change.action:<9} {change.ref}{runs}")
        if change.error:
            click.echo(f"      error: {change.error}")
        for line in change.diff.splitlines():
            click.echo(f"      {line}")
    for ref in view.plan.prune:
        click.echo(f"  {'prune':<9} {ref}")


async def _await_verdict(
    log: EventLog, approval: Envelope, *, after_seq: int, timeout: float
) -> None:
    """Tell the person the planner's verdict on their approval (projects/approving.py).

    Refused: a click error naming why (the approval is never applied). No
    verdict within `timeout` seconds: say so; the planner decides when it runs.
    """
    app = approval.app
    plan_id = approval.payload.plan_id
    subjects = [
        names.subject(app, ApprovalAccepted.event_type),
        names.subject(app, ApprovalRefused.event_type),
    ]
    try:
        async with asyncio.timeout(timeout):
            async for stored in log.read(subjects=subjects, from_seq=after_seq + 1, follow=True):
                verdict = stored.event.payload
                if not isinstance(verdict, ApprovalAccepted | ApprovalRefused):
                    continue
                if verdict.approval_id != approval.event_id:
                    continue
                if isinstance(verdict, ApprovalRefused):
                    raise click.ClickException(
                        f"approval of plan {plan_id} of {app} refused: {verdict.reason} "
                        f"(event {stored.event.event_id}); nothing is applied"
                    )
                click.echo(
                    f"plan {plan_id} of {app} approved (event {approval.event_id}): "
                    f"{verdict.reason}"
                )
                return
    except TimeoutError:
        click.echo(
            f"plan {plan_id} of {app} approved (event {approval.event_id}); the planner has not "
            f"checked who approved within {timeout:.0f}s: see `wake plans {app}`"
        )


async def _decide(
    data_dir: str, plan_id: str, decision: str, reason: str, wait: float = 0.0
) -> None:
    async with connected(settings_for(data_dir)) as log:
        try:
            event, seq, view = await deciding.decide(
                log, plan_id, decision, actor=log.actor, via="cli", reason=reason
            )
        except deciding.DecisionRefused as exc:
            raise click.ClickException(str(exc)) from None
        if decision == "approve" and wait > 0:
            await _await_verdict(log, event, after_seq=seq, timeout=wait)
            return
        verb = "approved" if decision == "approve" else "rejected"
        click.echo(f"plan {plan_id} of {view.app} {verb} by {log.actor} (event {event.event_id})")


@click.command()
@data_dir_option
@click.argument("plan_id")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the planner to check that you may approve (0: do not wait).",
)
def approve(data_dir: str, plan_id: str, wait: float) -> None:
    """Approve plan PLAN_ID: the applier applies it once the planner accepts the approver.

    An app (or its project) with approvers accepts only theirs; with
    --separate-approver, never the commit's author. A refused approval is
    recorded (ApprovalRefused), never applied, and this command fails saying why.
    """
    run(_decide(data_dir, plan_id, "approve", "", wait))


@click.command()
@data_dir_option
@click.argument("plan_id")
@click.option("--reason", required=True, help="Why the plan is rejected.")
def reject(data_dir: str, plan_id: str, reason: str) -> None:
    """Reject plan PLAN_ID: nothing of it is applied."""
    run(_decide(data_dir, plan_id, "reject", reason))
