"""Carrying out commands given in chat, or refusing them on the record.

A request is a person (as the platform names them: `matrix:@ana:example.org`)
asking for a command (`commands.parse`) in a channel of the notify file. It is
checked against the log as it stands (the plan's state, the app's approvers
and its project's, the groups of the notify file) by `commands`; then either
the command's event is appended with the person as its actor -- signed by the
notifier's key, which vouches for the chat platforms' people -- or a
ChatCommandRefused says who asked what and why not. Either way the person
gets a reply.

Decisions on a plan are appended conditionally on the app's position read
with the plan, as `wake approve` does: a plan superseded meanwhile conflicts,
and the request is judged again on the new state. An event's id is derived
from the platform's message id, so the same message (a redelivered request)
never approves twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from events import names
from events.envelope import Envelope, derived_event_id, new_event, now
from events.payloads import (
    ApplySucceeded,
    ChatCommandRefused,
    PlanApproved,
    PlanCreated,
    PlanRejected,
    RollbackRequested,
    SyncRequested,
)
from services.catalog import lookup
from services.catalog.revisions import RevisionNotApplied, applied_revisions, find_applied
from services.notifier import commands
from services.notifier.notifyfile import NotifyConfig
from services.projects.rules import Missing, project_of
from services.wiring.conflicts import after_conflict
from services.wiring.eventlog import ConcurrencyConflict, EventLog

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    """A command as a platform handed it over, its sender already authenticated by it."""

    channel: str
    requester: str
    text: str
    message_ref: str
    display_name: str = ""
    thread_app: str = ""
    """The app of the journey whose thread the command was given in, if any."""
    wrong_place: str = ""
    """Why the platform's request came from somewhere this channel does not listen to."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What the requester is told; `about` is the event the command concerned (for its thread)."""

    text: str
    done: bool
    about: Envelope | None = None
    app: str = ""


