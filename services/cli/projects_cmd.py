"""`wake project`: define, change, list, show and remove projects (as events).

A project bounds what its apps may touch (services/projects/rules.py). Its
events are filed under the app token `_wake`, its name in the payload; every
service that needs the projects folds them once and follows them.
"""

from __future__ import annotations

import sys
from typing import Any

import click
import msgspec
from click.core import ParameterSource

from events import names, new_event
from events.payloads import ProjectCreated, ProjectRemoved, ProjectSpec, ProjectUpdated
from services.catalog import lookup
from services.cli.connecting import (
    checked_approvers,
    connected,
    data_dir_option,
    echo_columns,
    run,
    settings_for,
)
from services.projects.rules import DEFAULT_PROJECT, InvalidRule, check_spec
from services.wiring.eventlog import ConcurrencyConflict, EventLog

# Where every project event is (with Wake's own other events): a change is
# appended expecting the last one seen, so two changes made at once never both win.
PROJECT_SUBJECTS = f"{names.SUBJECT_PREFIX}.{names.SYSTEM_APP}.*"

_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("--source", "sources"),
        dict(
            multiple=True,
            metavar="GLOB",
            help="Repository URLs the project's apps may follow (repeatable): "
            "https://git.example.com/team/*.",
        ),
    ),
    (
        ("--destination", "destinations"),
        dict(
            multiple=True,
            metavar="CONTEXT/NAMESPACE_GLOB",
            help="Where its apps may deploy (repeatable): prod/team-*; an empty CONTEXT is "
            "the services' default context (/team-*). A wildcard never matches kube-system, "
            "kube-public, kube-node-lease or Wake's own namespace: name them exactly.",
        ),
    ),
    (
        ("--allow-kind", "kinds"),
        dict(
            multiple=True,
            metavar="GROUP/KIND",
            help="Namespaced kinds allowed (repeatable; none given: every namespaced kind): "
            "apps/Deployment, /ConfigMap (core group), apps/*.",
        ),
    ),
    (
        ("--allow-cluster-kind", "cluster_kinds"),
        dict(
            multiple=True,
            metavar="GROUP/KIND",
            help="Cluster-scoped kinds allowed (repeatable; none given: none but the "
            "Namespaces its destinations allow): apiextensions.k8s.io/CustomResourceDefinition.",
        ),
    ),
    (
        ("--credential", "credentials"),
        dict(
            multiple=True,
            metavar="NAME",
            help="Git credentials its apps may name (repeatable; globs allowed).",
        ),
    ),
    (
        ("--approver", "approvers"),
        dict(
            multiple=True,
            metavar="ID",
            help="Who may approve its apps' plans (repeatable): matrix:@user:server, slack:UID, "
            "mattermost:USERNAME, discord:USERID, teams:ID, token:NAME, group:NAME or cli:USER.",
        ),
    ),
    (
        ("--separate-approver/--no-separate-approver",),
        dict(default=False, help="Refuse an approval by the author of the planned commit."),
    ),
    (("--description",), dict(default="", help="What the project is for.")),
]

UNGIVEN = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)


def _project_options(command: Any) -> Any:
    for decls, attrs in reversed(_OPTIONS):
        command = click.option(*decls, **attrs)(command)
    return command


def _fields(values: dict[str, Any]) -> dict[str, Any]:
    """ProjectSpec fields from option values; an empty value (`--approver ''`) clears a list."""
    fields = {k: [x for x in v if x] if isinstance(v, tuple) else v for k, v in values.items()}
    if "approvers" in fields:
        fields["approvers"] = checked_approvers(fields["approvers"])
    return fields


def _checked_name(name: str) -> str:
    try:
        names.registrable_app_name(name)
    except names.InvalidName:
        raise click.BadParameter(
            f"invalid project name {name!r}: use 1 to 63 lowercase letters, digits and '-'",
            param_hint="NAME",
        ) from None
    return name


def _checked_spec(spec: ProjectSpec) -> ProjectSpec:
    try:
        check_spec(spec)
    except InvalidRule as exc:
        raise click.BadParameter(str(exc)) from None
    return spec


async def _position(log: EventLog) -> int:
    return await log.position(PROJECT_SUBJECTS)


@click.group()
def project() -> None:
    """Define the projects that bound what apps may touch (Argo CD's AppProject)."""


@project.command()
@data_dir_option
@click.argument("name")
@_project_options
def add(data_dir: str, name: str, **options: Any) -> None:
    """Define project NAME; move apps into it with `wake app add|set --project NAME`.

    With no --source, --destination or --allow-cluster-kind the project allows
    nothing of that: list what its apps may touch.
    """
    name = _checked_name(name)
    if name == DEFAULT_PROJECT:
        raise click.BadParameter(
            "`default` is built in (each app's own destination namespace); define another",
            param_hint="NAME",
        )
    spec = _checked_spec(ProjectSpec(**_fields(options)))

    async def define() -> None:
        async with connected(settings_for(data_dir)) as log:
            position = await _position(log)
            projects = await lookup.load_projects(log)
            if name in projects.specs:
                raise click.ClickException(
                    f"project {name!r} exists (change it with `wake project set`)"
                )
            event = new_event(
                ProjectCreated(name=name, spec=spec), app=names.SYSTEM_APP, actor=log.actor
            )
            await _append(log, event, position, name)
        click.echo(f"project {name} defined (event {event.event_id})")

    run(define())


