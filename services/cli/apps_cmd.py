"""`wake app`: register, list, show and remove applications (as events)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import msgspec

from events import names, new_event
from events.payloads import ApplicationRegistered, ApplicationRemoved, AppSpec, IgnoreRule
from services.catalog import lookup
from services.catalog.describe import describe, short
from services.cli.connecting import (
    checked_app_name,
    connected,
    current_actor,
    data_dir_option,
    run,
    settings_for,
)
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
    "PlanBlocked",
)


@click.group()
def app() -> None:
    """Register and inspect applications."""


@app.command()
@data_dir_option
@click.argument("name")
@click.option("--repo", "repo_url", required=True, help="Git repository URL (or local path).")
@click.option("--path", default=".", show_default=True, help="Directory of the app in the repo.")
@click.option("--namespace", required=True, help="Namespace for namespaced resources without one.")
@click.option("--ref", default="main", show_default=True, help="Branch, tag or commit to follow.")
@click.option("--manual", is_flag=True, help="Plans wait for `wake approve` instead of auto-sync.")
@click.option("--no-prune", is_flag=True, help="Never delete resources that left the repo.")
@click.option("--self-heal", is_flag=True, help="Undo drift found in the cluster by re-applying.")
@click.option(
    "--renderer",
    type=click.Choice(["auto", "yaml", "kustomize", "jsonnet", "helm"]),
    default="auto",
    show_default=True,
    help="How the app path becomes manifests (auto: by the files found there).",
)
@click.option(
    "--option", "renderer_options", multiple=True, metavar="KEY=VALUE", help="Renderer option."
)
@click.option("--ext-var", "ext_vars", multiple=True, metavar="KEY=VALUE", help="Jsonnet ext var.")
@click.option(
    "--tla", "tla", multiple=True, metavar="KEY=VALUE", help="Jsonnet top-level argument."
)
@click.option("--values", "helm_values", multiple=True, metavar="FILE", help="Helm values file.")
@click.option("--release", "helm_release", default="", help="Helm release name (default: NAME).")
@click.option("--context", "context", default="", help="Kubeconfig context of the destination.")
@click.option(
    "--ignore",
    "ignores",
    multiple=True,
    metavar="[KIND[/NAME]:]POINTER",
    help="Ignore differences at this JSON pointer (like Argo CD's ignoreDifferences).",
)
@click.option("--health-timeout", type=click.FloatRange(min=1), default=300.0, show_default=True)
@click.option("--git-credential", default="", help="Name of a configured git credential.")
@click.option("--webhook-secret-file", default="", help="This app's own webhook secret file.")
@click.option(
    "--adopt",
    is_flag=True,
    help="Take over objects that exist already: another app's or ones Wake did not create "
    "(without it, such an object blocks the plan).",
)
@click.option(
    "--create-namespace",
    is_flag=True,
    help="Create the destination namespace (labelled for the app) when it does not exist "
    "and the repository has no Namespace for it, like Argo CD's CreateNamespace=true.",
)
def add(
    data_dir: str,
    name: str,
    repo_url: str,
    path: str,
    namespace: str,
    ref: str,
    manual: bool,
    no_prune: bool,
    self_heal: bool,
    renderer: str,
    renderer_options: tuple[str, ...],
    ext_vars: tuple[str, ...],
    tla: tuple[str, ...],
    helm_values: tuple[str, ...],
    helm_release: str,
    context: str,
    ignores: tuple[str, ...],
    health_timeout: float,
    git_credential: str,
    webhook_secret_file: str,
    adopt: bool,
    create_namespace: bool,
) -> None:
    """Register application NAME: Wake starts following REPO at PATH."""
    from services.wiring.git import (
        CredentialError,
        GitCredentials,
        InvalidRepoPath,
        RepoPath,
        RepoUnreachable,
        check_reachable,
    )

    name = checked_app_name(name)
    try:
        app_path = RepoPath.parse(path)
    except InvalidRepoPath as exc:
        raise click.BadParameter(str(exc), param_hint="--path") from None
    try:
        names.app_name(namespace)
    except names.InvalidName:
        raise click.BadParameter(
            f"invalid namespace {namespace!r}", param_hint="--namespace"
        ) from None
    if "://" not in repo_url and not repo_url.startswith("git@") and Path(repo_url).exists():
        # Services run elsewhere (other working directories, other containers):
        # a local path must not depend on where this command was typed.
        repo_url = str(Path(repo_url).resolve())
    spec = AppSpec(
        repo_url=repo_url,
        path=str(app_path),
        ref=ref,
        namespace=namespace,
        auto_sync=not manual,
        prune=not no_prune,
        self_heal=self_heal,
        renderer=renderer,
        renderer_options=_pairs(renderer_options, "--option"),
        jsonnet_ext_vars=_pairs(ext_vars, "--ext-var"),
        jsonnet_tla=_pairs(tla, "--tla"),
        helm_values=list(helm_values),
        helm_release=helm_release,
        destination_context=context,
        ignore_differences=[_ignore_rule(value) for value in ignores],
        health_timeout_seconds=health_timeout,
        git_credential=git_credential,
        webhook_secret_file=webhook_secret_file,
        adopt=adopt,
        create_namespace=create_namespace,
    )

    async def register() -> None:
        try:
            # The same credential sources as the services: the CLI's own
            # WAKE_GIT_CREDENTIALS_DIR and WAKE_GIT_TOKEN_<NAME>.
            credential = GitCredentials.from_settings(settings_for(data_dir)).get(git_credential)
            await check_reachable(repo_url, credential=credential)
        except (RepoUnreachable, CredentialError) as exc:
            raise click.ClickException(str(exc)) from None
        async with connected(settings_for(data_dir)) as log:
            position = await log.app_position(name)
            if await lookup.app_spec(log, name) is not None:
                raise click.ClickException(f"application {name!r} is already registered")
            event = new_event(ApplicationRegistered(spec=spec), app=name, actor=current_actor())
            try:
                appended = await log.append(event, expected_last_seq=position)
            except ConcurrencyConflict:
                raise click.ClickException(
                    f"application {name!r} changed while registering it; run the command again"
                ) from None
            click.echo(f"registered {name} (event {event.event_id}, seq {appended.seq})")

    run(register())


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
        click.echo(f"{'NAME':<20} {'SYNC':<7} {'REVISION':<9} {'STATE':<18} SOURCE")
        for row in rows:
            spec = row["spec"]
            click.echo(
                f"{row['name']:<20} {row['sync_policy']:<7} {short(row['revision']):<9} "
                f"{row['state']:<18} {spec['repo_url']} {spec['path']}@{spec['ref']}"
            )

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
            click.echo(f"  {key + ':':<24} {value}")
        click.echo(f"  {'state:':<24} {row['state']}")
        click.echo(f"  {'revision:':<24} {row['revision'] or '-'}")
        click.echo(f"  {'applied revision:':<24} {row['applied_revision'] or '-'}")
        if row["rolled_back_to"]:
            click.echo(
                f"  {'rolled back:':<24} to {row['rolled_back_to']}; stays there until a new "
                f"commit or `wake sync {name} --resume`"
            )
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
def remove(data_dir: str, name: str, reason: str) -> None:
    """Stop managing application NAME. Its resources stay in the cluster."""
    name = checked_app_name(name)

    async def remove_one() -> None:
        async with connected(settings_for(data_dir)) as log:
            position = await log.app_position(name)
            if await lookup.app_spec(log, name) is None:
                raise click.ClickException(f"no application {name!r} is registered")
            event = new_event(ApplicationRemoved(reason=reason), app=name, actor=current_actor())
            try:
                await log.append(event, expected_last_seq=position)
            except ConcurrencyConflict:
                raise click.ClickException(
                    f"application {name!r} changed while removing it; run the command again"
                ) from None
        click.echo(f"removed {name}; its resources were left in the cluster")

    run(remove_one())


async def _status(log: EventLog, name: str, spec: AppSpec) -> dict:
    """Where an app stands, from the last event of each type that tells it."""
    latest = {}
    for event_type in STATUS_TYPES:
        stored = await log.last_event(name, event_type)
        if stored is not None:
            latest[event_type] = stored
    ordered = sorted(latest.values(), key=lambda s: s.seq)
    state = "registered"
    states = {
        "RevisionDetected": "detected",
        "ManifestsRendered": "rendered",
        "RenderFailed": "render-failed",
        "PlanCreated": "planned",
        "ApprovalRequested": "awaiting-approval",
        "ApplySucceeded": "synced",
        "ApplyFailed": "apply-failed",
        "PlanBlocked": "blocked",
    }
    for stored in ordered:
        state = states.get(stored.event.type, state)
    revision = latest.get("RevisionDetected")
    applied = latest.get("ApplySucceeded")
    rolled_back_to = applied.event.payload.rollback_of if applied else None
    blocked = latest.get("PlanBlocked") if state == "blocked" else None
    if rolled_back_to and state == "synced":
        state = "rolled-back"
    return {
        "name": name,
        "spec": msgspec.to_builtins(spec),
        "sync_policy": "auto" if spec.auto_sync else "manual",
        "state": state,
        "revision": revision.event.payload.commit if revision else None,
        "applied_revision": applied.event.payload.commit if applied else None,
        # Set while the app stays on a rollback: auto-sync does not move it until a
        # new commit arrives or `wake sync NAME --resume`.
        "rolled_back_to": rolled_back_to,
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
