"""The OpenAPI 3.1 document of `/api/v1` (served at `/api/v1/openapi.json`). Pure data."""

from __future__ import annotations

from typing import Any

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_REFUSALS = {
    "400": _PROBLEM,
    "401": _PROBLEM,
    "403": _PROBLEM,
    "404": _PROBLEM,
    "429": _PROBLEM,
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _items(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref(name)}},
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


_APP = _path_param("name", "The application's name.")
_PLAN = _path_param("plan_id", "The plan's id.")
_MIN_SEQ = _query(
    "min_seq",
    "Answer once the read models have folded the log up to this sequence (at most 2 s).",
    {"type": "integer", "minimum": 0},
)


def _read(summary: str, schema: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "parameters": list(params),
            "responses": {"200": _json(schema), **_REFUSALS},
        }
    }


def _command(summary: str, body: dict[str, Any] | None, role: str, *params) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "description": f"Needs the role {role}. The command is appended to the log with the "
        "token's name as its actor (`token:NAME`).",
        "parameters": list(params),
        "responses": {
            "202": _json(_ref("Accepted"), "Appended to the log"),
            **_REFUSALS,
            "409": _PROBLEM,
        },
    }
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    return {"post": operation}


_NULLABLE_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "App": {
        "type": "object",
        "required": ["name", "sync", "health", "revision", "pending_approvals"],
        "properties": {
            "name": {"type": "string"},
            "sync": {
                "type": "string",
                "description": "Unknown, OutOfSync, AwaitingApproval, Syncing, Synced, Failed",
            },
            "health": {"type": "string"},
            "revision": {**_NULLABLE_STRING, "description": "The commit last applied."},
            "desired_revision": _NULLABLE_STRING,
            "pending_approvals": {"type": "integer"},
            "current_plan_id": _NULLABLE_STRING,
            "project": {"type": "string"},
            "resources": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Plan": {
        "type": "object",
        "required": ["plan_id", "status", "app", "commit"],
        "properties": {
            "plan_id": {"type": "string"},
            "app": {"type": "string"},
            "status": {"type": "string"},
            "commit": {"type": "string"},
            "reason": {"type": "string"},
            "changes": {
                "type": "array",
                "description": "Each resource's change with its unified diff (secrets redacted).",
                "items": {"type": "object"},
            },
            "decisions": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Journey": {
        "type": "object",
        "properties": {
            "correlation_id": {"type": "string"},
            "commit": {"type": "string"},
            "plan_id": _NULLABLE_STRING,
            "result": {"type": "string"},
            "decisions": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Event": {
        "type": "object",
        "required": ["seq", "event_id", "type", "app"],
        "properties": {
            "seq": {"type": "integer"},
            "event_id": {"type": "string"},
            "type": {"type": "string"},
            "app": {"type": "string"},
            "occurred_at": {"type": "string", "format": "date-time"},
            "correlation_id": {"type": "string"},
            "actor": {"type": "string"},
            "summary": {"type": "string"},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["event_id", "seq"],
        "properties": {"event_id": {"type": "string"}, "seq": {"type": "integer"}},
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
}


def document(server_url: str = "/") -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wake console API",
            "version": "1",
            "description": "Wake's read models and commands. Every path needs "
            "`Authorization: Bearer TOKEN` (`wake token create`); viewers read, approvers "
            "approve, reject and sync the apps their glob covers, admins do everything.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/apps": {
                **_read(
                    "Every application with its sync, health, revision and pending approvals",
                    _items("App"),
                    _query("q", "Only names containing this."),
                    _query("sync", "Only apps in this sync state."),
                    _query("health", "Only apps of this health."),
                ),
                **_command(
                    "Register an application (as `wake app add`: its project and ref checked)",
                    {
                        "type": "object",
                        "required": ["name", "spec"],
                        "properties": {
                            "name": {"type": "string"},
                            "spec": {
                                "type": "object",
                                "description": "The app's settings (AppSpec, docs/events.md): "
                                "repo_url, path, ref, namespace, auto_sync, approvers, ...",
                                "required": ["repo_url"],
                            },
                        },
                    },
                    "admin",
                ),
            },
            "/api/v1/apps/{name}": {
                **_read("One application with its resources", _ref("App"), _APP, _MIN_SEQ),
                "patch": {
                    **_command(
                        "Change an application's settings (only those given)",
                        {"type": "object", "description": "AppSpec fields to set"},
                        "admin",
                        _APP,
                    )["post"],
                },
                "delete": {
                    **_command(
                        "Stop managing an application",
                        None,
                        "admin",
                        _APP,
                        _query("cascade", "Also delete what it applied.", {"type": "boolean"}),
                        _query("reason", "Why, for the record."),
                    )["post"],
                },
            },
            "/api/v1/apps/{name}/plans": _read(
                "The app's plans, newest first", _items("Plan"), _APP, _MIN_SEQ
            ),
            "/api/v1/apps/{name}/history": _read(
                "The app's journeys (one per revision), newest first",
                _items("Journey"),
                _APP,
                _MIN_SEQ,
            ),
            "/api/v1/apps/{name}/state": _read(
                "What was desired, planned, approved and applied at a moment",
                {"type": "object"},
                _APP,
                {**_query("at", "An ISO 8601 time with zone."), "required": True},
            ),
            "/api/v1/apps/{name}/traces/{ref}": _read(
                "A journey's spans (waterfall) and events",
                {"type": "object"},
                _APP,
                _path_param("ref", "A commit (or prefix), a plan id or an apply id."),
            ),
            "/api/v1/apps/{name}/sync": _command(
                "Check the app's source now",
                {
                    "type": "object",
                    "properties": {"reason": {"type": "string"}, "resume": {"type": "boolean"}},
                },
                "approver (of the app)",
                _APP,
            ),
            "/api/v1/apps/{name}/rollback": _command(
                "Roll the app back to a revision it applied",
                {
                    "type": "object",
                    "required": ["to"],
                    "properties": {"to": {"type": "string"}, "reason": {"type": "string"}},
                },
                "admin",
                _APP,
            ),
            "/api/v1/plans/{plan_id}": _read(
                "A plan with its diffs", _ref("Plan"), _PLAN, _MIN_SEQ
            ),
            "/api/v1/plans/{plan_id}/approve": _command(
                "Approve a plan awaiting approval (the planner then checks the approvers)",
                {"type": "object", "properties": {"reason": {"type": "string"}}},
                "approver (of the app)",
                _PLAN,
            ),
            "/api/v1/plans/{plan_id}/reject": _command(
                "Reject a plan awaiting approval",
                {
                    "type": "object",
                    "required": ["reason"],
                    "properties": {"reason": {"type": "string"}},
                },
                "approver (of the app)",
                _PLAN,
            ),
            "/api/v1/events": _read(
                "The log's events after a sequence, oldest first (paged)",
                {
                    "type": "object",
                    "required": ["items"],
                    "properties": {
                        "items": {"type": "array", "items": _ref("Event")},
                        "next_after": {"type": "integer"},
                    },
                },
                _query("after", "Events after this sequence.", {"type": "integer", "minimum": 0}),
                _query(
                    "limit",
                    "At most this many.",
                    {"type": "integer", "minimum": 1, "maximum": 1000},
                ),
                _query("app", "Only this app's."),
                _query("type", "Only this type."),
                _query("correlation_id", "Only this journey's."),
            ),
            "/api/v1/events/stream": {
                "get": {
                    "summary": "Live events as Server-Sent Events",
                    "description": "Each message's `id` is its stream sequence; reconnecting "
                    "with `Last-Event-ID` resumes after it. `data` is an Event.",
                    "parameters": [
                        _query("app", "Only this app's."),
                        _query("type", "Only this type."),
                        _query(
                            "after",
                            "Start after this sequence (like Last-Event-ID).",
                            {"type": "integer"},
                        ),
                        {
                            "name": "Last-Event-ID",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "The stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_REFUSALS,
                    },
                }
            },
            "/api/v1/openapi.json": _read("This document", {"type": "object"}),
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from `wake token create NAME --role ROLE`.",
                }
            },
            "schemas": SCHEMAS,
            "responses": {
                "Problem": {
                    "description": "A refusal or an error (RFC 9457)",
                    "content": {"application/problem+json": {"schema": _ref("Problem")}},
                }
            },
        },
    }


def paths() -> list[tuple[str, str]]:
    """(method, path) of every operation: the tests call each without a token."""
    return [(method.upper(), path) for path, item in document()["paths"].items() for method in item]