@project.command(name="set")
@data_dir_option
@click.argument("name")
@_project_options
@click.pass_context
def set_(ctx: click.Context, data_dir: str, name: str, **options: Any) -> None:
    """Change project NAME: only the options given; a repeated option replaces its list
    (an empty value clears it: `--approver ''`).

    Every app of the project is checked again under the new rules, as after
    `wake app set`.
    """
    name = _checked_name(name)
    given = {
        key: value
        for key, value in options.items()
        if ctx.get_parameter_source(key) not in (None, *UNGIVEN)
    }
    if not given:
        raise click.UsageError("nothing to change: give the options to set (see --help)")

    async def update() -> None:
        async with connected(settings_for(data_dir)) as log:
            position = await _position(log)
            projects = await lookup.load_projects(log)
            current = projects.specs.get(name)
            if current is None:
                raise click.ClickException(
                    f"no project {name!r} (define it with `wake project add`)"
                )
            spec = _checked_spec(msgspec.structs.replace(current, **_fields(given)))
            changed = [f for f in _fields(given) if getattr(current, f) != getattr(spec, f)]
            if not changed:
                click.echo(f"project {name} unchanged: it already has these settings")
                return
            event = new_event(
                ProjectUpdated(name=name, spec=spec, changed=changed),
                app=names.SYSTEM_APP,
                actor=log.actor,
            )
            await _append(log, event, position, name)
        click.echo(f"updated project {name}: {', '.join(changed)} (event {event.event_id})")

    run(update())


@project.command(name="list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
def list_projects(data_dir: str, as_json: bool) -> None:
    """List the projects and how many apps each holds (`default` included)."""

    async def show_all() -> None:
        async with connected(settings_for(data_dir)) as log:
            registry, _ = await lookup.load_registry(log)
        rows = [
            {
                "name": DEFAULT_PROJECT,
                "apps": registry.in_project(DEFAULT_PROJECT),
                "spec": None,
            }
        ] + [
            {"name": n, "apps": registry.in_project(n), "spec": msgspec.to_builtins(s)}
            for n, s in sorted(registry.projects.specs.items())
        ]
        if as_json:
            sys.stdout.buffer.write(msgspec.json.encode(rows) + b"\n")
            return
        table = [("NAME", "APPS", "DESTINATIONS", "SOURCES")]
        for row in rows:
            spec = row["spec"]
            table.append(
                (
                    row["name"],
                    str(len(row["apps"])),
                    ", ".join(spec["destinations"]) if spec else "(each app's own namespace)",
                    ", ".join(spec["sources"]) if spec else "*",
                )
            )
        echo_columns(table)

    run(show_all())


@project.command()
@data_dir_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def show(data_dir: str, name: str, as_json: bool) -> None:
    """Show project NAME: its rules and its apps."""

    async def show_one() -> None:
        async with connected(settings_for(data_dir)) as log:
            registry, _ = await lookup.load_registry(log)
        if name == DEFAULT_PROJECT:
            spec = None
        elif name in registry.projects.specs:
            spec = msgspec.to_builtins(registry.projects.specs[name])
        else:
            raise click.ClickException(f"no project {name!r}")
        row = {"name": name, "spec": spec, "apps": sorted(registry.in_project(name))}
        if as_json:
            sys.stdout.buffer.write(msgspec.json.encode(row) + b"\n")
            return
        click.echo(f"Project {name}")
        if spec is None:
            click.echo(
                "  built in: each app may follow any repository and deploy into its own "
                "destination namespace only (never kube-system, kube-public, kube-node-lease "
                "or Wake's own); no cluster-scoped kind but that Namespace"
            )
        else:
            for key, value in spec.items():
                shown = ", ".join(value) if isinstance(value, list) else value
                click.echo(f"  {key + ':':<20} {shown if shown not in ('', []) else '-'}")
        click.echo(f"  {'apps:':<20} {', '.join(row['apps']) or '-'}")

    run(show_one())


@project.command()
@data_dir_option
@click.argument("name")
@click.option("--reason", default="", help="Why, for the record.")
def remove(data_dir: str, name: str, reason: str) -> None:
    """Remove project NAME; refused while an app is in it."""

    async def remove_one() -> None:
        async with connected(settings_for(data_dir)) as log:
            position = await _position(log)
            registry, _ = await lookup.load_registry(log)
            if name not in registry.projects.specs:
                raise click.ClickException(f"no project {name!r}")
            using = sorted(registry.in_project(name))
            if using:
                raise click.ClickException(
                    f"project {name!r} is in use by {', '.join(using)}: move or remove "
                    "those apps first (`wake app set APP --project ...`)"
                )
            event = new_event(
                ProjectRemoved(name=name, reason=reason),
                app=names.SYSTEM_APP,
                actor=log.actor,
            )
            await _append(log, event, position, name)
        click.echo(f"removed project {name}")

    run(remove_one())


async def _append(log: EventLog, event: Any, position: int, name: str) -> None:
    try:
        await log.append(event, expected_last_seq=position, on_subjects=PROJECT_SUBJECTS)
    except ConcurrencyConflict:
        raise click.ClickException(
            f"the projects changed while changing {name!r}; run the command again"
        ) from None
