"""`wake app add`'s renderer options, run as a user runs it, against a real JetStream."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from events.payloads import ApplicationRegistered
from services.wiring.eventlog import EventLog
from tests.git_watcher.repos import GitRepo
from tests.signing import cli_env

ROOT = Path(__file__).resolve().parents[2]


async def wake(nats_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "WAKE_NATS_URL": nats_url,
        "WAKE_DATA_DIR": str(data_dir),
        **cli_env(data_dir / "keys"),
    }
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def registered(log: EventLog, app: str) -> list[ApplicationRegistered]:
    subjects = [f"wake.evt.{app}.ApplicationRegistered"]
    return [stored.event.payload async for stored in log.read(subjects=subjects)]


async def test_app_add_refuses_an_unknown_renderer_option_and_lists_the_known_ones(
    event_log: EventLog, nats_server, tmp_path: Path
):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("app", {"apps/web/main.jsonnet": "[]\n"})
    common = ("app", "add", "web", "--repo", str(repo.path), "--path", "apps/web")
    refused = await wake(
        nats_server.url, tmp_path / "cli", *common, "--namespace", "web", "--option", "mian=x"
    )
    assert refused.returncode == 2
    assert "Invalid value for --option" in refused.stderr
    assert "unknown renderer option 'mian': the known ones are libs, main" in refused.stderr
    outside = await wake(
        nats_server.url,
        tmp_path / "cli",
        *common,
        "--namespace",
        "web",
        "--option",
        "libs=vendor,../../etc",
    )
    assert outside.returncode == 2
    assert "Invalid value for --option: libs: " in outside.stderr
    both = await wake(
        nats_server.url,
        tmp_path / "cli",
        *common,
        "--namespace",
        "web",
        "--tla",
        "replicas=3",
        "--tla-code",
        "replicas=3",
    )
    assert both.returncode == 2
    assert "replicas given both as --tla and as --tla-code" in both.stderr
    assert await registered(event_log, "web") == []
    helped = await wake(nats_server.url, tmp_path / "cli", "app", "add", "--help")
    for flag in ("--option", "main:", "libs:", "--tla-code", "--ext-code", "--allow-empty"):
        assert flag in helped.stdout


async def test_app_add_records_code_arguments_options_and_allow_empty(
    event_log: EventLog, nats_server, tmp_path: Path
):
    repo = GitRepo(tmp_path / "repo")
    repo.commit("app", {"apps/web/env.jsonnet": "function(replicas) []\n"})
    added = await wake(
        nats_server.url,
        tmp_path / "cli",
        "app",
        "add",
        "web",
        "--repo",
        str(repo.path),
        "--ref",
        "main",
        "--path",
        "apps/web",
        "--namespace",
        "web",
        "--option",
        "main=env.jsonnet",
        "--tla-code",
        "replicas=3",
        "--tla",
        "tier=web",
        "--ext-code",
        "labels={ team: 'shop' }",
        "--allow-empty",
    )
    assert added.returncode == 0, added.stderr
    [payload] = await registered(event_log, "web")
    spec = payload.spec
    assert spec.renderer_options == {"main": "env.jsonnet"}
    assert (spec.jsonnet_tla_code, spec.jsonnet_tla) == ({"replicas": "3"}, {"tier": "web"})
    assert spec.jsonnet_ext_code == {"labels": "{ team: 'shop' }"}
    assert spec.allow_empty is True
