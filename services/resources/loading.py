"""A bundle from the object store, as the resources Wake applies (shell; planner and applier).

The planner dry-runs and the applier applies the very same prepared
resources: one function loads them for both.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.bundle import Bundle, InvalidBundle, Resource, decode_bundle, ref_of, resource_digest
from events.payloads import ResourceRef
from services.resources.desired import crd_scopes, group_of, prepare
from services.wiring.eventlog import EventLog
from services.wiring.kube import Kube, KubeError, KubeUnreachable


@dataclass(frozen=True, slots=True)
class DesiredResource:
    """One resource of a bundle, ready to apply.

    `digest` is the rendered resource's (as in ManifestsRendered), before labels.
    `served` is False when the kind comes from a CRD of the same bundle that the
    server does not serve yet; `error` when the server serves no such kind at all.
    """

    ref: ResourceRef
    resource: Resource
    digest: str
    served: bool = True
    error: KubeError | None = None


async def load_bundle(log: EventLog, digest: str, *, app: str) -> Bundle:
    """The bundle stored under `digest`; InvalidBundle if it is not `app`'s."""
    bundle = decode_bundle(await log.get_bundle(digest))
    if bundle.app != app:
        raise InvalidBundle(f"bundle {digest} belongs to app {bundle.app!r}, not {app!r}")
    return bundle


async def prepare_all(
    kube: Kube, bundle: Bundle, *, app: str, default_namespace: str
) -> list[DesiredResource]:
    """Every resource of `bundle`, labelled and placed (discovery says which kinds are namespaced).

    KubeUnreachable propagates: without discovery there is nothing to decide.
    """
    scopes = crd_scopes(bundle.resources)
    prepared = []
    for resource in bundle.resources:
        ref = ref_of(resource)
        served, error = True, None
        try:
            namespaced = (await kube.resource(ref.api_version, ref.kind, ref=ref)).namespaced
        except KubeUnreachable:
            raise
        except KubeError as exc:
            from_bundle = scopes.get((group_of(ref.api_version), ref.kind))
            if from_bundle is None:
                namespaced, error = bool(ref.namespace), exc
            else:
                namespaced, served = from_bundle, False
        ready = prepare(
            resource, app=app, namespaced=namespaced, default_namespace=default_namespace
        )
        prepared.append(
            DesiredResource(
                ref=ref_of(ready),
                resource=ready,
                digest=resource_digest(resource),
                served=served,
                error=error,
            )
        )
    return prepared
