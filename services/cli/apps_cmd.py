"""`wake app`: register, list, show and remove applications (as events)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import msgspec
from click.core import ParameterSource

from events import names, new_event
from events.payloads import (
    ApplicationRegistered,
    ApplicationRemoved,
    ApplicationUpdated,
    AppSpec,
    IgnoreRule,
    ManifestsRendered,
)
from services.catalog import lookup, syncing
from services.catalog.describe import describe, short, standing
from services.cli.connecting import (
    checked_app_name,
    checked_approvers,
    connected,
    data_dir_option,
    echo_columns,
    run,
    settings_for,
)
from services.projects.rules import DEFAULT_PROJECT
from services.renderer.options import RENDERER_OPTIONS, unknown_options
from services.wiring import telemetry
from services.wiring.eventlog import ConcurrencyConflict, EventLog

STATUS_TYPES = (
    "RevisionDetected",
    "ManifestsRendered",
    "RenderFailed",
    "PlanCreated",
    "ApprovalRequested",
    "ApplySucceeded",
    "ApplyFailed",
    "HealthChanged",
    "ApplyRetryScheduled",
    "SourceFailed",
    "SourceRecovered",
    "PlanBlocked",
)


@click.group()
def app() -> None:
    """Register and inspect applications."""


# --- the options of `wake app add` and `wake app set` ------------------------------


@dataclass(frozen=True, slots=True)
class SpecOption:
    """One option of `wake app add` and `wake app set`, and the AppSpec fields it sets.

    `to_spec` turns the option's value into fields (a click.BadParameter
    names the option if the value is bad); by default the field is the
    option's parameter name, taking the value as given.
    """

    decls: tuple[str, ...]
    attrs: dict[str, Any]
    to_spec: Callable[[Any], dict[str, Any]]
    required_to_add: bool = False

    @property
    def name(self) -> str:
        return click.Option(list(self.decls), **self.attrs).name or ""


def spec_option(
    *decls: str,
    to_spec: Callable[[Any], dict[str, Any]] | None = None,
    required_to_add: bool = False,
    **attrs: Any,
) -> SpecOption:
    if to_spec is None:
        name = click.Option(list(decls), **attrs).name

        def to_spec(value: Any) -> dict[str, Any]:
            return {name: value}

    return SpecOption(decls, attrs, to_spec, required_to_add)


def _ref(value: str | None) -> dict[str, Any]:
    from services.wiring.git import FOLLOW_HEAD

    return {"ref": value or FOLLOW_HEAD}


def _repo_url(value: str) -> dict[str, Any]:
    if "://" not in value and not value.startswith("git@") and Path(value).exists():
        # Services run elsewhere (other working directories, other containers):
        # a local path must not depend on where this command was typed.
        value = str(Path(value).resolve())
    return {"repo_url": value}


def _app_path(value: str) -> dict[str, Any]:
    from services.wiring.git import InvalidRepoPath, RepoPath

    try:
        return {"path": str(RepoPath.parse(value))}
    except InvalidRepoPath as exc:
        raise click.BadParameter(str(exc), param_hint="--path") from None


def _namespace(value: str) -> dict[str, Any]:
    try:
        names.registrable_app_name(value)
    except names.InvalidName:
        raise click.BadParameter(f"invalid namespace {value!r}", param_hint="--namespace") from None
    return {"namespace": value}


# Add an option here and both commands have it: `add` registers with it,
# `set` changes the fields it sets only when it is given.
SPEC_OPTIONS: list[SpecOption] = [
    spec_option(
        "--repo",
        "repo_url",
        help="Git repository URL (or local path).",
        to_spec=_repo_url,
        required_to_add=True,
    ),
    spec_option(
        "--path",
        default=".",
        show_default=True,
        help="Directory of the app in the repo.",
        to_spec=_app_path,
    ),
    spec_option(
        "--namespace",
        help="Namespace for namespaced resources without one.",
        to_spec=_namespace,
        required_to_add=True,
    ),
    spec_option(
        "--ref",
        help="Branch, tag or full commit id to follow "
        "[default: the repository's default branch (HEAD)].",
        to_spec=_ref,
    ),
    spec_option(
        "--manual/--auto-sync",
        default=False,
        help="Plans wait for `wake approve` instead of auto-sync.",
        to_spec=lambda value: {"auto_sync": not value},
    ),
    spec_option(
        "--no-prune/--prune",
        default=False,
        help="Never delete resources that left the repo.",
        to_spec=lambda value: {"prune": not value},
    ),
    spec_option(
        "--self-heal/--no-self-heal",
        default=False,
        help="Undo drift found in the cluster by re-applying.",
    ),
    spec_option(
        "--renderer",
        type=click.Choice(["auto", "yaml", "kustomize", "jsonnet", "helm"]),
        default="auto",
        show_default=True,
        help="How the app path becomes manifests (auto: by the files found there).",
    ),
    spec_option(
        "--option",
        "renderer_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="Renderer option, one of: "
        + "; ".join(f"{key}: {what}" for key, what in RENDERER_OPTIONS.items())
        + ".",
        to_spec=lambda values: {"renderer_options": _renderer_options(values)},
    ),
    spec_option(
        "--ext-var",
        "ext_vars",
        multiple=True,
        metavar="KEY=VALUE",
        help="Jsonnet ext var.",
        to_spec=lambda values: {"jsonnet_ext_vars": _pairs(values, "--ext-var")},
    ),
    spec_option(
        "--tla",
        "tla",
        multiple=True,
        metavar="KEY=VALUE",
        help="Jsonnet top-level argument.",
        to_spec=lambda values: {"jsonnet_tla": _pairs(values, "--tla")},
    ),
    spec_option(
        "--ext-code",
        "ext_code",
        multiple=True,
        metavar="KEY=CODE",
        help="Jsonnet ext var given as code (Argo CD's code: true): 3 is a number.",
        to_spec=lambda values: {"jsonnet_ext_code": _pairs(values, "--ext-code")},
    ),
    spec_option(
        "--tla-code",
        "tla_code",
        multiple=True,
        metavar="KEY=CODE",
        help="Jsonnet top-level argument given as code: replicas=3 is the number 3.",
        to_spec=lambda values: {"jsonnet_tla_code": _pairs(values, "--tla-code")},
    ),
    spec_option(
        "--allow-empty/--no-allow-empty",
        default=False,
        help="A render with no resources is a success, not an error.",
    ),
    spec_option(
        "--values",
        "helm_values",
        multiple=True,
        metavar="FILE",
        help="Helm values file.",
        to_spec=lambda values: {"helm_values": list(values)},
    ),
    spec_option("--release", "helm_release", default="", help="Helm release name (default: NAME)."),
    spec_option(
        "--context",
        "destination_context",
        default="",
        help="Kubeconfig context of the destination.",
    ),
    spec_option(
        "--ignore",
        "ignores",
        multiple=True,
        metavar="[KIND[/NAME]:]POINTER",
        help="Ignore differences at this JSON pointer (like Argo CD's ignoreDifferences).",
        to_spec=lambda values: {"ignore_differences": [_ignore_rule(v) for v in values]},
    ),
    spec_option(
        "--health-timeout",
        "health_timeout_seconds",
        type=click.FloatRange(min=1),
        default=300.0,
        show_default=True,
        help="Seconds an applied revision may take to become healthy.",
    ),
    spec_option("--git-credential", default="", help="Name of a configured git credential."),
    spec_option("--webhook-secret-file", default="", help="This app's own webhook secret file."),
    spec_option(
        "--retry-limit",
        type=click.IntRange(min=0),
        default=5,
        show_default=True,
        help="Retries of a failed apply (0: none), as Argo CD's retry limit.",
    ),
    spec_option(
        "--retry-backoff",
        "retry_backoff_seconds",
        type=click.FloatRange(min=0),
        default=5.0,
        show_default=True,
        help="Seconds before the first retry.",
    ),
    spec_option(
        "--retry-backoff-factor",
        type=click.FloatRange(min=1),
        default=2.0,
        show_default=True,
        help="Each retry waits this many times longer than the one before.",
    ),
    spec_option(
        "--retry-max-backoff",
        "retry_max_backoff_seconds",
        type=click.FloatRange(min=0),
        default=180.0,
        show_default=True,
        help="Longest wait between two tries, in seconds.",
    ),
    spec_option(
        "--adopt/--no-adopt",
        default=False,
        help="Take over objects that exist already: another app's or ones Wake did not create "
        "(without it, such an object blocks the plan).",
    ),
    spec_option(
        "--project",
        default="",
        help="The project that bounds what the app may touch (`wake project`); "
        "default: the built-in `default` project (the app's own namespace only).",
        to_spec=lambda value: {"project": "" if value == DEFAULT_PROJECT else value},
    ),
    spec_option(
        "--approver",
        "approvers",
        multiple=True,
        metavar="ID",
        help="Who may approve the app's plans (repeatable), besides its project's approvers: "
        "matrix:@user:server, slack:UID, mattermost:USERNAME, discord:USERID, teams:ID, "
        "token:NAME (a console token), group:NAME (of the notify file) or cli:USER (the CLI's "
        "user:USER). None anywhere: any operator may approve through the CLI or an approver "
        "token through the console, nobody from chat. `--approver ''` clears the list.",
        to_spec=lambda values: {"approvers": checked_approvers(values)},
    ),
    spec_option(
        "--separate-approver/--no-separate-approver",
        default=False,
        help="Refuse an approval by the author of the commit the plan is for.",
    ),
    spec_option(
        "--create-namespace/--no-create-namespace",
        default=False,
        help="Create the destination namespace (labelled for the app) when it does not exist "
        "and the repository has no Namespace for it, like Argo CD's CreateNamespace=true.",
    ),
]

# Where a value comes from when the option was not typed: `set` leaves its field alone.
UNGIVEN = (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)

# A change of these is checked against the repository, as `wake app add` checks.
SOURCE_FIELDS = ("repo_url", "ref", "git_credential")
# A change of these is checked against the app's project.
PROJECT_FIELDS = ("project", "repo_url", "git_credential")


async def check_project(log: EventLog, spec: AppSpec, *, system_namespace: str) -> None:
    """A click error if the app's project does not exist or forbids its source or credential."""
    from services.projects.rules import Missing, credential_error, project_of, source_error
    from services.wiring.git import normalize_url, redact

    projects = await lookup.load_projects(log)
    project = project_of(spec, projects.specs, system_namespace=system_namespace)
    if isinstance(project, Missing):
        raise click.ClickException(str(project))
    error = source_error(
        redact(spec.repo_url), project, normalized=normalize_url(spec.repo_url)
    ) or credential_error(spec.git_credential, project)
    if error:
        raise click.ClickException(error)


