"""The web UI at `/`: server-rendered HTML, one plain JS module (`static/console.js`).

No build step and no external fetch (fonts, CDNs): the page and its script come
from this process. Login turns a token into a session cookie (HttpOnly,
SameSite=Strict); every form carries the session's CSRF token. Pages work
without JavaScript; the script adds live updates (Server-Sent Events), the
filter and the time slider.
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from services.api import access, diffs, rest
from services.catalog import deciding

STATIC = Path(__file__).resolve().parent / "static"
LOGIN_CSRF_COOKIE = "wake_login_csrf"

e = html.escape


@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; "
        "style-src-attr 'unsafe-inline'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


def _page(title: str, body: str, *, principal: access.Principal | None, csrf: str = "") -> str:
    who = ""
    if principal is not None:
        logout = (
            f'<form method="post" action="/logout" class="inline">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<button type="submit">Log out</button></form>'
            if csrf
            else ""
        )
        who = f'<span class="who">{e(principal.actor)} ({e(principal.role)})</span>{logout}'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · Wake</title>"
        '<link rel="stylesheet" href="/static/console.css">'
        '<script type="module" src="/static/console.js"></script>'
        f'</head><body data-csrf="{e(csrf)}">'
        '<header><a href="/" class="brand">Wake</a>'
        '<a href="/api/v1/docs">API</a>'
        f'<span class="grow"></span>{who}</header>'
        f"<main>{body}</main></body></html>"
    )


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def _badge(kind: str, value: str | None) -> str:
    value = value or "Unknown"
    return (
        f'<span class="badge {kind}-{e(value.lower())}" data-{kind}="{e(value)}">{e(value)}</span>'
    )


def _short(commit: str | None) -> str:
    return (commit or "")[:12] or "-"


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    if not value:
        return "-"
    text = str(value)
    return f'<time datetime="{e(text)}">{e(text[:19].replace("T", " "))}</time>'


PageHandler = Callable[[web.Request, access.Principal], Awaitable[web.StreamResponse]]


def page(handler: PageHandler):
    """A page for any principal; without one, to the login page."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        principal = await rest.authenticate(request)
        if isinstance(principal, web.Response):
            if principal.status == 401 and "Authorization" not in request.headers:
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
            return principal
        try:
            return await handler(request, principal)
        except rest.Problem as exc:
            body = f"<h1>{e(exc.title)}</h1><p>{e(exc.detail)}</p>"
            return _html(
                _page(exc.title, body, principal=principal, csrf=_csrf(request)), exc.status
            )

    return guarded


def _csrf(request: web.Request) -> str:
    session = request.get("session")
    return session.csrf if session is not None else ""


def _form_csrf(request: web.Request, form: Any) -> None:
    """A form post of a cookie session must carry its CSRF token (a bearer needs none)."""
    session = request.get("session")
    if session is None:
        return
    if not secrets.compare_digest(str(form.get("csrf", "")), session.csrf):
        raise rest.Problem(403, "Forbidden", "the form's CSRF token is missing or wrong")


# --- login ----------------------------------------------------------------------------


async def login_form(request: web.Request) -> web.Response:
    console: rest.Console = request.app[rest.CONSOLE]
    key = request.query.get("key")
    if key is not None:
        if console.use_login_key(key):
            principal = access.Principal(name=rest.CONSOLE_ADMIN, role="admin")
            return _logged_in(request, console, principal, "", "/")
        console.limiter.failed(rest.client_of(request))
        return _login_page("That login link is used already or wrong.", status=401)
    return _login_page("", next_path=request.query.get("next", "/"))


def _login_page(message: str, *, status: int = 200, next_path: str = "/") -> web.Response:
    csrf = secrets.token_urlsafe(24)
    note = f'<p class="error" role="alert">{e(message)}</p>' if message else ""
    body = (
        '<section class="login"><h1>Log in</h1>'
        f"{note}"
        '<form method="post" action="/login">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        f'<input type="hidden" name="next" value="{e(_local(next_path))}">'
        '<label for="token">API token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" '
        "required autofocus>"
        '<button type="submit">Log in</button></form>'
        "<p>Make one with <code>wake token create NAME --role viewer|approver|admin</code>.</p>"
        "</section>"
    )
    response = _html(_page("Log in", body, principal=None), status)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, csrf, httponly=True, samesite="Strict", path="/login", max_age=3600
    )
    return response


