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
    "events": "services.cli.events_cmd:events",
    "infra": "services.cli.infra_cmd:infra",
    "sandbox": "services.cli.sandbox_cmd:sandbox",
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