def spec_options(*, adding: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The SPEC_OPTIONS as click options: with `add`'s required ones, or all optional for `set`."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(SPEC_OPTIONS):
            attrs = dict(option.attrs)
            if adding:
                attrs["required"] = option.required_to_add
            else:
                # `set` changes only what is given; a default shown would mislead.
                attrs.pop("show_default", None)
            command = click.option(*option.decls, **attrs)(command)
        return command

    return decorate


def spec_fields(values: dict[str, Any]) -> dict[str, Any]:
    """The AppSpec fields that the options in `values` ({parameter name: value}) set."""
    fields: dict[str, Any] = {}
    for option in SPEC_OPTIONS:
        if option.name in values:
            fields.update(option.to_spec(values[option.name]))
    return fields


async def check_source(data_dir: str, spec: AppSpec) -> str:
    """The commit the spec's ref names now, read as git-watcher reads it; else a click error.

    The credential comes from the same sources as the services': the CLI's
    own WAKE_GIT_CREDENTIALS_DIR and WAKE_GIT_TOKEN_<NAME>.
    """
    from services.wiring.git import (
        CredentialError,
        GitCredentials,
        RefNotFound,
        RepoUnreachable,
        check_ref,
    )

    try:
        credential = GitCredentials.from_settings(settings_for(data_dir)).for_url(
            spec.git_credential, spec.repo_url
        )
        return await check_ref(spec.repo_url, spec.ref, credential=credential)
    except (RepoUnreachable, CredentialError, RefNotFound) as exc:
        raise click.ClickException(str(exc)) from None


@app.command()
@data_dir_option
@click.argument("name")
@spec_options(adding=True)
def add(data_dir: str, name: str, **options: Any) -> None:
    """Register application NAME: Wake starts following REPO at PATH.

    The repository is read first: the ref must name a branch, a tag or a
    commit it has. Without --ref the app follows the repository's default
    branch (HEAD), whichever it is then.

    A failed apply is retried --retry-limit times, after --retry-backoff seconds,
    multiplied by --retry-backoff-factor at each retry up to --retry-max-backoff;
    then the app waits for a new commit or `wake sync NAME`.
    """
    name = checked_app_name(name)
    try:
        names.registrable_app_name(name)
    except names.InvalidName as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    spec = AppSpec(**spec_fields(options))
    _check_jsonnet_arguments(spec)

    async def register() -> None:
        settings = settings_for(data_dir)
        async with connected(settings) as log:
            await check_project(log, spec, system_namespace=settings.system_namespace)
        await check_source(data_dir, spec)
        async with connected(settings) as log:
            position = await log.app_position(name)
            if await lookup.app_spec(log, name) is not None:
                raise click.ClickException(
                    f"application {name!r} is already registered (change it with `wake app set`)"
                )
            event = new_event(
                ApplicationRegistered(spec=spec),
                app=name,
                actor=log.actor,
                traceparent=telemetry.traceparent(),
            )
            try:
                appended = await log.append(event, expected_last_seq=position)
            except ConcurrencyConflict:
                raise click.ClickException(
                    f"application {name!r} changed while registering it; run the command again"
                ) from None
            click.echo(f"registered {name} (event {event.event_id}, seq {appended.seq})")

    run(register())


def _renderer_options(values: tuple[str, ...]) -> dict[str, str]:
    """`--option KEY=VALUE`s, checked: a known option, naming paths inside the repository.

    Raises click.BadParameter for an unknown option (listing the known ones) or
    an option path that is not a repository path.
    """
    from services.wiring.git import InvalidRepoPath, RepoPath

    options = _pairs(values, "--option")
    unknown = unknown_options(options)
    if unknown is not None:
        raise click.BadParameter(unknown, param_hint="--option")
    for key, value in options.items():
        # Both options name paths in the repository; the renderer would refuse them later.
        items = [item.strip() for item in value.split(",")] if key == "libs" else [value]
        for item in filter(None, items):
            try:
                RepoPath.parse(item)
            except InvalidRepoPath as exc:
                raise click.BadParameter(f"{key}: {exc}", param_hint="--option") from None
    return options


def _check_jsonnet_arguments(spec: AppSpec) -> None:
    """Refuse a jsonnet argument given both as a string and as code (click.BadParameter)."""
    for strings, code, flags in (
        (spec.jsonnet_ext_vars, spec.jsonnet_ext_code, ("--ext-var", "--ext-code")),
        (spec.jsonnet_tla, spec.jsonnet_tla_code, ("--tla", "--tla-code")),
    ):
        both = sorted(set(strings) & set(code))
        if both:
            raise click.BadParameter(
                f"{', '.join(both)} given both as {flags[0]} and as {flags[1]}",
                param_hint=flags[1],
            )


@app.command(name="set")
@data_dir_option
@click.argument("name")
@spec_options(adding=False)
@click.pass_context
def set_(ctx: click.Context, data_dir: str, name: str, **options: Any) -> None:
    """Change registered application NAME: only the options given (an ApplicationUpdated).

    A repeated option (--option, --values, --ignore...) replaces the whole
    list. A new repository, ref or credential is checked as `wake app add`
    checks it; a new path or ref takes effect at once.
    """
    name = checked_app_name(name)
    given = {
        key: value
        for key, value in options.items()
        if ctx.get_parameter_source(key) not in (None, *UNGIVEN)
    }
    if not given:
        raise click.UsageError("nothing to change: give the options to set (see --help)")
    fields = spec_fields(given)

    async def update() -> None:
        async with connected(settings_for(data_dir)) as log:
            # The position first: an update appended on it conflicts with
            # anything that lands on the app while we check the source.
            position = await log.app_position(name)
            current = await lookup.app_spec(log, name)
            if current is None:
                raise click.ClickException(f"no application {name!r} is registered")
            spec = msgspec.structs.replace(current, **fields)
            _check_jsonnet_arguments(spec)
            changed = [f for f in fields if getattr(current, f) != getattr(spec, f)]
            if not changed:
                click.echo(f"{name} unchanged: it already has these settings")
                return
            if any(f in PROJECT_FIELDS for f in changed):
                await check_project(
                    log, spec, system_namespace=settings_for(data_dir).system_namespace
                )
            if any(f in SOURCE_FIELDS for f in changed):
                await check_source(data_dir, spec)
            payload = ApplicationUpdated(spec=spec, changed=changed)
            event = new_event(
                payload, app=name, actor=log.actor, traceparent=telemetry.traceparent()
            )
            try:
                appended = await log.append(event, expected_last_seq=position)
            except ConcurrencyConflict:
                raise click.ClickException(
                    f"application {name!r} changed while updating it; run the command again"
                ) from None
        click.echo(
            f"updated {name}: {', '.join(changed)} (event {event.event_id}, seq {appended.seq})"
        )

    run(update())


def _pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint=option)
        pairs[key] = item
    return pairs


