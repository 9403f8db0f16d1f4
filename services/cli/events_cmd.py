"""`wake events`: the log as outside consumers see it."""

from __future__ import annotations

import sys

import click
import msgspec


@click.group()
def events() -> None:
    """Inspect Wake's event log and its contracts."""


@events.command()
def schema() -> None:
    """Print the JSON Schema of every event type."""
    from events.schema import json_schema

    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(json_schema()), indent=2))
    sys.stdout.buffer.write(b"\n")
