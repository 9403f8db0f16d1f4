"""The bundle: a revision's rendered manifests, as stored in WAKE_BUNDLES.

A contract between the renderer (writes it), the planner and applier (read
it) and rollback (reads it long after Git has moved on): its bytes are the
canonical JSON below, and its name in the object store is their sha256. Same
resources, same bytes, same digest -- whatever order the files were read in.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from events import redaction
from events.payloads import ResourceRef

BUNDLE_FORMAT = 1

# Kubernetes' own API groups. A resource of any other group is a custom
# resource (of a CRD or an aggregated API, including k8s.io-named ones such as
# gateway.networking.k8s.io and snapshot.storage.k8s.io): only its definition
# knows its scope, and only a rule can tell its health.
BUILTIN_GROUPS: frozenset[str] = frozenset(
    {
        "",
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "apps",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "autoscaling",
        "batch",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "policy",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)

Resource = dict[str, Any]


class Bundle(msgspec.Struct, frozen=True, kw_only=True):
    """Every resource of one app at one commit, in canonical order."""

    format: int = BUNDLE_FORMAT
    app: str
    repo_url: str
    commit: str
    path: str
    renderer: str
    resources: list[Resource]


class InvalidBundle(ValueError):
    pass


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and no spaces: equal values give equal bytes."""
    return msgspec.json.encode(value, order="sorted")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def resource_digest(resource: Resource) -> str:
    """The content digest of one resource, as events carry it.

    A Secret's is keyed (HMAC-SHA256 with the install's digest key, see
    `events.redaction`): its name and namespace are in the event, so a plain
    sha256 of a small Secret would let anyone who reads the log confirm a
    guessed value offline. Only the renderer compares these digests, each
    with an earlier one of its own, so a key per install is all it needs.
    """
    data = canonical_json(resource)
    if resource.get("kind") == "Secret" and resource.get("apiVersion") == "v1":
        return redaction.keyed_hexdigest(data)
    return digest(data)


def ref_of(resource: Resource) -> ResourceRef:
    """The identity of a resource (apiVersion, kind, namespace, name).

    A hook named by `generateName` (the server picks the name) is known by its
    prefix (by convention ending in "-", which a real name never does).
    """
    metadata = resource.get("metadata") or {}
    return ResourceRef(
        api_version=str(resource.get("apiVersion", "")),
        kind=str(resource.get("kind", "")),
        name=str(metadata.get("name") or metadata.get("generateName") or ""),
        namespace=str(metadata.get("namespace", "") or ""),
    )


def sort_key(resource: Resource) -> tuple[str, str, str, str]:
    ref = ref_of(resource)
    return (ref.api_version, ref.kind, ref.namespace, ref.name)


def encode_bundle(bundle: Bundle) -> bytes:
    """The bundle's canonical bytes, resources in canonical order."""
    ordered = msgspec.structs.replace(bundle, resources=sorted(bundle.resources, key=sort_key))
    return canonical_json(ordered)


_decoder = msgspec.json.Decoder(Bundle)


def decode_bundle(data: bytes) -> Bundle:
    try:
        bundle = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidBundle(f"invalid bundle: {exc}") from None
    if bundle.format > BUNDLE_FORMAT:
        raise InvalidBundle(f"bundle format {bundle.format} is newer than this Wake reads")
    return bundle