def _ignore_rule(value: str) -> IgnoreRule:
    """`[KIND[/NAME]:]/json/pointer` as an IgnoreRule."""
    scope, sep, pointer = value.rpartition(":")
    if not pointer.startswith("/"):
        raise click.BadParameter(
            f"{value!r}: the JSON pointer must start with '/'", param_hint="--ignore"
        )
    kind, _, name = scope.partition("/") if sep else ("", "", "")
    return IgnoreRule(json_pointers=[pointer], kind=kind, name=name)


@app.command(name="list")
@data_dir_option
@click.option("--json", "as_json", is_flag=True)
def list_apps(data_dir: str, as_json: bool) -> None:
    """List registered applications and where each stands."""

    async def show_all() -> None:
        async with connected(settings_for(data_dir)) as log:
            registry, _ = await lookup.load_registry(log)
            rows = [
                await _status(log, application.name, application.spec)
                for application in sorted(registry.apps.values(), key=lambda a: a.name)
            ]
        if as_json:
            sys.stdout.buffer.write(msgspec.json.encode(rows) + b"\n")
            return
        if not rows:
            click.echo("no applications registered (wake app add NAME --repo URL ...)")
            return
        table = [("NAME", "SYNC", "HEALTH", "REVISION", "STATE", "SOURCE")] + [
            (
                row["name"],
                row["sync_policy"],
                row["health"] or "-",
                short(row["revision"]) or "-",
                row["state"],
                f"{row['spec']['repo_url']} {row['spec']['path']}@{row['spec']['ref']}",
            )
            for row in rows
        ]
        echo_columns(table)

    run(show_all())


