"""The JSON REST API under `/api/v1`, its authentication, and RFC 9457 problem details.

Every path needs a token: `Authorization: Bearer TOKEN`, or the session cookie
the web UI's login sets. Viewers read; approvers approve, reject and sync the
apps their glob covers; admins do everything. Commands are appended to the log
signed by the api's key, which vouches for `token:<name>`: the token's name is
the actor, and the planner judges an approval by it as by anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from events import names, new_event
from events.payloads import BY_TYPE, ApplySucceeded, RollbackRequested, SyncRequested
from services.api import access
from services.api.queries import Reads
from services.catalog import deciding, lookup, tracing
from services.catalog.describe import describe
from services.catalog.revisions import RevisionNotApplied, applied_revisions, find_applied
from services.projector.journeys import moment
from services.projector.replaying import fold_app
from services.wiring import telemetry
from services.wiring.conflicts import after_conflict
from services.wiring.eventlog import ConcurrencyConflict, EventLog
from services.wiring.settings import Settings
from services.wiring.spanstore import read_trace, span_rows

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
SESSION_COOKIE = "wake_session"
SESSION_LIFETIME = 12 * 3600.0
CONSOLE_ADMIN = "console"
"""The name the one-time login link's session acts under (`token:console`, an admin)."""

PRINCIPAL = web.AppKey("principal", object)
CONSOLE = web.AppKey("console", object)


def problem(status: int, title: str, detail: str = "", **extra: Any) -> web.Response:
    """An RFC 9457 problem details response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="wake"'
    if "retry_after" in extra:
        headers["Retry-After"] = str(int(extra["retry_after"]) + 1)
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/problem+json",
        headers=headers,
    )


class Problem(Exception):
    def __init__(self, status: int, title: str, detail: str = "") -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail


@dataclass
class Session:
    principal: access.Principal
    digest: str
    csrf: str
    expires: float


@dataclass
class Console:
    """The state one api process holds: reads, the log, sessions, the login limit."""

    reads: Reads
    log: EventLog
    settings: Settings = field(default_factory=Settings)
    login_digest: str = ""
    login_marker: Path | None = None
    """Where the use of the one-time login key is recorded, so a restarted api refuses it too."""
    clock: Callable[[], float] = time.monotonic
    sessions: dict[str, Session] = field(default_factory=dict)
    limiter: access.LoginLimiter = field(init=False)
    login_used: bool = False

    def __post_init__(self) -> None:
        self.limiter = access.LoginLimiter(clock=self.clock)
        if self.login_marker is not None and self.login_digest:
            with contextlib.suppress(OSError):
                self.login_used = self.login_marker.read_text().strip() == self.login_digest

    async def by_token(self, token: str) -> access.Principal | None:
        if not access.well_formed(token):
            return None
        row = await self.reads.token(access.digest(token))
        if row is None or not access.matches(token, row["digest"]):
            return None
        return access.Principal(name=row["name"], role=row["role"], apps=row["apps"])

    def open_session(self, principal: access.Principal, digest: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(
            principal=principal,
            digest=digest,
            csrf=secrets.token_urlsafe(24),
            expires=self.clock() + SESSION_LIFETIME,
        )
        self.sessions[sid] = session
        return sid, session

    async def session(self, sid: str) -> Session | None:
        """The live session `sid`: not expired, and its token neither revoked nor replaced."""
        session = self.sessions.get(sid)
        if session is None:
            return None
        if session.expires < self.clock():
            self.sessions.pop(sid, None)
            return None
        if session.principal.name != CONSOLE_ADMIN or session.digest:
            row = await self.reads.token_by_name(session.principal.name)
            if row is None or row["digest"] != session.digest:
                self.sessions.pop(sid, None)
                return None
        return session

    def use_login_key(self, key: str) -> bool:
        """Whether `key` is the one-time login key, not used yet (it is used now)."""
        if self.login_used or not self.login_digest or not access.well_formed(key):
            return False
        if not access.matches(key, self.login_digest):
            return False
        self.login_used = True
        if self.login_marker is not None:
            try:
                self.login_marker.write_text(self.login_digest + "\n")
            except OSError as exc:
                log.warning(
                    "cannot record the use of the login link at %s: %s", self.login_marker, exc
                )
        return True


def client_of(request: web.Request) -> str:
    return request.remote or "?"


async def authenticate(request: web.Request) -> access.Principal | web.Response:
    """The request's principal, or the refusal to send (401, or 429 while rate limited)."""
    console: Console = request.app[CONSOLE]
    client = client_of(request)
    header = request.headers.get("Authorization", "")
    if header:
        wait = console.limiter.blocked(client)
        if wait > 0:
            return problem(
                429, "Too many failed logins", "try again later", retry_after=round(wait)
            )
        scheme, _, token = header.partition(" ")
        principal = await console.by_token(token.strip()) if scheme.lower() == "bearer" else None
        if principal is None:
            console.limiter.failed(client)
            log.info("refused a bearer token from %s", client)
            return problem(401, "Unauthorized", "the token is missing, wrong or revoked")
        return principal
    sid = request.cookies.get(SESSION_COOKIE, "")
    if sid:
        session = await console.session(sid)
        if session is not None:
            request["session"] = session
            return session.principal
    return problem(401, "Unauthorized", "an `Authorization: Bearer TOKEN` header is required")