def _local(path: str) -> str:
    """A path on this site only (never `//elsewhere`): where to go after login."""
    # Not `//host` nor `/\host`: browsers take both for another site.
    return path if path.startswith("/") and path[1:2] not in ("/", "\\") else "/"


def _logged_in(
    request: web.Request,
    console: rest.Console,
    principal: access.Principal,
    digest: str,
    next_path: str,
) -> web.Response:
    sid, _session = console.open_session(principal, digest)
    response = web.HTTPSeeOther(_local(next_path))
    response.set_cookie(
        rest.SESSION_COOKIE,
        sid,
        httponly=True,
        samesite="Strict",
        path="/",
        max_age=int(rest.SESSION_LIFETIME),
        # Secure behind TLS (a proxy in front says so), else a local console over http.
        secure=request.secure or request.headers.get("X-Forwarded-Proto") == "https",
    )
    response.del_cookie(LOGIN_CSRF_COOKIE, path="/login")
    raise response


async def login(request: web.Request) -> web.Response:
    console: rest.Console = request.app[rest.CONSOLE]
    client = rest.client_of(request)
    wait = console.limiter.blocked(client)
    if wait > 0:
        return _login_page(f"Too many failed logins: try again in {int(wait) + 1} s.", status=429)
    form = await request.post()
    sent = str(form.get("csrf", ""))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(sent, expected):
        return _login_page("The form expired; log in again.", status=403)
    token = str(form.get("token", "")).strip()
    principal = await console.by_token(token)
    if principal is None:
        console.limiter.failed(client)
        return _login_page("That token is wrong or revoked.", status=401)
    return _logged_in(request, console, principal, access.digest(token), str(form.get("next", "/")))


async def logout(request: web.Request) -> web.Response:
    console: rest.Console = request.app[rest.CONSOLE]
    sid = request.cookies.get(rest.SESSION_COOKIE, "")
    session = console.sessions.get(sid)
    if session is not None:
        form = await request.post()
        if secrets.compare_digest(str(form.get("csrf", "")), session.csrf):
            console.sessions.pop(sid, None)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(rest.SESSION_COOKIE, path="/")
    raise response


# --- the app list ------------------------------------------------------------------------


def app_row(app: dict[str, Any]) -> str:
    pending = app["pending_approvals"]
    waiting = f'<span class="badge pending">{pending} to approve</span>' if pending else ""
    return (
        f'<tr data-app="{e(app["name"])}" data-seq="{app["seq"]}">'
        f'<td><a href="/apps/{e(app["name"])}">{e(app["name"])}</a></td>'
        f"<td>{_badge('sync', app['sync'])}</td>"
        f"<td>{_badge('health', app['health'])}</td>"
        f'<td class="mono revision">{e(_short(app["revision"]))}</td>'
        f"<td>{waiting}</td>"
        f"<td>{e(app['project'])}</td></tr>"
    )


@page
async def app_list(request: web.Request, principal: access.Principal) -> web.Response:
    console: rest.Console = request.app[rest.CONSOLE]
    # The position first: the page's stream starts after it, so nothing folded after
    # these rows were read is missed (an event already in them is only read again).
    position = await console.reads.position()
    apps = await console.reads.apps()
    query = request.query.get("q", "")
    if query:
        apps = [a for a in apps if query.lower() in a["name"].lower()]
    rows = "".join(app_row(a) for a in apps)
    body = (
        '<h1>Applications</h1><form class="filter" method="get" action="/" role="search">'
        '<label for="filter">Filter</label>'
        f'<input id="filter" name="q" value="{e(query)}" placeholder="name" autocomplete="off">'
        f'<span class="live" id="live" aria-live="polite"></span></form>'
        f'<table id="apps" class="apps" data-after="{position}"><thead><tr><th>Name</th>'
        "<th>Sync</th><th>Health</th><th>Revision</th><th>Approvals</th><th>Project</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        + ("" if apps else '<p class="empty" id="no-apps">No applications yet.</p>')
    )
    return _html(_page("Applications", body, principal=principal, csrf=_csrf(request)))


# --- one app: timeline, time slider, rollback ---------------------------------------------


