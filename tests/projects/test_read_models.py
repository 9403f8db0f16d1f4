"""Projects in the read models: the `projects` table and each application's project."""

from __future__ import annotations

import json

from events import names, new_event
from events.payloads import (
    ApplicationRegistered,
    ApplicationUpdated,
    AppSpec,
    ProjectCreated,
    ProjectRemoved,
    ProjectSpec,
    ProjectUpdated,
)
from services.projector.folding import ReadModels, fold_all

TEAM = ProjectSpec(sources=["*"], destinations=["/team-*"], approvers=["user:grace"])


def test_projects_and_each_apps_project_are_folded():
    spec = AppSpec(repo_url="/r", namespace="team-a")
    events = [
        new_event(ProjectCreated(name="team", spec=TEAM), app=names.SYSTEM_APP, actor="user:a"),
        new_event(ApplicationRegistered(spec=spec), app="shop", actor="user:a"),
        new_event(
            ApplicationUpdated(spec=AppSpec(repo_url="/r", project="team"), changed=["project"]),
            app="shop",
            actor="user:a",
        ),
        new_event(
            ProjectUpdated(name="team", spec=ProjectSpec(), changed=["sources"]),
            app=names.SYSTEM_APP,
            actor="user:a",
        ),
        # filed under an application: not a project's event, ignored
        new_event(ProjectRemoved(name="team"), app="shop", actor="user:a"),
        new_event(ProjectCreated(name="old", spec=TEAM), app=names.SYSTEM_APP, actor="user:a"),
        new_event(ProjectRemoved(name="old"), app=names.SYSTEM_APP, actor="user:a"),
    ]
    models = fold_all(ReadModels(), enumerate(events, start=1))
    projects = models.rows["projects"]
    assert projects["team"]["removed"] is False
    assert json.loads(projects["team"]["spec"])["sources"] == []
    assert projects["team"]["last_seq"] == 4
    assert projects["old"]["removed"] is True
    assert models.rows["applications"]["shop"]["project"] == "team"
    registered_only = fold_all(ReadModels(), enumerate(events[1:2], start=1))
    assert registered_only.rows["applications"]["shop"]["project"] == "default"


def test_each_new_event_reads_as_a_line():
    from events.payloads import ApprovalRefused
    from services.catalog.describe import describe

    refused = ApprovalRefused(
        plan_id="0123456789", approval_id="a", approver="user:eve", reason="not an approver"
    )
    assert describe(new_event(refused, app="shop", actor="planner")) == (
        "approval of plan 01234567 by user:eve refused: not an approver"
    )
    updated = ProjectUpdated(name="team", spec=TEAM, changed=["approvers"])
    assert describe(new_event(updated, app=names.SYSTEM_APP, actor="user:a")) == (
        "project team updated: approvers"
    )
