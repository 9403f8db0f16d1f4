"""Kubernetes `Status` failures, the only shape of error the emulator returns.

Clients (kubernetes_asyncio, kubectl) turn these into their typed errors by
`reason` and `code`, so each failure here carries the same reason and code the
real API server would use for the same mistake, and a message naming the
field or object at fault.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A request the emulator refuses; rendered as a `Status` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(group: str, plural: str, name: str | None) -> dict[str, Any]:
    details: dict[str, Any] = {"kind": plural}
    if group:
        details["group"] = group
    if name:
        details["name"] = name
    return details


def qualified(group: str, plural: str) -> str:
    """`deployments.apps`, or `configmaps` for the core group, as the API server names them."""
    return f"{plural}.{group}" if group else plural


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def not_found(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{qualified(group, plural)} "{name}" not found',
        details=_details(group, plural, name),
    )


def already_exists(group: str, plural: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(group, plural)} "{name}" already exists',
        details=_details(group, plural, name),
    )


def modified_conflict(group: str, plural: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(group, plural)} "{name}": {why}',
        details=_details(group, plural, name),
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    """422 Invalid; `causes` are (field path, what is wrong with it)."""
    summary = "; ".join(f"{field}: {why}" for field, why in causes)
    details: dict[str, Any] = {
        "kind": kind,
        "name": name,
        "causes": [
            {"reason": "FieldValueInvalid", "message": why, "field": field} for field, why in causes
        ],
    }
    if group:
        details["group"] = group
    subject = f"{kind}.{group}" if group else kind
    return ApiError(422, "Invalid", f'{subject} "{name}" is invalid: {summary}', details=details)


def unsupported_media_type(message: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