@app.command()
@data_dir_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def show(data_dir: str, name: str, as_json: bool) -> None:
    """Show application NAME: its spec and its latest events."""
    name = checked_app_name(name)

    async def show_one() -> None:
        async with connected(settings_for(data_dir)) as log:
            spec = await lookup.app_spec(log, name)
            if spec is None:
                raise click.ClickException(f"no application {name!r} is registered")
            row = await _status(log, name, spec)
        if as_json:
            sys.stdout.buffer.write(msgspec.json.encode(row) + b"\n")
            return
        click.echo(f"Application {name}")
        for key, value in row["spec"].items():
            if key == "project" and not value:
                value = DEFAULT_PROJECT
            click.echo(f"  {key + ':':<24} {value}")
        click.echo(f"  {'state:':<24} {row['state']}")
        click.echo(f"  {'sync:':<24} {row['sync']}")
        click.echo(f"  {'revision:':<24} {row['revision'] or '-'}")
        click.echo(f"  {'applied revision:':<24} {row['applied_revision'] or '-'}")
        click.echo(f"  {'health:':<24} {row['health'] or '-'}")
        if row["source_error"]:
            failure = row["source_error"]
            click.echo(
                f"  {'source error:':<24} since {failure['since']} "
                f"(seq {failure['seq']}): {failure['error']}"
            )
        if row["rolled_back_to"]:
            click.echo(
                f"  {'rolled back:':<24} to {row['rolled_back_to']}; stays there until a new "
                f"commit or `wake sync {name} --resume`"
            )
        if row["retry"]:
            click.echo(f"  {'retries:':<24} {row['retry']}")
        if row["blocked"]:
            blocked = row["blocked"]
            click.echo(
                f"  {'blocked:':<24} plan {blocked['plan_id']} applies nothing until a new "
                "commit fixes:"
            )
            for error in blocked["errors"]:
                click.echo(f"  {'':<24} {error}")
        click.echo("Latest events:")
        for event_type, item in row["latest"].items():
            click.echo(f"  {item['seq']:>7}  {event_type:<20} {item['summary']}")

    run(show_one())