def _journey(app: str, entry: dict[str, Any], *, may_rollback: bool, csrf: str) -> str:
    commit = entry["commit"]
    decisions = "".join(
        f"<li>{e(d['decision'])} by <b>{e(d['actor'])}</b> via {e(d['via'])} at "
        f"{_when(d['at'])}{(' — ' + e(d['comment'])) if d['comment'] else ''}</li>"
        for d in entry["decisions"]
    )
    plan = (
        f'<li>plan <a href="/plans/{e(entry["plan_id"])}">{e(entry["plan_id"][:8])}</a> '
        f"({e(entry['plan_status'] or '')}): {e(entry['plan_summary'])}</li>"
        if entry["plan_id"]
        else ""
    )
    applied = (
        f"<li>apply {e(entry['apply_id'])} ended {_when(entry['applied_at'])}</li>"
        if entry["apply_id"]
        else ""
    )
    steps = "".join(f"<li>{e(step)}</li>" for step in entry["steps"])
    error = f'<li class="error">{e(entry["error"])}</li>' if entry["error"] else ""
    actions = f'<a href="/apps/{e(app)}/traces/{e(commit or entry["plan_id"] or "")}">trace</a>'
    if may_rollback and entry["apply_id"] and entry["result"] and "applied" in entry["result"]:
        actions += (
            f'<form method="post" action="/apps/{e(app)}/rollback" class="inline">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<input type="hidden" name="to" value="{e(entry["apply_id"])}">'
            f'<button type="submit" data-confirm="Roll {e(app)} back to '
            f'{e(_short(commit))}?">Roll back to this</button></form>'
        )
    marker = ' <span class="badge rollback">rollback</span>' if entry["rollback"] else ""
    first_line = (entry["message"] or "").splitlines()[0] if entry["message"] else ""
    return (
        f'<li class="journey" data-commit="{e(commit)}"><details><summary>'
        f'{_when(entry["started_at"])} <span class="mono">{e(_short(commit))}</span> '
        f'{e(entry["result"] or "-")}{marker} <span class="msg">{e(entry["author"])}: '
        f"{e(first_line)}</span></summary><ul>{plan}{decisions}{applied}{steps}{error}</ul>"
        f'<p class="actions">{actions}</p></details></li>'
    )


@page
async def app_page(request: web.Request, principal: access.Principal) -> web.Response:
    console: rest.Console = request.app[rest.CONSOLE]
    name = rest._app_name(request)
    app = await console.reads.app(name)
    if app is None:
        raise rest.Problem(404, "Not Found", f"no application {name!r}")
    entries = msgspec.to_builtins(await console.reads.history(name, limit=100))
    csrf = _csrf(request)
    timeline = "".join(
        _journey(name, entry, may_rollback=principal.may("admin", name), csrf=csrf)
        for entry in entries
    )
    resources = "".join(
        f"<tr><td>{e(r['kind'])}</td><td>{e(r['namespace'] or '-')}</td><td>{e(r['name'])}</td>"
        f'<td class="mono">{e(_short(r["commit"]))}</td></tr>'
        for r in app["resources"]
    )
    moments = sorted(
        {str(entry["started_at"]) for entry in entries}
        | {str(entry["applied_at"]) for entry in entries if entry["applied_at"]}
    )
    sync = ""
    if principal.may("approver", name):
        sync = (
            f'<form method="post" action="/apps/{e(name)}/sync" class="inline">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<button type="submit">Sync now</button></form>'
        )
    slider = ""
    if moments:
        slider = (
            '<section class="slider"><h2>Time travel</h2>'
            f'<input type="range" id="when" min="0" max="{len(moments)}" '
            f'value="{len(moments)}" step="1" aria-label="Moment" '
            f"data-app=\"{e(name)}\" data-moments='{e(json.dumps(moments))}'>"
            '<output id="when-label" for="when">now</output>'
            '<dl id="moment" class="moment"></dl></section>'
        )
    body = (
        f'<h1>{e(name)}</h1><p class="badges" data-app="{e(name)}">'
        f"{_badge('sync', app['sync'])} {_badge('health', app['health'])} "
        f'revision <span class="mono">{e(_short(app["revision"]))}</span> {sync}</p>'
        f'<p class="spec">{e(app["repo_url"])} · {e(app["path"])} @ {e(app["ref"])} → '
        f"namespace {e(app['namespace'])} · project {e(app['project'])}</p>"
        f'<p><a href="/apps/{e(name)}/plans">Plans</a></p>'
        f"{slider}"
        '<section><h2>Revisions</h2><ol class="timeline" id="timeline">'
        f"{timeline or '<li>No revision yet.</li>'}</ol></section>"
        '<section><h2>Resources</h2><table class="resources"><thead><tr><th>Kind</th>'
        f"<th>Namespace</th><th>Name</th><th>Commit</th></tr></thead><tbody>{resources}"
        "</tbody></table></section>"
    )
    return _html(_page(name, body, principal=principal, csrf=csrf))