def needs(role: access.Role):
    """A handler that runs only for a principal of at least `role` (per-app checks: inside)."""

    def wrap(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = await authenticate(request)
            if isinstance(principal, web.Response):
                return principal
            if not principal.at_least(role):
                return problem(
                    403, "Forbidden", f"{principal.actor} is a {principal.role}; this needs {role}"
                )
            if request.method not in ("GET", "HEAD") and "session" in request:
                # A cookie session's writes carry its CSRF token (a bearer header cannot be
                # sent by another site's form, so it needs none).
                session: Session = request["session"]
                sent = request.headers.get("X-CSRF-Token", "")
                if not secrets.compare_digest(sent, session.csrf):
                    return problem(403, "Forbidden", "missing or wrong X-CSRF-Token")
            request[PRINCIPAL] = principal
            try:
                return await handler(request)
            except Problem as exc:
                return problem(exc.status, exc.title, exc.detail)

        guarded.__name__ = handler.__name__
        return guarded

    return wrap


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(value), status=status, content_type="application/json"
    )


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        value = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Problem(400, "Bad Request", f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Problem(400, "Bad Request", "the body must be a JSON object")
    return value


def _int(request: web.Request, name: str, default: int, *, low: int = 0, high: int = 10**12) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Problem(400, "Bad Request", f"query parameter {name} must be an integer") from None
    if not low <= value <= high:
        raise Problem(400, "Bad Request", f"query parameter {name} must be in {low}..{high}")
    return value


def _app_name(request: web.Request) -> str:
    name = request.match_info["name"]
    try:
        return names.registrable_app_name(name)
    except names.InvalidName as exc:
        raise Problem(404, "Not Found", str(exc)) from None


def principal_of(request: web.Request) -> access.Principal:
    return request[PRINCIPAL]


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


# --- reads ------------------------------------------------------------------------------


@needs("viewer")
async def list_apps(request: web.Request) -> web.Response:
    apps = await console_of(request).reads.apps()
    query = request.query.get("q", "").strip().lower()
    if query:
        apps = [a for a in apps if query in a["name"].lower()]
    for column in ("sync", "health"):
        wanted = request.query.get(column)
        if wanted:
            apps = [a for a in apps if a[column] == wanted]
    return _json({"items": apps})


async def _fresh(request: web.Request) -> None:
    """`?min_seq=N`: answer once the read models have folded the log up to N (an event
    the client saw on the stream), or after 2 s with what there is."""
    seq = _int(request, "min_seq", 0)
    if seq:
        await console_of(request).reads.caught_up(seq)


@needs("viewer")
async def get_app(request: web.Request) -> web.Response:
    name = _app_name(request)
    await _fresh(request)
    app = await console_of(request).reads.app(name)
    if app is None:
        raise Problem(404, "Not Found", f"no application {name!r}")
    return _json(app)


@needs("viewer")
async def list_plans(request: web.Request) -> web.Response:
    name = _app_name(request)
    await _fresh(request)
    limit = _int(request, "limit", 50, low=1, high=500)
    return _json({"items": await console_of(request).reads.plans(name, limit=limit)})


@needs("viewer")
async def get_plan(request: web.Request) -> web.Response:
    await _fresh(request)
    plan = await console_of(request).reads.plan(request.match_info["plan_id"])
    if plan is None:
        raise Problem(404, "Not Found", f"no plan {request.match_info['plan_id']!r}")
    return _json(plan)


@needs("viewer")
async def history(request: web.Request) -> web.Response:
    name = _app_name(request)
    await _fresh(request)
    limit = _int(request, "limit", 50, low=1, high=500)
    entries = await console_of(request).reads.history(name, limit=limit)
    return _json({"items": msgspec.to_builtins(entries)})


def parse_at(raw: str) -> datetime:
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(400, "Bad Request", f"`at` is not an ISO 8601 time: {raw!r}") from None
    if when.tzinfo is None:
        raise Problem(400, "Bad Request", "`at` needs a time zone (2026-01-02T03:04:05Z)")
    return when


@needs("viewer")
async def state_at(request: web.Request) -> web.Response:
    name = _app_name(request)
    raw = request.query.get("at")
    if not raw:
        raise Problem(400, "Bad Request", "query parameter `at` (an ISO 8601 time) is required")
    when = parse_at(raw)
    models = await fold_app(console_of(request).log, name, at=when)
    view = moment(models, name, when)
    if view.application is None:
        raise Problem(404, "Not Found", f"application {name!r} had no events by {raw}")
    return _json(msgspec.to_builtins(view))


@needs("viewer")
async def list_events(request: web.Request) -> web.Response:
    limit = _int(request, "limit", 100, low=1, high=1000)
    items = await console_of(request).reads.events(
        after=_int(request, "after", 0),
        limit=limit,
        app=request.query.get("app") or None,
        event_type=request.query.get("type") or None,
        correlation_id=request.query.get("correlation_id") or None,
    )
    page: dict[str, Any] = {"items": items}
    if len(items) == limit:
        page["next_after"] = items[-1]["seq"]
    return _json(page)


def _subjects(request: web.Request) -> list[str]:
    app = request.query.get("app") or "*"
    event_type = request.query.get("type") or "*"
    try:
        if app != "*":
            names.app_name(app)
    except names.InvalidName as exc:
        raise Problem(400, "Bad Request", str(exc)) from None
    if event_type != "*" and event_type not in BY_TYPE:
        raise Problem(400, "Bad Request", f"no event type {event_type!r}")
    return [f"{names.SUBJECT_PREFIX}.{app}.{event_type}"]


def event_json(seq: int, event: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "event_id": event.event_id,
        "type": event.type,
        "app": event.app,
        "occurred_at": event.occurred_at.isoformat(),
        "correlation_id": event.correlation_id,
        "actor": event.actor,
        "summary": describe(event),
    }


@needs("viewer")
async def stream_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: every event from `Last-Event-ID` (or `?after=`, or now) on."""
    console = console_of(request)
    subjects = _subjects(request)
    last = request.headers.get("Last-Event-ID") or request.query.get("after")
    if last is not None:
        try:
            after = int(last)
        except ValueError:
            raise Problem(400, "Bad Request", "Last-Event-ID must be a stream sequence") from None
    else:
        after = await console.log.stream_end()
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    await response.write(b": wake events\nretry: 1000\n\n")
    reading = console.log.read(from_seq=after + 1, subjects=subjects, follow=True)
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)

    async def pump() -> None:
        async with contextlib.aclosing(reading):
            async for stored in reading:
                body = msgspec.json.encode(event_json(stored.seq, stored.event))
                await queue.put(b"id: %d\ndata: %s\n\n" % (stored.seq, body))

    pumping = asyncio.create_task(pump())
    try:
        while not pumping.done():
            try:
                chunk = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                chunk = b": keep-alive\n\n"
            await response.write(chunk)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        pumping.cancel()
        with contextlib.suppress(BaseException):
            await pumping
    return response


@needs("viewer")
async def trace(request: web.Request) -> web.Response:
    """A journey's spans from the span store (or, once they are gone, its event timings)."""
    name = _app_name(request)
    return _json(await trace_of(console_of(request), name, request.match_info["ref"]))


async def trace_of(console: Console, name: str, ref: str) -> dict[str, Any]:
    """The journey REF names (`wake trace`'s anchor): its spans in start order, each with
    the events it appended, and its events."""
    stored = [s async for s in console.log.read(subjects=[names.app_subjects(name)])]
    events = [s.event for s in stored]
    if not events:
        raise Problem(404, "Not Found", f"no application {name!r} in the log")
    try:
        start = tracing.anchor(events, ref)
    except tracing.TraceRefError as exc:
        raise Problem(404, "Not Found", str(exc)) from None
    journey = tracing.journey(events, start)
    requests = []
    for trace_id in tracing.trace_ids(journey):
        requests += await read_trace(console.log.js, trace_id)
    appended: dict[str, list[str]] = {}
    for event in journey:
        parts = event.traceparent.split("-")
        if len(parts) >= 4:
            appended.setdefault(parts[2], []).append(event.type)
    spans = sorted(span_rows(requests), key=lambda s: (s.start_ns, s.end_ns))
    seqs = {s.event.event_id: s.seq for s in stored}
    return {
        "app": name,
        "correlation_id": start.correlation_id,
        "commit": str(getattr(start.payload, "commit", "") or ""),
        "spans": [
            {
                "trace_id": s.trace_id,
                "span_id": s.span_id,
                "parent_span_id": s.parent_span_id,
                "service": s.service,
                "name": s.name,
                "kind": s.kind,
                "start_ns": s.start_ns,
                "end_ns": s.end_ns,
                "status": s.status,
                "attributes": {k: str(v) for k, v in s.attributes.items()},
                "events": appended.get(s.span_id, []),
            }
            for s in spans
        ],
        "events": [event_json(seqs[e.event_id], e) for e in journey],
    }


# --- commands -----------------------------------------------------------------------------


def _may(principal: access.Principal, role: access.Role, app: str) -> None:
    if not principal.may(role, app):
        raise Problem(403, "Forbidden", f"{principal.actor} may not act on {app}")


async def _decide(request: web.Request, decision: deciding.Decision) -> web.Response:
    principal = principal_of(request)
    body = await _body(request)
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise Problem(400, "Bad Request", "`reason` must be a string")
    if decision == "reject" and not reason.strip():
        raise Problem(400, "Bad Request", "a rejection needs a `reason`")
    try:
        with telemetry.child_span(f"api {decision}", {"wake.actor": principal.actor}):
            event, seq, view = await deciding.decide(
                console_of(request).log,
                request.match_info["plan_id"],
                decision,
                actor=principal.actor,
                via="api",
                reason=reason,
                allowed=lambda app: principal.may("approver", app),
            )
    except deciding.DecisionRefused as exc:
        raise Problem(exc.status, _TITLES.get(exc.status, "Conflict"), str(exc)) from None
    return _json(
        {"event_id": event.event_id, "seq": seq, "app": view.app, "actor": principal.actor},
        status=202,
    )


_TITLES = {403: "Forbidden", 404: "Not Found", 409: "Conflict"}


@needs("approver")
async def approve(request: web.Request) -> web.Response:
    return await _decide(request, "approve")


@needs("approver")
async def reject(request: web.Request) -> web.Response:
    return await _decide(request, "reject")


async def _registered(log: EventLog, name: str) -> None:
    if await lookup.app_spec(log, name) is None:
        raise Problem(404, "Not Found", f"no application {name!r} is registered")


@needs("approver")
async def sync(request: web.Request) -> web.Response:
    name = _app_name(request)
    principal = principal_of(request)
    _may(principal, "approver", name)
    seq = await sync_for(console_of(request), name, principal, await _body(request))
    return _json({"seq": seq, "app": name}, status=202)


async def sync_for(
    console: Console, name: str, principal: access.Principal, body: dict[str, Any]
) -> int:
    """Append `principal`'s SyncRequested for app `name`; its sequence."""
    await _registered(console.log, name)
    resume = body.get("resume", False)
    event = new_event(
        SyncRequested(reason=str(body.get("reason", "")), resume=resume in (True, "true", "on")),
        app=name,
        actor=principal.actor,
        traceparent=telemetry.traceparent(),
    )
    return (await console.log.append(event)).seq


@needs("admin")
async def rollback(request: web.Request) -> web.Response:
    name = _app_name(request)
    seq = await rollback_for(console_of(request), name, principal_of(request), await _body(request))
    return _json({"seq": seq, "app": name}, status=202)


async def rollback_for(
    console: Console, name: str, principal: access.Principal, body: dict[str, Any]
) -> int:
    """Append `principal`'s RollbackRequested of app `name` to `body["to"]` (a commit or
    apply id it applied, or a unique prefix); its sequence."""
    target = body.get("to")
    if not isinstance(target, str) or not target:
        raise Problem(400, "Bad Request", "`to` (a commit or apply id, or a prefix) is required")
    await _registered(console.log, name)
    # Read, decide, append on the position read; what lands meanwhile (a health
    # change, a notification) makes it read and decide again.
    for attempt in range(5):
        position = await console.log.app_position(name)
        applied = applied_revisions(
            await lookup.app_events(console.log, name, [ApplySucceeded.event_type])
        )
        try:
            revision = find_applied(name, applied, target)
        except RevisionNotApplied as exc:
            raise Problem(404, "Not Found", str(exc)) from None
        event = new_event(
            RollbackRequested(
                target=target,
                reason=str(body.get("reason", "")),
                apply_id=revision.apply.apply_id,
                commit=revision.apply.commit,
                bundle_digest=revision.apply.bundle_digest,
            ),
            app=name,
            actor=principal.actor,
            traceparent=telemetry.traceparent(),
        )
        try:
            appended = await console.log.append(event, expected_last_seq=position)
        except ConcurrencyConflict:
            await after_conflict(attempt)
            continue
        return appended.seq
    raise Problem(409, "Conflict", f"{name} kept changing; try again")


def routes() -> list[web.RouteDef]:
    return [
        web.get(f"{PREFIX}/apps", list_apps),
        web.get(f"{PREFIX}/apps/{{name}}", get_app),
        web.get(f"{PREFIX}/apps/{{name}}/plans", list_plans),
        web.get(f"{PREFIX}/apps/{{name}}/history", history),
        web.get(f"{PREFIX}/apps/{{name}}/state", state_at),
        web.get(f"{PREFIX}/apps/{{name}}/traces/{{ref}}", trace),
        web.post(f"{PREFIX}/apps/{{name}}/sync", sync),
        web.post(f"{PREFIX}/apps/{{name}}/rollback", rollback),
        web.get(f"{PREFIX}/plans/{{plan_id}}", get_plan),
        web.post(f"{PREFIX}/plans/{{plan_id}}/approve", approve),
        web.post(f"{PREFIX}/plans/{{plan_id}}/reject", reject),
        web.get(f"{PREFIX}/events", list_events),
        web.get(f"{PREFIX}/events/stream", stream_events),
    ]