@app.command()
@data_dir_option
@click.argument("name")
@click.option("--reason", default="", help="Why, for the record.")
@click.option(
    "--cascade",
    is_flag=True,
    help="Also delete what the app applied (its last inventory, still labelled for it; "
    "never kube-system, kube-public, kube-node-lease, default or Wake's own namespace). "
    "Registering the app again re-applies it from Git.",
)
def remove(data_dir: str, name: str, reason: str, cascade: bool) -> None:
    """Stop managing application NAME. Its resources stay in the cluster unless --cascade."""
    name = checked_app_name(name)

    async def remove_one() -> None:
        async with connected(settings_for(data_dir)) as log:
            position = await log.app_position(name)
            if await lookup.app_spec(log, name) is None:
                raise click.ClickException(f"no application {name!r} is registered")
            event = new_event(
                ApplicationRemoved(reason=reason, cascade=cascade),
                app=name,
                actor=log.actor,
                traceparent=telemetry.traceparent(),
            )
            try:
                await log.append(event, expected_last_seq=position)
            except ConcurrencyConflict:
                raise click.ClickException(
                    f"application {name!r} changed while removing it; run the command again"
                ) from None
        if cascade:
            click.echo(
                f"removed {name}; the applier deletes what it applied "
                f"(ResourceDeleted events: wake events tail --app {name})"
            )
        else:
            click.echo(f"removed {name}; its resources were left in the cluster")

    run(remove_one())


