"""The `wake` command line.

Each command group lives in a module of its own under `services/cli/` and is
imported only when it is invoked, so `wake --help` stays fast and a command
never pays for the libraries of another.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of a click command or group
_COMMANDS: dict[str, str] = {
    "app": "services.cli.apps_cmd:app",
    "approve": "services.cli.plans_cmd:approve",
    "demo": "services.cli.demo_cmd:demo",
    "diff": "services.cli.rollback_cmd:diff",
    "events": "services.cli.events_cmd:events",
    "history": "services.cli.history_cmd:history",
    "infra": "services.cli.infra_cmd:infra",
    "key": "services.cli.keys_cmd:key",
    "notify": "services.cli.notify_cmd:notify",
    "plans": "services.cli.plans_cmd:plans",
    "project": "services.cli.projects_cmd:project",
    "reject": "services.cli.plans_cmd:reject",
    "replay": "services.cli.replay_cmd:replay",
    "rollback": "services.cli.rollback_cmd:rollback",
    "run": "services.cli.run_cmd:run_service_command",
    "sandbox": "services.cli.sandbox_cmd:sandbox",
    "state": "services.cli.replay_cmd:state",
    "sync": "services.cli.plans_cmd:sync",
    "token": "services.cli.tokens_cmd:token",
    "trace": "services.cli.trace_cmd:trace",
    "up": "services.cli.run_cmd:up",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="wake")
def cli() -> None:
    """Wake: an event-sourced GitOps control plane."""
    # What a `wake` command and its children create (mirrors, logs, the NATS
    # store, endpoints.json) is readable by this user only.
    from services.wiring.private import use_private_umask

    use_private_umask()
