"""`POST /api/v1/apps`, `PATCH` and `DELETE /api/v1/apps/{name}`: an admin adds, changes and
removes apps, checked as `wake app add|set|remove` checks them (the project's rules, the
repository and its ref), appended as ApplicationRegistered / Updated / Removed."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from events import names, new_event
from events.payloads import (
    ApplicationRegistered,
    ApplicationRemoved,
    ApplicationUpdated,
    AppSpec,
)
from services.api.rest import (
    PREFIX,
    Console,
    Problem,
    _app_name,
    _body,
    _json,
    console_of,
    needs,
    principal_of,
)
from services.catalog import lookup
from services.projects.rules import Missing, credential_error, project_of, source_error
from services.wiring import telemetry
from services.wiring.conflicts import after_conflict
from services.wiring.eventlog import ConcurrencyConflict
from services.wiring.git import (
    CredentialError,
    GitCredentials,
    RefNotFound,
    RepoUnreachable,
    check_ref,
    normalize_url,
    redact,
)

# What `wake app set` checks again when it changes (services/cli/apps_cmd.py).
SOURCE_FIELDS = ("repo_url", "ref", "git_credential")
PROJECT_FIELDS = ("project", "repo_url", "git_credential")


def _spec(value: Any) -> AppSpec:
    if not isinstance(value, dict):
        raise Problem(400, "Bad Request", "`spec` must be an object of the app's settings")
    try:
        spec = msgspec.convert(value, AppSpec)
    except msgspec.ValidationError as exc:
        raise Problem(400, "Bad Request", f"invalid spec: {exc}") from None
    for strings, code, what in (
        (spec.jsonnet_ext_vars, spec.jsonnet_ext_code, "jsonnet_ext_vars and jsonnet_ext_code"),
        (spec.jsonnet_tla, spec.jsonnet_tla_code, "jsonnet_tla and jsonnet_tla_code"),
    ):
        both = sorted(set(strings) & set(code))
        if both:
            raise Problem(400, "Bad Request", f"{', '.join(both)} given in both {what}")
    return spec


async def _check(console: Console, spec: AppSpec, changed: list[str] | None = None) -> None:
    """The project's rules, then the repository's ref (as git-watcher will read it)."""
    settings = console.settings
    if changed is None or any(f in PROJECT_FIELDS for f in changed):
        projects = await lookup.load_projects(console.log)
        project = project_of(spec, projects.specs, system_namespace=settings.system_namespace)
        if isinstance(project, Missing):
            raise Problem(422, "Unprocessable Content", str(project))
        error = source_error(
            redact(spec.repo_url), project, normalized=normalize_url(spec.repo_url)
        ) or credential_error(spec.git_credential, project)
        if error:
            raise Problem(422, "Unprocessable Content", error)
    if changed is None or any(f in SOURCE_FIELDS for f in changed):
        try:
            credential = GitCredentials.from_settings(settings).for_url(
                spec.git_credential, spec.repo_url
            )
            await check_ref(spec.repo_url, spec.ref, credential=credential)
        except (RepoUnreachable, CredentialError, RefNotFound) as exc:
            raise Problem(422, "Unprocessable Content", str(exc)) from None


async def _append(console: Console, event: Any, position: int, name: str) -> int:
    try:
        return (await console.log.append(event, expected_last_seq=position)).seq
    except ConcurrencyConflict:
        raise Problem(
            409, "Conflict", f"application {name!r} changed meanwhile; try again"
        ) from None


@needs("admin")
async def add_app(request: web.Request) -> web.Response:
    body = await _body(request)
    name = body.get("name")
    try:
        name = names.registrable_app_name(name if isinstance(name, str) else "")
    except names.InvalidName as exc:
        raise Problem(400, "Bad Request", str(exc)) from None
    spec = _spec(body.get("spec"))
    console = console_of(request)
    await _check(console, spec)
    position = await console.log.app_position(name)
    if await lookup.app_spec(console.log, name) is not None:
        raise Problem(409, "Conflict", f"application {name!r} is already registered")
    event = new_event(
        ApplicationRegistered(spec=spec),
        app=name,
        actor=principal_of(request).actor,
        traceparent=telemetry.traceparent(),
    )
    seq = await _append(console, event, position, name)
    return _json({"event_id": event.event_id, "seq": seq, "app": name}, status=202)


@needs("admin")
async def set_app(request: web.Request) -> web.Response:
    name = _app_name(request)
    fields = await _body(request)
    unknown = sorted(set(fields) - set(AppSpec.__struct_fields__))
    if unknown:
        raise Problem(400, "Bad Request", f"no such setting: {', '.join(unknown)}")
    console = console_of(request)
    # Read, check, append on the position read; anything landing on the app meanwhile
    # (its own journey's events) makes it read and check again.
    for attempt in range(5):
        position = await console.log.app_position(name)
        current = await lookup.app_spec(console.log, name)
        if current is None:
            raise Problem(404, "Not Found", f"no application {name!r} is registered")
        spec = _spec({**msgspec.to_builtins(current), **fields})
        changed = [f for f in fields if getattr(current, f) != getattr(spec, f)]
        if not changed:
            return _json({"app": name, "changed": []})
        await _check(console, spec, changed)
        event = new_event(
            ApplicationUpdated(spec=spec, changed=changed),
            app=name,
            actor=principal_of(request).actor,
            traceparent=telemetry.traceparent(),
        )
        try:
            seq = (await console.log.append(event, expected_last_seq=position)).seq
        except ConcurrencyConflict:
            await after_conflict(attempt)
            continue
        return _json(
            {"event_id": event.event_id, "seq": seq, "app": name, "changed": changed}, status=202
        )
    raise Problem(409, "Conflict", f"application {name!r} kept changing; try again")


@needs("admin")
async def remove_app(request: web.Request) -> web.Response:
    name = _app_name(request)
    cascade = request.query.get("cascade", "false").lower() in ("1", "true", "yes")
    console = console_of(request)
    for attempt in range(5):
        position = await console.log.app_position(name)
        if await lookup.app_spec(console.log, name) is None:
            raise Problem(404, "Not Found", f"no application {name!r} is registered")
        event = new_event(
            ApplicationRemoved(reason=request.query.get("reason", ""), cascade=cascade),
            app=name,
            actor=principal_of(request).actor,
            traceparent=telemetry.traceparent(),
        )
        try:
            seq = (await console.log.append(event, expected_last_seq=position)).seq
        except ConcurrencyConflict:
            await after_conflict(attempt)
            continue
        return _json({"event_id": event.event_id, "seq": seq, "app": name}, status=202)
    raise Problem(409, "Conflict", f"application {name!r} kept changing; try again")


def routes() -> list[web.RouteDef]:
    return [
        web.post(f"{PREFIX}/apps", add_app),
        web.patch(f"{PREFIX}/apps/{{name}}", set_app),
        web.delete(f"{PREFIX}/apps/{{name}}", remove_app),
    ]
