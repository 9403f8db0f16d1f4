"""Issue 10 item 8: the app name `_wake` is Wake's own; no one registers an app under it."""

from __future__ import annotations

from pathlib import Path

import pytest

from events import names
from events.envelope import new_event
from events.payloads import ApplicationRegistered, AppSpec
from services.catalog.registry import Registry
from services.wiring.eventlog import EventLog
from tests.git_watcher.repos import GitRepo
from tests.renderer.test_app_add_options import registered, wake


async def test_app_add_refuses_the_reserved_name_and_the_next_add_works(
    event_log: EventLog, nats_server, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "repo")
    repo.commit("app", {"deploy/cm.yaml": "apiVersion: v1\nkind: ConfigMap\n"})

    # When someone registers `_wake`
    refused = await wake(
        nats_server.url,
        tmp_path / "cli",
        "app",
        "add",
        "_wake",
        "--repo",
        str(repo.path),
        "--namespace",
        "shop",
    )

    # Then it is a usage error naming the reason, and nothing is appended
    assert refused.returncode == 2, refused.stderr
    assert "reserved for Wake's own events" in refused.stderr
    assert await registered(event_log, names.SYSTEM_APP) == []

    # And the next normal registration works
    added = await wake(
        nats_server.url,
        tmp_path / "cli",
        "app",
        "add",
        "shop",
        "--repo",
        str(repo.path),
        "--namespace",
        "shop",
    )
    assert added.returncode == 0, added.stderr
    assert len(await registered(event_log, "shop")) == 1


def test_a_forged_registration_of_the_reserved_name_is_not_folded() -> None:
    spec = AppSpec(repo_url="https://git.example.com/x.git", namespace="x")
    registry = Registry()
    forged = new_event(ApplicationRegistered(spec=spec), app=names.SYSTEM_APP, actor="user:x")
    assert registry.apply(1, forged) is False
    assert registry.apps == {}
    genuine = new_event(ApplicationRegistered(spec=spec), app="shop", actor="user:x")
    assert registry.apply(2, genuine) is True


def test_the_reserved_name_is_still_a_valid_subject_token() -> None:
    # The log keeps using it for system events
    assert names.subject(names.SYSTEM_APP, "EventRejected").startswith("wake.evt._wake.")
    with pytest.raises(names.InvalidName, match="reserved"):
        names.registrable_app_name(names.SYSTEM_APP)
