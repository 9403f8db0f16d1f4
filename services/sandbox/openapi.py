"""A minimal OpenAPI v3 description, enough for kubectl's validation handshake.

kubectl validates before it writes (`--validate=strict` by default): it reads
`/openapi/v3`, and if the PATCH operation of a kind accepts the
`fieldValidation` query parameter it leaves validation to the server, else it
downloads full schemas to validate locally. The emulator has no schemas, so
each group-version document declares every kind's paths with that parameter
and object schemas that accept anything; the server then validates what it
knows (names, labels, kinds) and keeps unknown fields, as the real server
does with `fieldValidation=Ignore`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from services.sandbox.discovery import GIT_VERSION, Catalogue, ResourceType

_QUERY_PARAMETERS = ("fieldValidation", "fieldManager", "dryRun", "force", "pretty")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def document(catalogue: Catalogue, group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group/version, or None if it is not served."""
    types = [t for t in catalogue.all() if t.group == group and t.version == version]
    if not types:
        return None
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for t in types:
        gvk = {"group": t.group, "version": t.version, "kind": t.kind}
        schema_name = _schema_name(t)
        schemas[schema_name] = {
            "type": "object",
            "x-kubernetes-group-version-kind": [gvk],
            "x-kubernetes-preserve-unknown-fields": True,
        }
        item = _item_path(t)
        parameters = [
            {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
            for name in _QUERY_PARAMETERS
        ]
        operation = {
            "operationId": f"patch{t.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": parameters,
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{schema_name}"}
                        }
                    },
                }
            },
        }
        paths[item] = {
            "patch": operation,
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                *parameters,
            ],
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Wake sandbox (Kubernetes API emulator)", "version": GIT_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def root(catalogue: Catalogue) -> dict[str, Any]:
    """`/openapi/v3`: where each group/version document is, with a hash that changes with it."""
    paths = {}
    for group, versions in catalogue.groups().items():
        for version in versions:
            body = document(catalogue, group, version)
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
            gv = _gv_path(group, version)
            paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest.upper()}"}
    return {"paths": paths}


def _item_path(t: ResourceType) -> str:
    prefix = "/" + _gv_path(t.group, t.version)
    if t.namespaced:
        return f"{prefix}/namespaces/{{namespace}}/{t.plural}/{{name}}"
    return f"{prefix}/{t.plural}/{{name}}"


def _schema_name(t: ResourceType) -> str:
    reversed_group = ".".join(reversed(t.group.split("."))) if t.group else "io.k8s.api.core"
    return f"{reversed_group}.{t.version}.{t.kind}"