@page
async def plans_page(request: web.Request, principal: access.Principal) -> web.Response:
    console: rest.Console = request.app[rest.CONSOLE]
    name = rest._app_name(request)
    items = await console.reads.plans(name)
    rows = "".join(
        f'<tr><td><a href="/plans/{e(p["plan_id"])}" class="mono">{e(p["plan_id"][:8])}</a></td>'
        f'<td>{e(p["status"])}</td><td class="mono">{e(_short(p["commit"]))}</td>'
        f"<td>+{p['creates']} ~{p['updates']} -{p['prunes']}</td><td>{_when(p['created_at'])}"
        "</td></tr>"
        for p in items
    )
    body = (
        f'<h1>Plans of <a href="/apps/{e(name)}">{e(name)}</a></h1><table class="plans">'
        "<thead><tr><th>Plan</th><th>Status</th><th>Commit</th><th>Changes</th><th>Created"
        f"</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return _html(_page(f"Plans of {name}", body, principal=principal, csrf=_csrf(request)))


def _diff_table(diff: str) -> str:
    rows = []
    for row in diffs.side_by_side(diff):
        if row.kind == "file":
            continue
        left = "" if row.left is None else e(row.left)
        right = "" if row.right is None else e(row.right)
        if row.kind == "change":
            lclass = "del" if row.left is not None else "none"
            rclass = "add" if row.right is not None else "none"
        else:
            lclass = rclass = row.kind
        rows.append(f'<tr><td class="{lclass}">{left}</td><td class="{rclass}">{right}</td></tr>')
    return (
        '<table class="diff"><thead><tr><th>live</th><th>planned</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


@page
async def plan_page(request: web.Request, principal: access.Principal) -> web.Response:
    console: rest.Console = request.app[rest.CONSOLE]
    plan_id = request.match_info["plan_id"]
    plan = await console.reads.plan(plan_id)
    if plan is None:
        raise rest.Problem(404, "Not Found", f"no plan {plan_id!r}")
    csrf = _csrf(request)
    app = plan["app"]
    changes = []
    for change in plan["changes"]:
        ref = change["ref"]
        where = f"{ref.get('namespace') or '-'}/{ref['name']}"
        error = f'<p class="error">{e(change["error"])}</p>' if change.get("error") else ""
        diff = _diff_table(change["diff"]) if change.get("diff") else ""
        open_ = " open" if change["action"] != "unchanged" else ""
        changes.append(
            f'<details class="change"{open_}><summary><span class="badge action-'
            f'{e(change["action"])}">{e(change["action"])}</span> {e(ref["kind"])} '
            f"{e(where)}</summary>{error}{diff}</details>"
        )
    for ref in plan["prune"]:
        changes.append(
            f'<details class="change"><summary><span class="badge action-prune">prune</span> '
            f"{e(ref['kind'])} {e(ref.get('namespace') or '-')}/{e(ref['name'])}</summary>"
            "</details>"
        )
    decisions = "".join(
        f"<li>{e(d['decision'])} by <b>{e(d['actor'])}</b> via {e(d['via'])}"
        f"{(' — ' + e(d['comment'])) if d['comment'] else ''}</li>"
        for d in plan["decisions"]
    )
    actions = ""
    if plan["status"] == "awaiting-approval" and principal.may("approver", app):
        actions = (
            '<div class="decide">'
            f'<form method="post" action="/plans/{e(plan_id)}/approve" class="inline">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<button type="submit" class="approve">Approve</button></form>'
            f'<form method="post" action="/plans/{e(plan_id)}/reject" class="inline">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            '<label for="reason">Reason</label><input id="reason" name="reason" required>'
            '<button type="submit" class="reject">Reject</button></form></div>'
        )
    message = request.query.get("said", "")
    said = f'<p class="notice" role="status">{e(message)}</p>' if message else ""
    body = (
        f'<h1>Plan <span class="mono">{e(plan_id[:8])}</span> of '
        f'<a href="/apps/{e(app)}">{e(app)}</a></h1>{said}'
        f'<p>status <span class="badge status" id="plan-status">{e(plan["status"])}</span> · '
        f'commit <span class="mono">{e(_short(plan["commit"]))}</span> · {e(plan["reason"])} · '
        f"+{plan['creates']} ~{plan['updates']} ={plan['unchanged']} -{plan['prunes']}"
        f' · <a href="/apps/{e(app)}/traces/{e(plan_id)}">trace</a></p>'
        f"{actions}<ul>{decisions}</ul>{''.join(changes)}"
    )
    return _html(_page(f"Plan {plan_id[:8]}", body, principal=principal, csrf=csrf))


async def _form_action(
    request: web.Request, principal: access.Principal, run: Callable[[Any], Awaitable[str]]
) -> web.Response:
    form = await request.post()
    _form_csrf(request, form)
    where = await run(form)
    raise web.HTTPSeeOther(where)


def _decide(decision: deciding.Decision):
    @page
    async def handle(request: web.Request, principal: access.Principal) -> web.Response:
        plan_id = request.match_info["plan_id"]

        async def run(form: Any) -> str:
            reason = str(form.get("reason", ""))
            if decision == "reject" and not reason.strip():
                raise rest.Problem(400, "Bad Request", "a rejection needs a reason")
            if not principal.at_least("approver"):
                raise rest.Problem(403, "Forbidden", f"{principal.actor} may not decide plans")
            console: rest.Console = request.app[rest.CONSOLE]
            try:
                _event, seq, _view = await deciding.decide(
                    console.log,
                    plan_id,
                    decision,
                    actor=principal.actor,
                    via="api",
                    reason=reason,
                    allowed=lambda app: principal.may("approver", app),
                )
            except deciding.DecisionRefused as exc:
                raise rest.Problem(exc.status, "Refused", str(exc)) from None
            await console.reads.caught_up(seq)
            verb = "approved" if decision == "approve" else "rejected"
            return f"/plans/{quote(plan_id)}?said={quote(f'{verb} by {principal.actor}')}"

        return await _form_action(request, principal, run)

    return handle


@page
async def rollback_action(request: web.Request, principal: access.Principal) -> web.Response:
    name = rest._app_name(request)

    async def run(form: Any) -> str:
        if not principal.may("admin", name):
            raise rest.Problem(403, "Forbidden", f"{principal.actor} may not roll back {name}")
        result = await _call(request, rest.rollback_for, name, principal, form)
        return f"/apps/{quote(name)}?min_seq={result}"

    return await _form_action(request, principal, run)


@page
async def sync_action(request: web.Request, principal: access.Principal) -> web.Response:
    name = rest._app_name(request)

    async def run(form: Any) -> str:
        if not principal.may("approver", name):
            raise rest.Problem(403, "Forbidden", f"{principal.actor} may not sync {name}")
        await _call(request, rest.sync_for, name, principal, form)
        return f"/apps/{quote(name)}"

    return await _form_action(request, principal, run)


async def _call(request: web.Request, command, name: str, principal, form: Any) -> int:
    console: rest.Console = request.app[rest.CONSOLE]
    return await command(console, name, principal, {k: str(v) for k, v in form.items()})


# --- the trace viewer ----------------------------------------------------------------------


@page
async def trace_page(request: web.Request, principal: access.Principal) -> web.Response:
    console: rest.Console = request.app[rest.CONSOLE]
    name = rest._app_name(request)
    found = await rest.trace_of(console, name, request.match_info["ref"])
    spans = found["spans"]
    rows = []
    if spans:
        origin = min(s["start_ns"] for s in spans)
        total = max(s["end_ns"] for s in spans) - origin or 1
        by_id = {s["span_id"]: s for s in spans}
        for span in spans:
            depth, parent = 0, by_id.get(span["parent_span_id"])
            while parent is not None and depth < 32:
                depth += 1
                parent = by_id.get(parent["parent_span_id"])
            left = (span["start_ns"] - origin) / total * 100
            width = max(0.4, (span["end_ns"] - span["start_ns"]) / total * 100)
            duration = (span["end_ns"] - span["start_ns"]) / 1e6
            attributes = "".join(
                f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in span["attributes"].items()
            )
            appended = ", ".join(span["events"])
            rows.append(
                f'<li class="span" style="--depth:{depth}"><details><summary>'
                f'<span class="sname">{e(span["service"])} · {e(span["name"])}</span>'
                f'<span class="track"><span class="bar {e(span["status"] or "unset")}" '
                f'style="--left:{left:.2f}%;--width:{width:.2f}%"></span></span>'
                f'<span class="dur">{duration:.1f} ms</span></summary>'
                f"{'<p>appended ' + e(appended) + '</p>' if appended else ''}"
                f'<table class="attrs">{attributes}</table></details></li>'
            )
        waterfall = f'<ol class="waterfall" id="waterfall">{"".join(rows)}</ol>'
    else:
        events = found["events"]
        origin = datetime.fromisoformat(events[0]["occurred_at"]) if events else None
        lines = "".join(
            f"<tr><td>{_offset_ms(origin, ev['occurred_at']):.1f} ms</td>"
            f"<td>{e(ev['type'])}</td><td>{e(ev['actor'])}</td></tr>"
            for ev in events
        )
        waterfall = (
            '<p class="notice">No spans of this journey in the span store (kept 7 days, or '
            "tracing was off): the event timings from the log.</p>"
            f'<table class="timings" id="waterfall"><tbody>{lines}</tbody></table>'
        )
    events = "".join(
        f'<li><span class="mono">#{ev["seq"]}</span> {e(ev["type"])} — {e(ev["summary"])}</li>'
        for ev in found["events"]
    )
    body = (
        f'<h1>Trace of <a href="/apps/{e(name)}">{e(name)}</a> '
        f'<span class="mono">{e(_short(found["commit"]))}</span></h1>'
        f"<p>journey {e(found['correlation_id'])}, {len(spans)} spans</p>{waterfall}"
        f'<h2>Events</h2><ol class="events">{events}</ol>'
    )
    return _html(_page("Trace", body, principal=principal, csrf=_csrf(request)))


def _offset_ms(origin: datetime | None, when: str) -> float:
    if origin is None:
        return 0.0
    return (datetime.fromisoformat(when) - origin).total_seconds() * 1000


# --- the API docs ----------------------------------------------------------------------------


@page
async def api_docs(request: web.Request, principal: access.Principal) -> web.Response:
    from services.api.openapi import document

    doc = document()
    sections = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            params = "".join(
                f"<li><code>{e(p['name'])}</code> ({e(p['in'])}): {e(p.get('description', ''))}"
                "</li>"
                for p in operation.get("parameters", [])
            )
            sections.append(
                f'<section class="op"><h2><code>{e(method.upper())} {e(path)}</code></h2>'
                f"<p>{e(operation['summary'])}</p>"
                f"<p>{e(operation.get('description', ''))}</p><ul>{params}</ul></section>"
            )
    body = (
        f"<h1>{e(doc['info']['title'])}</h1><p>{e(doc['info']['description'])}</p>"
        '<p>The OpenAPI 3.1 document: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>. '
        "Errors are RFC 9457 problem details (<code>application/problem+json</code>).</p>"
        + "".join(sections)
    )
    return _html(_page("API", body, principal=principal, csrf=_csrf(request)))


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["file"]
    if name not in ("console.js", "console.css"):
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", app_list),
        web.get("/login", login_form),
        web.post("/login", login),
        web.post("/logout", logout),
        web.get("/apps/{name}", app_page),
        web.get("/apps/{name}/plans", plans_page),
        web.post("/apps/{name}/rollback", rollback_action),
        web.post("/apps/{name}/sync", sync_action),
        web.get("/apps/{name}/traces/{ref}", trace_page),
        web.get("/plans/{plan_id}", plan_page),
        web.post("/plans/{plan_id}/approve", _decide("approve")),
        web.post("/plans/{plan_id}/reject", _decide("reject")),
        web.get("/api/v1/docs", api_docs),
        web.get("/static/{file}", static),
    ]