async def _status(log: EventLog, name: str, spec: AppSpec) -> dict:
    """Where an app stands, from the last event of each type that tells it."""
    latest = {}
    for event_type in STATUS_TYPES:
        stored = await log.last_event(name, event_type)
        if stored is not None:
            latest[event_type] = stored
    current = standing({t: stored.seq for t, stored in latest.items()})
    ordered = sorted((stored for t, stored in latest.items() if t in current), key=lambda s: s.seq)
    state = "registered"
    states = {
        "RevisionDetected": "detected",
        "ManifestsRendered": "rendered",
        "RenderFailed": "render-failed",
        "PlanCreated": "planned",
        "ApprovalRequested": "awaiting-approval",
        "ApplySucceeded": "synced",
        "ApplyFailed": "apply-failed",
        "ApplyRetryScheduled": "retrying",
        "PlanBlocked": "blocked",
    }
    for stored in ordered:
        state = states.get(stored.event.type, state)
        rendered = stored.event.payload
        if isinstance(rendered, ManifestsRendered) and rendered.unchanged_from:
            # Renders as the applied bundle: synced at the new commit, no plan.
            state = "synced"
    revision = latest.get("RevisionDetected")
    applied = latest.get("ApplySucceeded")
    rolled_back_to = applied.event.payload.rollback_of if applied else None
    blocked = latest.get("PlanBlocked") if state == "blocked" else None
    sync = _verdict(revision, latest.get("ManifestsRendered"), applied, state)
    if state == "synced" and not sync.synced:
        # The last event says "applied", but not the latest desired revision
        # (an older one applied late, say): never claim synced.
        state = "out-of-sync"
    if rolled_back_to and state == "synced":
        state = "rolled-back"
    failed = latest.get("ApplyFailed")
    retry = latest.get("ApplyRetryScheduled")
    retrying = None
    if state == "retrying" and retry is not None:
        retrying = (
            f"try {retry.event.payload.attempt} of {spec.retry_limit + 1} due at "
            f"{retry.event.payload.due_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    elif state == "apply-failed" and failed is not None:
        retrying = (
            f"none left after try {failed.event.payload.attempt}: waits for a new commit "
            f"or `wake sync {name}`"
        )
    health = latest.get("HealthChanged")
    source_error = await _source_error(log, name, latest.get("SourceFailed"), current)
    if source_error is not None and state != "rolled-back":
        # What was synced may no longer be what Git says: never claim it is. A
        # rollback stays where it was put on purpose (Git is not needed for it);
        # the source error has its own line.
        state = "source-failed"
    return {
        "name": name,
        "spec": msgspec.to_builtins(spec),
        "sync_policy": "auto" if spec.auto_sync else "manual",
        "state": state,
        # "synced", or "out of sync: applied abc1234, desired def5678 (awaiting-approval)":
        # services/catalog/syncing.py, the rule the projector applies too.
        "sync": str(sync),
        "revision": revision.event.payload.commit if revision else None,
        "applied_revision": applied.event.payload.commit if applied else None,
        # Set while the app stays on a rollback: auto-sync does not move it until a
        # new commit arrives or `wake sync NAME --resume`.
        "rolled_back_to": rolled_back_to,
        # While a failed apply is retried, or once its retries ran out.
        "retry": retrying,
        "health": health.event.payload.status if health else None,
        # The SourceFailed that stands (git-watcher cannot read the source), if any.
        "source_error": source_error,
        # Why the app is stuck: its latest plan is blocked (nothing of it applied).
        "blocked": {
            "plan_id": blocked.event.payload.plan_id,
            # ResourceErrors: `Kind ns/name: error` as text, {ref, error} as JSON.
            "errors": blocked.event.payload.errors,
        }
        if blocked
        else None,
        "latest": {
            stored.event.type: {
                "seq": stored.seq,
                "event_id": stored.event.event_id,
                "summary": describe(stored.event),
            }
            for stored in ordered
        },
    }


def _verdict(revision, rendered, applied, state: str) -> syncing.Verdict:
    """The shared sync rule on the app's latest RevisionDetected, render and apply."""
    desired = None
    if revision is not None:
        desired = syncing.Desired(revision.event.payload.commit)
        if applied is not None and applied.event.payload.rollback_of and applied.seq > revision.seq:
            # Rolled back since the latest detection: the rollback is what is desired.
            desired = syncing.Desired(
                applied.event.payload.commit, applied.event.payload.bundle_digest
            )
        elif rendered is not None and rendered.event.causation_id == revision.event.event_id:
            payload = rendered.event.payload
            desired = syncing.Desired(payload.commit, payload.bundle_digest, payload.unchanged_from)
        elif rendered is not None and rendered.event.payload.commit == desired.commit:
            payload = rendered.event.payload
            desired = syncing.Desired(payload.commit, payload.bundle_digest, payload.unchanged_from)
    done = applied.event.payload if applied is not None else None
    return syncing.verdict(
        desired,
        syncing.Applied(done.commit, done.bundle_digest) if done is not None else None,
        pending=_PENDING.get(state, ""),
    )


# What an app that is not synced waits for, by its state, in `sync: out of sync: ... (why)`.
_PENDING = {
    "detected": "rendering",
    "rendered": "planning",
    "render-failed": "render failed",
    "planned": "plan made, not applied yet",
    "awaiting-approval": "plan awaiting approval",
    "apply-failed": "apply failed",
    "retrying": "apply failed, retrying",
    "blocked": "plan blocked",
}


async def _source_error(log: EventLog, name: str, failed, current: set[str]) -> dict | None:
    if failed is None or "SourceFailed" not in current:
        return None
    registered = await log.last_event(name, ApplicationRegistered.event_type)
    if registered is not None and failed.seq < registered.seq:
        return None  # a failure of an earlier registration of this name
    payload = failed.event.payload
    return {
        "seq": failed.seq,
        "event_id": failed.event.event_id,
        "since": failed.event.occurred_at.isoformat(),
        "stage": payload.stage,
        "error": payload.error,
    }