class Refused(Exception):
    def __init__(self, reason: str, *, app: str = "", plan_id: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.app = app
        self.plan_id = plan_id


class ChatOps:
    """Commands from every chat channel, against one log."""

    def __init__(
        self, log: EventLog, config: NotifyConfig, *, system_namespace: str, refuser: str
    ) -> None:
        self._log = log
        self._config = config
        self._system_namespace = system_namespace
        self._refuser = refuser

    async def handle(self, request: Request) -> Reply:
        """Carry out `request` or record why not; never raises for a bad request."""
        if request.wrong_place:
            return await self._refuse(
                request, Refused(request.wrong_place), command_text=request.text
            )
        try:
            command = commands.parse(request.text)
        except commands.CommandError as exc:
            return await self._refuse(request, Refused(str(exc)), command_text=request.text)
        try:
            return await self._carry_out(request, command)
        except Refused as refusal:
            return await self._refuse(request, refusal, command_text=str(command))

    async def refuse_replay(self, request: Request) -> Reply:
        """Record that a request was taken before and is not carried out again (once per
        original request, however often it is replayed), under the app it names."""
        app, plan_id = "", ""
        try:
            command = commands.parse(request.text)
            if command.plan:
                plan_id = commands.resolve_plan(command.plan, await self._plan_ids(command.plan))
                app = (await lookup.find_plan(self._log, plan_id))[0].app
            elif _valid_app(command.app) and await lookup.app_spec(self._log, command.app):
                app = command.app
        except (commands.CommandError, lookup.PlanNotFound):
            pass
        return await self._refuse(
            request,
            Refused(
                "a replayed request (taken before): not carried out again",
                app=app,
                plan_id=plan_id,
            ),
            command_text=request.text,
            key="replay",
        )

    async def _carry_out(self, request: Request, command: commands.Command) -> Reply:
        if command.verb in ("approve", "reject"):
            return await self._decide(request, command)
        app = command.app
        if not _valid_app(app) or await lookup.app_spec(self._log, app) is None:
            raise Refused(f"no application {app!r}")
        if not self._config.serves(request.channel, app):
            raise Refused(f"app {app!r} is not served by this channel", app=app)
        if command.verb == "status":
            return Reply(await self._status(app), done=True, app=app)
        await self._check_requester(request, app, command.verb)
        by = _who(request)
        reason = f"from chat: {by} in {request.channel}"
        if command.verb == "sync":
            event = new_event(
                SyncRequested(reason=reason),
                app=app,
                actor=request.requester,
                event_id=self._derived(request, SyncRequested.event_type),
            )
            await self._log.append(event)
            return Reply(f"sync of {app} requested by {by}", done=True, app=app)
        # As `wake rollback`: on the app's position, again if anything landed meanwhile (its
        # notifications, a health check) -- the same message always makes the same event.
        for attempt in range(5):
            position = await self._log.app_position(app)
            applied = applied_revisions(
                await lookup.app_events(self._log, app, [ApplySucceeded.event_type])
            )
            try:
                revision = find_applied(app, applied, command.target)
            except RevisionNotApplied as exc:
                raise Refused(str(exc), app=app) from None
            event = new_event(
                RollbackRequested(
                    target=command.target,
                    reason=reason,
                    apply_id=revision.apply.apply_id,
                    commit=revision.apply.commit,
                    bundle_digest=revision.apply.bundle_digest,
                ),
                app=app,
                actor=request.requester,
                event_id=self._derived(request, RollbackRequested.event_type),
            )
            try:
                await self._log.append(event, expected_last_seq=position)
                break
            except ConcurrencyConflict:
                await after_conflict(attempt)
        else:
            raise Refused(f"{app} kept changing while requesting the rollback; ask again", app=app)
        return Reply(
            f"rollback of {app} to {revision.apply.commit[:7]} (apply "
            f"{revision.apply.apply_id[:8]}) requested by {by}",
            done=True,
            about=event,
            app=app,
        )

    async def _decide(self, request: Request, command: commands.Command) -> Reply:
        try:
            plan_id = commands.resolve_plan(command.plan, await self._plan_ids(command.plan))
        except commands.CommandError as exc:
            raise Refused(str(exc)) from None
        for attempt in range(5):
            try:
                view, position = await lookup.find_plan(self._log, plan_id)
            except lookup.PlanNotFound:
                raise Refused(f"unknown plan {command.plan!r}") from None
            facts = commands.PlanFacts(
                plan_id=plan_id,
                app=view.app,
                status=view.status,
                created_at=view.created_at,
            )
            # Where first, then who (a stranger learns nothing of the plan), then its state.
            why = commands.place_refusal(
                facts,
                channel_serves=self._config.serves(request.channel, view.app),
                thread_app=request.thread_app,
            )
            if why:
                raise Refused(why, app=view.app, plan_id=plan_id)
            await self._check_requester(request, view.app, command.verb, plan_id=plan_id)
            why = commands.state_refusal(facts, now=now())
            if why:
                raise Refused(why, app=view.app, plan_id=plan_id)
            payload: PlanApproved | PlanRejected
            if command.verb == "approve":
                payload = PlanApproved(
                    plan_id=plan_id,
                    via="chat",
                    display_name=request.display_name,
                    channel=request.channel,
                    message_ref=request.message_ref,
                )
            else:
                payload = PlanRejected(
                    plan_id=plan_id,
                    reason=command.reason,
                    via="chat",
                    display_name=request.display_name,
                    channel=request.channel,
                    message_ref=request.message_ref,
                )
            event = new_event(
                payload,
                app=view.app,
                actor=request.requester,
                cause=view.event,
                key=f"{request.requester}@{request.message_ref}",
            )
            try:
                await self._log.append(event, expected_last_seq=position)
            except ConcurrencyConflict:
                await after_conflict(attempt)
                continue
            verb = "approved" if command.verb == "approve" else "rejected"
            then = (
                "; the planner checks the approvers, then the applier applies it"
                if command.verb == "approve"
                else ""
            )
            return Reply(
                f"plan {plan_id[:8]} of {view.app} {verb} by {_who(request)}{then}",
                done=True,
                about=view.event,
                app=view.app,
            )
        raise Refused(f"plan {plan_id[:8]}: its app kept changing; ask again", plan_id=plan_id)

    async def _check_requester(
        self, request: Request, app: str, verb: str, *, plan_id: str = ""
    ) -> None:
        spec = await lookup.app_spec(self._log, app)
        if spec is None:
            raise Refused(f"no application {app!r}", plan_id=plan_id)
        projects = await lookup.load_projects(self._log)
        project = project_of(spec, projects.specs, system_namespace=self._system_namespace)
        pooled = list(spec.approvers)
        if not isinstance(project, Missing):
            pooled += [a for a in project.spec.approvers if a not in pooled]
        why = commands.requester_refusal(
            request.requester,
            app=app,
            verb=verb,
            approvers=pooled,
            groups=self._config.groups,
        )
        if why:
            raise Refused(why, app=app, plan_id=plan_id)

    async def _plan_ids(self, given: str) -> list[str]:
        """Ids of every plan starting with `given` (a command's one scan of the plans)."""
        found = []
        needle = given.encode()
        async for stored in self._log.read(subjects=[names.type_subjects(PlanCreated.event_type)]):
            payload = stored.event.payload
            if isinstance(payload, PlanCreated) and payload.plan_id.encode().startswith(needle):
                found.append(payload.plan_id)
        return found

    async def _status(self, app: str) -> str:
        plans = await lookup.app_plans(self._log, app)
        applied = await self._log.last_event(app, ApplySucceeded.event_type)
        lines = [f"{app}:"]
        if applied is not None and isinstance(applied.event.payload, ApplySucceeded):
            done = applied.event.payload
            lines.append(
                f"applied {done.commit[:7]} (apply {done.apply_id[:8]}) at "
                f"{applied.event.occurred_at:%Y-%m-%d %H:%M:%S} UTC"
            )
        else:
            lines.append("nothing applied yet")
        if plans:
            latest = max(plans.values(), key=lambda v: v.seq)
            lines.append(
                f"latest plan {latest.plan_id[:8]} for {latest.plan.commit[:7]}: {latest.status}"
            )
        return " ".join(lines)

    def _derived(self, request: Request, event_type: str, key: str = "") -> str:
        return derived_event_id(f"{request.channel}/{request.message_ref}", event_type, key)

    async def _refuse(
        self, request: Request, refusal: Refused, *, command_text: str, key: str = ""
    ) -> Reply:
        app = refusal.app if _valid_app(refusal.app) else names.SYSTEM_APP
        event = new_event(
            ChatCommandRefused(
                requester=request.requester,
                command=command_text.strip()[:200],
                reason=refusal.reason,
                display_name=request.display_name,
                channel=request.channel,
                message_ref=request.message_ref,
                plan_id=refusal.plan_id,
            ),
            app=app,
            actor=self._refuser,
            event_id=self._derived(request, ChatCommandRefused.event_type, key),
        )
        await self._log.append(event)
        log.info(
            "%s: refused %r from %s: %s", request.channel, command_text, request.requester, refusal
        )
        return Reply(f"refused: {refusal.reason}", done=False, app=refusal.app)


def _who(request: Request) -> str:
    if request.display_name:
        return f"{request.display_name} ({request.requester})"
    return request.requester


def _valid_app(name: str) -> bool:
    try:
        names.app_name(name)
    except names.InvalidName:
        return False
    return True
