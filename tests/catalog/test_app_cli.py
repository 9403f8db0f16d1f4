"""What `wake app list`, `wake app show` and `wake plans` print, from events on a real JetStream."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from events import new_event
from events.payloads import (
    ApplicationRegistered,
    ApplyFailed,
    ApplySucceeded,
    AppSpec,
    HealthChanged,
    ManifestsRendered,
    Payload,
    PlanApproved,
    PlanCreated,
    RenderFailed,
    RevisionDetected,
)
from services.catalog.describe import decided_by, standing
from services.wiring.eventlog import EventLog
from tests.signing import cli_env

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "1" * 40
BUNDLE = "b" * 64
LONG_NAME = "payments-reconciliation-worker-eu-west-1"  # 40 characters


def wake(nats_url: str, data_dir: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "WAKE_NATS_URL": nats_url,
            "WAKE_DATA_DIR": str(data_dir),
            **cli_env(data_dir / "keys"),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


async def append(log: EventLog, app: str, *payloads: Payload) -> None:
    for payload in payloads:
        await log.append(new_event(payload, app=app, actor="service:test"))


def revision() -> RevisionDetected:
    return RevisionDetected(
        repo_url="/r", ref="main", commit=COMMIT, committed_at=datetime(2026, 1, 1, tzinfo=UTC)
    )


def succeeded(apply_id: str) -> ApplySucceeded:
    return ApplySucceeded(
        apply_id=apply_id, plan_id="p1", commit=COMMIT, bundle_digest=BUNDLE, inventory=[]
    )


async def test_app_list_has_a_health_column_and_columns_fit_a_40_character_name(
    event_log: EventLog, nats_server, tmp_path: Path
):
    spec = AppSpec(repo_url="/repos/shop", path="deploy", namespace="shop")
    await append(event_log, LONG_NAME, ApplicationRegistered(spec=spec), revision())
    await append(event_log, LONG_NAME, succeeded("a1"), HealthChanged(status="Degraded"))
    await append(event_log, "web", ApplicationRegistered(spec=spec))

    out = await asyncio.to_thread(wake, nats_server.url, tmp_path, "app", "list")
    header, first, second = out.splitlines()
    assert header.split() == ["NAME", "SYNC", "HEALTH", "REVISION", "STATE", "SOURCE"]
    assert first.split() == [
        LONG_NAME,
        "auto",
        "Degraded",
        "1111111",
        "synced",
        "/repos/shop",
        "deploy@main",
    ]
    assert second.split() == ["web", "auto", "-", "-", "registered", "/repos/shop", "deploy@main"]
    # Every column starts where its header does, whatever the length of the name.
    for column in ("SYNC", "HEALTH", "REVISION", "STATE", "SOURCE"):
        at = header.index(column)
        assert first[at - 2 : at] == "  " and first[at] != " ", (column, first)
        assert second[at - 1] == " " and second[at] != " ", (column, second)
    listed = json.loads(
        await asyncio.to_thread(wake, nats_server.url, tmp_path, "app", "list", "--json")
    )
    assert [row["health"] for row in listed] == ["Degraded", None]


async def test_app_show_drops_a_failure_that_a_later_success_overtook(
    event_log: EventLog, nats_server, tmp_path: Path
):
    spec = AppSpec(repo_url="/repos/shop", path="deploy", namespace="shop")
    await append(event_log, "web", ApplicationRegistered(spec=spec), revision())
    await append(
        event_log,
        "web",
        RenderFailed(commit=COMMIT, error="broken yaml", file="deploy/a.yaml"),
        ManifestsRendered(
            commit=COMMIT, bundle_digest=BUNDLE, bundle_size=1, renderer="yaml", resources=[]
        ),
        ApplyFailed(apply_id="a1", plan_id="p1", error="the API server said no"),
    )
    failed = await asyncio.to_thread(wake, nats_server.url, tmp_path, "app", "show", "web")
    assert "apply-failed" in failed and "the API server said no" in failed
    assert "broken yaml" not in failed  # rendered since

    await append(event_log, "web", succeeded("a2"))
    shown = await asyncio.to_thread(wake, nats_server.url, tmp_path, "app", "show", "web")
    assert "synced" in shown
    assert "ApplyFailed" not in shown and "the API server said no" not in shown
    assert "RenderFailed" not in shown


async def test_a_plan_approved_by_policy_says_so_once(
    event_log: EventLog, nats_server, tmp_path: Path
):
    spec = AppSpec(repo_url="/repos/shop", path="deploy", namespace="shop")
    await append(event_log, "web", ApplicationRegistered(spec=spec))
    await append(
        event_log, "web", PlanCreated(plan_id="p1", commit=COMMIT, bundle_digest=BUNDLE, changes=[])
    )
    await event_log.append(
        new_event(PlanApproved(plan_id="p1", via="policy"), app="web", actor="policy")
    )
    out = await asyncio.to_thread(wake, nats_server.url, tmp_path, "plans", "web")
    assert "approved by policy" in out
    assert "via policy" not in out


def test_decided_by_and_standing_failures():
    assert decided_by("policy", "policy") == "by policy"
    assert decided_by("user:ada", "cli") == "by user:ada via cli"
    assert standing({"ApplyFailed": 5, "ApplySucceeded": 9, "HealthChanged": 7}) == {
        "ApplySucceeded",
        "HealthChanged",
    }
    assert standing({"ApplyFailed": 9, "ApplySucceeded": 5}) == {"ApplyFailed", "ApplySucceeded"}
    assert standing({"SourceFailed": 3, "SourceRecovered": 4}) == {"SourceRecovered"}


def test_every_add_option_of_the_merged_issues_sets_its_spec_field_for_add_and_set():
    from services.cli.apps_cmd import spec_fields

    fields = spec_fields(
        {
            "retry_limit": 2,
            "retry_backoff_seconds": 1.0,
            "retry_backoff_factor": 3.0,
            "retry_max_backoff_seconds": 9.0,
            "adopt": True,
            "create_namespace": True,
            "allow_empty": True,
            "tla_code": ("replicas=3",),
            "ext_code": ("debug=true",),
        }
    )
    assert fields == {
        "retry_limit": 2,
        "retry_backoff_seconds": 1.0,
        "retry_backoff_factor": 3.0,
        "retry_max_backoff_seconds": 9.0,
        "adopt": True,
        "create_namespace": True,
        "allow_empty": True,
        "jsonnet_tla_code": {"replicas": "3"},
        "jsonnet_ext_code": {"debug": "true"},
    }
