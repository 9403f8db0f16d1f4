"""The emulator's state: objects, the resourceVersion counter, the watch history.

Every operation here is synchronous and never awaits, so on the event loop
each one is atomic: a watch registered by `subscribe` cannot miss an event
nor see one twice, and two requests never interleave halfway through a
write. The HTTP layer (server.py) only parses and renders.

What the store enforces, as the API server does: the namespace of a
namespaced object exists; `resourceVersion` is one global counter bumped on
every stored change and never on a no-op or a dry run; `generation` counts
changes outside metadata and status; `.status` of a kind with a status
subresource changes only through that subresource; deleting a namespace
deletes what is in it; a CRD makes its kinds servable while it exists.
Finalizers hold a deleted object (with `deletionTimestamp`) until an update
removes the last of them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.sandbox import errors, workloads
from services.sandbox.apply import ApplyConflict, record_update, server_side_apply
from services.sandbox.cloning import clone
from services.sandbox.discovery import (
    CRD_GROUP,
    CRD_PLURAL,
    NAMESPACES,
    Catalogue,
    CrdInvalid,
    ResourceType,
    crd_types,
)
from services.sandbox.errors import ApiError
from services.sandbox.fieldsets import same
from services.sandbox.patching import PatchError, json_patch, merge_patch, strategic_merge_patch
from services.sandbox.selectors import FieldSelector, LabelSelector

Obj = dict[str, Any]
ObjectKey = tuple[str, str]  # (namespace or "", name)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
SANDBOX_MANAGER = "wake-sandbox"
_HISTORY_LIMIT = 20_000
# The API server's generateName suffix alphabet: no vowels, no look-alike digits.
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
# Metadata only the server writes; a client's copy of it is ignored.
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: str  # ADDED, MODIFIED, DELETED
    storage_key: tuple[str, str]
    obj: Obj
    # The object before a MODIFIED, so a filtered watch can turn "stopped
    # matching" into DELETED and "started matching" into ADDED.
    previous: Obj | None = None


@dataclass(eq=False)
class Subscription:
    """A watch: its backlog, then whatever `queue` receives (None: the store closed)."""

    storage_key: tuple[str, str]
    backlog: list[WatchEvent]
    # The store's resourceVersion when the watch began: the backlog is
    # everything up to it, the queue everything after.
    resource_version: int
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)


@dataclass
class ListResult:
    items: list[Obj]
    resource_version: str
    continue_token: str | None = None
    remaining: int | None = None


class ObjectStore:
    """In-memory objects of every kind the catalogue serves."""

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        ready_workloads: bool = False,
    ) -> None:
        self.catalogue = catalogue
        self._clock = clock
        # No controllers run here; with ready_workloads, a workload's rollout
        # completes the moment its spec is written, as on an idle real cluster,
        # Jobs complete and claims bind (workloads.py).
        self.ready_workloads = ready_workloads
        self._revision = 0
        self._objects: dict[tuple[str, str], dict[ObjectKey, Obj]] = {}
        self._history: deque[WatchEvent] = deque(maxlen=_HISTORY_LIMIT)
        # Oldest resourceVersion a watch can still resume from; older ones get 410.
        self._horizon = 0
        self._subscriptions: set[Subscription] = set()
        self._closed = False
        self.on_change: Callable[[], None] = lambda: None
        """Called after every stored change (never a dry run): e.g. to persist the store."""
        namespaces = self._type(*NAMESPACES)
        for name in INITIAL_NAMESPACES:
            self.create(
                namespaces,
                "",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                manager=SANDBOX_MANAGER,
                dry_run=False,
            )

    @property
    def resource_version(self) -> int:
        return self._revision

    # -- persistence ------------------------------------------------------

    def dump(self) -> Obj:
        """Every stored object and the resourceVersion counter, as JSON-ready data.

        CustomResourceDefinitions come first, so `restore` serves their kinds
        before it meets their objects.
        """
        crds = (CRD_GROUP, CRD_PLURAL)
        keys = sorted(self._objects, key=lambda key: (key != crds, key))
        return {
            "resourceVersion": self._revision,
            "objects": [
                {"group": key[0], "plural": key[1], "object": obj}
                for key in keys
                for _, obj in sorted(self._objects[key].items())
            ],
        }

    def restore(self, state: Obj) -> None:
        """Replace every object by those of a `dump`; raises ValueError naming what is wrong.

        Watch history does not survive: a watch resuming from before the
        restore gets 410 Gone and relists, as after an API server's compaction.
        """
        objects: dict[tuple[str, str], dict[ObjectKey, Obj]] = {}
        where = "the top level"
        try:
            revision = int(state["resourceVersion"])
            for index, entry in enumerate(state["objects"]):
                where = f"object {index}"
                storage_key = (entry["group"], entry["plural"])
                obj = entry["object"]
                if storage_key == (CRD_GROUP, CRD_PLURAL):
                    self.catalogue.set_crd(obj["metadata"]["name"], crd_types(obj))
                t = self._type(*storage_key)
                objects.setdefault(storage_key, {})[_key(t, obj)] = obj
        except (KeyError, TypeError, ValueError, LookupError, CrdInvalid) as exc:
            raise ValueError(f"not a sandbox state ({where}): {exc!r}") from None
        self._objects = objects
        self._revision = revision
        self._history.clear()
        self._horizon = revision

    def _type(self, group: str, plural: str) -> ResourceType:
        for t in self.catalogue.all():
            if t.storage_key == (group, plural):
                return t
        raise LookupError(f"{plural}.{group} is not served")

    def _now(self) -> str:
        return _timestamp(self._clock())

    # -- reads -------------------------------------------------------------

    def get(self, t: ResourceType, namespace: str, name: str) -> Obj:
        return _present(self._require(t, namespace, name), t)

    def find(self, t: ResourceType, namespace: str, name: str) -> Obj | None:
        obj = self._bucket(t).get((namespace if t.namespaced else "", name))
        return _present(obj, t) if obj is not None else None

    def list(
        self,
        t: ResourceType,
        namespace: str | None,
        *,
        labels: LabelSelector,
        fields: FieldSelector,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        start: ObjectKey | None = None
        if continue_token:
            start = _decode_continue(continue_token)
        keys = sorted(self._bucket(t))
        matched: list[tuple[ObjectKey, Obj]] = []
        for key in keys:
            if namespace is not None and t.namespaced and key[0] != namespace:
                continue
            if start is not None and key <= start:
                continue
            obj = self._bucket(t)[key]
            if labels.matches(obj["metadata"].get("labels")) and fields.matches(obj):
                matched.append((key, obj))
        result = ListResult([], str(self._revision))
        if limit is not None and limit > 0 and len(matched) > limit:
            result.continue_token = _encode_continue(matched[limit - 1][0])
            result.remaining = len(matched) - limit
            matched = matched[:limit]
        result.items = [_present(obj, t) for _, obj in matched]
        return result

    def _bucket(self, t: ResourceType) -> dict[ObjectKey, Obj]:
        return self._objects.setdefault(t.storage_key, {})

    def _require(self, t: ResourceType, namespace: str, name: str) -> Obj:
        obj = self._bucket(t).get((namespace if t.namespaced else "", name))
        if obj is None:
            raise errors.not_found(t.group, t.plural, name)
        return obj

    def _require_namespace(self, namespace: str) -> None:
        if ("", namespace) not in self._objects.get(NAMESPACES, {}):
            raise errors.not_found("", "namespaces", namespace)

    # -- watches -----------------------------------------------------------

    def subscribe(self, t: ResourceType, resource_version: str | None) -> Subscription:
        """A watch from `resource_version` (None or "0": synthetic ADDED for what exists now)."""
        if self._closed:
            raise ApiError(503, "ServiceUnavailable", "the emulator is shutting down")
        if resource_version in (None, "", "0"):
            backlog = [
                WatchEvent(self._revision, "ADDED", t.storage_key, obj)
                for _, obj in sorted(self._bucket(t).items())
            ]
        else:
            since = _parse_revision(resource_version)
            if since < self._horizon:
                raise errors.gone(f"too old resource version: {since} ({self._horizon})")
            backlog = [
                e
                for e in self._history
                if e.storage_key == t.storage_key and e.resource_version > since
            ]
        subscription = Subscription(t.storage_key, backlog, self._revision)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def close_watches(self) -> None:
        """End every watch and refuse new ones (503) until `open_watches`; for a stop."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.queue.put_nowait(None)
        self._subscriptions.clear()

    def open_watches(self) -> None:
        self._closed = False

    def _emit(self, kind: str, t: ResourceType, obj: Obj, previous: Obj | None = None) -> None:
        self.on_change()
        event = WatchEvent(self._revision, kind, t.storage_key, obj, previous)
        if len(self._history) == self._history.maxlen:
            self._horizon = self._history[0].resource_version
        self._history.append(event)
        for subscription in self._subscriptions:
            if subscription.storage_key == t.storage_key:
                subscription.queue.put_nowait(event)

    # -- writes ------------------------------------------------------------

    def create(
        self,
        t: ResourceType,
        namespace: str,
        body: Any,
        *,
        manager: str,
        dry_run: bool,
    ) -> Obj:
        body = _check_body(t, body, namespace, name=None, allow_generate_name=True)
        metadata = body["metadata"]
        if not metadata.get("name"):
            metadata["name"] = metadata["generateName"] + "".join(
                secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5)
            )
        name = metadata["name"]
        _check_name(t, name)
        if t.namespaced:
            self._require_namespace(namespace)
        if (namespace if t.namespaced else "", name) in self._bucket(t):
            raise errors.already_exists(t.group, t.plural, name)
        if t.status_subresource:
            body.pop("status", None)
        obj = self._new_object(t, namespace, body)
        obj = record_update(None, obj, manager=manager, api_version=t.api_version, now=self._now())
        return self._store_new(t, obj, dry_run)

    def _new_object(self, t: ResourceType, namespace: str, body: Obj) -> Obj:
        obj = clone(body)
        metadata = obj["metadata"]
        for key in _SERVER_METADATA:
            metadata.pop(key, None)
        if t.namespaced:
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = self._now()
        metadata["generation"] = 1
        obj["apiVersion"], obj["kind"] = t.api_version, t.kind
        if t.storage_key == NAMESPACES:
            metadata.setdefault("labels", {})["kubernetes.io/metadata.name"] = metadata["name"]
        return obj

    def _store_new(self, t: ResourceType, obj: Obj, dry_run: bool) -> Obj:
        self._server_status(t, obj)
        if dry_run:
            return _present(obj, t)
        self._side_effects_before(t, obj)
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        self._bucket(t)[_key(t, obj)] = obj
        self._emit("ADDED", t, obj)
        return _present(obj, t)

    def replace(
        self,
        t: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        manager: str,
        dry_run: bool,
        subresource: str = "",
    ) -> Obj:
        body = _check_body(t, body, namespace, name=name)
        live = self._require(t, namespace, name)
        _check_precondition(t, live, body["metadata"].get("resourceVersion"))
        return self._update(
            t, live, body, manager=manager, dry_run=dry_run, subresource=subresource
        )

    def patch(
        self,
        t: ResourceType,
        namespace: str,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        manager: str,
        dry_run: bool,
        subresource: str = "",
    ) -> Obj:
        live = self._require(t, namespace, name)
        patched = _patched(t, _present(live, t), patch_type, patch)
        body = _check_body(t, patched, namespace, name=name)
        requested_rv = body["metadata"].get("resourceVersion")
        if requested_rv != live["metadata"].get("resourceVersion"):
            _check_precondition(t, live, requested_rv)
        return self._update(
            t, live, body, manager=manager, dry_run=dry_run, subresource=subresource
        )

    def _update(
        self,
        t: ResourceType,
        live: Obj,
        body: Obj,
        *,
        manager: str,
        dry_run: bool,
        subresource: str,
    ) -> Obj:
        candidate = clone(body)
        if subresource == "status":
            # Only .status moves through the status subresource.
            candidate = clone(live)
            if "status" in body:
                candidate["status"] = clone(body["status"])
            else:
                candidate.pop("status", None)
        else:
            _keep_server_metadata(candidate, live)
            if t.status_subresource:
                if "status" in live:
                    candidate["status"] = clone(live["status"])
                else:
                    candidate.pop("status", None)
        candidate["apiVersion"], candidate["kind"] = live["apiVersion"], t.kind
        candidate["metadata"]["managedFields"] = clone(
            live["metadata"].get("managedFields", [])
        )
        candidate = record_update(
            live,
            candidate,
            manager=manager,
            api_version=t.api_version,
            now=self._now(),
            subresource=subresource,
        )
        return self._store_update(t, live, candidate, dry_run)

    def apply(
        self,
        t: ResourceType,
        namespace: str,
        name: str,
        config: Any,
        *,
        manager: str,
        force: bool,
        dry_run: bool,
        subresource: str = "",
    ) -> tuple[Obj, bool]:
        """Server-side apply; returns (object, created)."""
        config = _check_body(t, config, namespace, name=name, type_required=True)
        metadata = config["metadata"]
        if metadata.get("managedFields"):
            raise errors.bad_request(
                "metadata.managedFields must be nil in an apply request (the server owns it)"
            )
        live = self._bucket(t).get((namespace if t.namespaced else "", name))
        requested_rv = metadata.get("resourceVersion")
        if live is not None and requested_rv:
            _check_precondition(t, live, requested_rv)
        for key in _SERVER_METADATA:
            metadata.pop(key, None)
        if t.namespaced:
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if subresource == "status":
            config = {
                "apiVersion": config["apiVersion"],
                "kind": config["kind"],
                "metadata": {k: v for k, v in metadata.items() if k in ("name", "namespace")},
                **({"status": config["status"]} if "status" in config else {}),
            }
        elif t.status_subresource:
            config.pop("status", None)
        # The config's apiVersion/kind do not take part in ownership, but the
        # stored object keeps the catalogue's spelling.
        config["apiVersion"], config["kind"] = t.api_version, t.kind
        now = self._now()
        try:
            if live is None:
                if subresource:
                    raise errors.not_found(t.group, t.plural, name)
                _check_name(t, name)
                if t.namespaced:
                    self._require_namespace(namespace)
                fresh = self._new_object(t, namespace, config)
                applied = server_side_apply(
                    {"metadata": clone(fresh["metadata"])},
                    config,
                    manager=manager,
                    api_version=t.api_version,
                    force=force,
                    now=now,
                )
                return self._store_new(t, applied, dry_run), True
            result = server_side_apply(
                live,
                config,
                manager=manager,
                api_version=t.api_version,
                force=force,
                now=now,
                subresource=subresource,
            )
        except ApplyConflict as conflict:
            raise ApiError(
                409,
                "Conflict",
                conflict.message,
                details={
                    "name": name,
                    "group": t.group,
                    "kind": t.plural,
                    "causes": conflict.causes(),
                },
            ) from conflict
        return self._store_update(t, live, result, dry_run), False

    def _store_update(self, t: ResourceType, live: Obj, candidate: Obj, dry_run: bool) -> Obj:
        metadata = candidate["metadata"]
        _keep_server_metadata(candidate, live)
        # Stored at the version it was created at; reads present it at the one asked for.
        candidate["apiVersion"] = live["apiVersion"]
        metadata["generation"] = live["metadata"].get("generation", 1) + (
            0 if same(_spec_part(live), _spec_part(candidate)) else 1
        )
        metadata["resourceVersion"] = live["metadata"]["resourceVersion"]
        if "managedFields" in metadata and not metadata["managedFields"]:
            del metadata["managedFields"]
        self._server_status(t, candidate)
        if same(candidate, live):
            # A no-op write changes nothing, not even the resourceVersion.
            return _present(live, t)
        if dry_run:
            return _present(candidate, t)
        self._side_effects_before(t, candidate)
        self._revision += 1
        metadata["resourceVersion"] = str(self._revision)
        if metadata.get("deletionTimestamp") and not metadata.get("finalizers"):
            # The last finalizer went: the deletion that waited for it completes now.
            del self._bucket(t)[_key(t, candidate)]
            self._emit("DELETED", t, candidate)
            self._side_effects_after_delete(t, candidate)
        else:
            self._bucket(t)[_key(t, candidate)] = candidate
            self._emit("MODIFIED", t, candidate, live)
        return _present(candidate, t)

    def set_status(self, t: ResourceType, namespace: str, name: str, status: Obj) -> Obj:
        """Replace `.status` directly, as a controller would through /status."""
        live = self._require(t, namespace, name)
        body = _present(live, t)
        body["status"] = clone(status)
        return self._update(
            t, live, body, manager=SANDBOX_MANAGER, dry_run=False, subresource="status"
        )

    def get_scale(self, t: ResourceType, namespace: str, name: str) -> Obj:
        return _scale_of(self._require(t, namespace, name))

    def update_scale(
        self,
        t: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        *,
        patch_type: str | None,
        manager: str,
        dry_run: bool,
    ) -> Obj:
        """PUT (patch_type None) or PATCH the scale subresource: it moves spec.replicas only."""
        live = self._require(t, namespace, name)
        scale = _scale_of(live)
        if patch_type is not None:
            scale = _patched(t, scale, patch_type, body)
        elif not isinstance(body, dict):
            raise errors.bad_request("the request body must be a Scale object")
        else:
            scale = body
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid(
                "Scale",
                "autoscaling",
                name,
                [("spec.replicas", f"Invalid value: {replicas!r}: must be a non-negative integer")],
            )
        _check_precondition(t, live, (scale.get("metadata") or {}).get("resourceVersion"))
        candidate = clone(live)
        candidate.setdefault("spec", {})["replicas"] = replicas
        candidate = record_update(
            live,
            candidate,
            manager=manager,
            api_version=t.api_version,
            now=self._now(),
            subresource="scale",
        )
        return _scale_of(self._store_update(t, live, candidate, dry_run))

    def delete(
        self,
        t: ResourceType,
        namespace: str,
        name: str,
        *,
        dry_run: bool,
        preconditions: dict[str, Any] | None = None,
    ) -> tuple[Obj, bool]:
        """Delete; returns (object, gone now). With finalizers it is only marked."""
        live = self._require(t, namespace, name)
        if preconditions:
            want_uid = preconditions.get("uid")
            if want_uid and want_uid != live["metadata"].get("uid"):
                raise errors.modified_conflict(
                    t.group,
                    t.plural,
                    name,
                    f"Precondition failed: UID in precondition: {want_uid}, "
                    f"UID in object meta: {live['metadata'].get('uid')}",
                )
            want_rv = preconditions.get("resourceVersion")
            if want_rv:
                _check_precondition(t, live, want_rv)
        if live["metadata"].get("finalizers"):
            if live["metadata"].get("deletionTimestamp"):
                return _present(live, t), False
            marked = clone(live)
            marked["metadata"]["deletionTimestamp"] = self._now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            if dry_run:
                return _present(marked, t), False
            self._revision += 1
            marked["metadata"]["resourceVersion"] = str(self._revision)
            self._bucket(t)[_key(t, marked)] = marked
            self._emit("MODIFIED", t, marked, live)
            return _present(marked, t), False
        if dry_run:
            return _present(live, t), True
        self._remove(t, live)
        return _present(live, t), True

    def _remove(self, t: ResourceType, live: Obj) -> None:
        if t.storage_key == NAMESPACES:
            # Emulated namespace deletion is immediate: its contents go first,
            # finalizers or not, then the namespace itself.
            namespace = live["metadata"]["name"]
            for t_inner in self.catalogue.all():
                if t_inner.storage_key == NAMESPACES or not t_inner.namespaced:
                    continue
                bucket = self._objects.get(t_inner.storage_key, {})
                for key in [k for k in bucket if k[0] == namespace]:
                    if key in bucket:
                        self._remove(t_inner, bucket[key])
        del self._bucket(t)[_key(t, live)]
        self._revision += 1
        gone = clone(live)
        gone["metadata"]["resourceVersion"] = str(self._revision)
        self._emit("DELETED", t, gone)
        self._side_effects_after_delete(t, live)

    # -- CRDs and server-written status -----------------------------------

    def _server_status(self, t: ResourceType, obj: Obj) -> None:
        if self.ready_workloads and t.storage_key in _WORKLOADS:
            _complete_rollout(t.kind, obj)
        if self.ready_workloads:
            workloads.settle(t.storage_key, obj, self._now())
        if t.storage_key == NAMESPACES:
            obj.setdefault("status", {"phase": "Active"})
        elif t.storage_key == (CRD_GROUP, CRD_PLURAL):
            _validate_crd(self.catalogue, obj)
            obj["status"] = _crd_status(
                obj, obj.get("status"), obj["metadata"]["creationTimestamp"]
            )

    def _side_effects_before(self, t: ResourceType, obj: Obj) -> None:
        if t.storage_key == (CRD_GROUP, CRD_PLURAL):
            name = obj["metadata"]["name"]
            self.catalogue.set_crd(name, crd_types(obj))

    def _side_effects_after_delete(self, t: ResourceType, obj: Obj) -> None:
        if t.storage_key != (CRD_GROUP, CRD_PLURAL):
            return
        dropped = self.catalogue.drop_crd(obj["metadata"]["name"])
        if not dropped:
            return
        served = dropped[0]
        for key in list(self._objects.get(served.storage_key, {})):
            self._remove(served, self._objects[served.storage_key][key])
        self._objects.pop(served.storage_key, None)


_WORKLOADS = {("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets")}


def _complete_rollout(kind: str, obj: Obj) -> None:
    """Write the status a workload controller would once its rollout is done.

    Only for a generation not observed yet, so a status a test wrote for the
    current generation stays as written.
    """
    generation = obj["metadata"].get("generation", 1)
    status = obj.get("status") or {}
    if status.get("observedGeneration") == generation:
        return
    if kind == "DaemonSet":
        obj["status"] = {
            "observedGeneration": generation,
            "desiredNumberScheduled": 1,
            "currentNumberScheduled": 1,
            "updatedNumberScheduled": 1,
            "numberReady": 1,
            "numberAvailable": 1,
        }
        return
    replicas = (obj.get("spec") or {}).get("replicas", 1)
    obj["status"] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "currentReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }
    if kind == "StatefulSet":
        obj["status"].pop("conditions")
        obj["status"]["currentRevision"] = obj["status"]["updateRevision"] = (
            f"{obj['metadata']['name']}-{generation}"
        )


def _validate_crd(catalogue: Catalogue, crd: Obj) -> None:
    name = crd["metadata"]["name"]
    try:
        types = crd_types(crd)
    except CrdInvalid as exc:
        raise errors.invalid("CustomResourceDefinition", CRD_GROUP, name, exc.causes) from exc
    for served in types:
        for existing in catalogue.all():
            if existing.storage_key == served.storage_key and not existing.from_crd:
                raise errors.invalid(
                    "CustomResourceDefinition",
                    CRD_GROUP,
                    name,
                    [("spec.group", f"{served.plural}.{served.group} is a built-in resource")],
                )


def _crd_status(crd: Obj, previous: Any, since: str) -> Obj:
    spec = crd.get("spec") or {}
    storage = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    stored = list((previous or {}).get("storedVersions") or [])
    for version in storage:
        if version not in stored:
            stored.append(version)
    names = clone(spec.get("names") or {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    return {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "lastTransitionTime": since,
                "reason": "NoConflicts",
                "message": "no conflicts found",
            },
            {
                "type": "Established",
                "status": "True",
                "lastTransitionTime": since,
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
            },
        ],
        "storedVersions": stored,
    }


def _patched(t: ResourceType, current: Obj, patch_type: str, patch: Any) -> Obj:
    try:
        if patch_type == MERGE_PATCH:
            if not isinstance(patch, dict):
                raise PatchError("a merge patch must be a JSON object")
            return merge_patch(current, patch)
        if patch_type == STRATEGIC_MERGE_PATCH:
            if t.from_crd:
                raise errors.unsupported_media_type(
                    "the body of the request was in an unknown format - accepted media "
                    "types include: application/json-patch+json, "
                    "application/merge-patch+json, application/apply-patch+yaml "
                    f"(strategic merge patch is not supported for custom resource {t.kind})"
                )
            return strategic_merge_patch(current, patch)
        if patch_type == JSON_PATCH:
            return json_patch(current, patch)
    except PatchError as exc:
        raise errors.bad_request(f"invalid {patch_type} patch: {exc}") from exc
    raise errors.unsupported_media_type(f"unsupported patch type {patch_type!r}")


def _present(obj: Obj, t: ResourceType) -> Obj:
    """A copy for a client, at the version it asked for (no conversion between versions)."""
    out: Obj = {"apiVersion": t.api_version, "kind": obj.get("kind", t.kind)}
    for key, value in obj.items():
        if key not in ("apiVersion", "kind"):
            out[key] = clone(value)
    return out


def _scale_of(obj: Obj) -> Obj:
    """The autoscaling/v1 Scale view of an object with spec.replicas."""
    metadata = obj["metadata"]
    spec = obj.get("spec") or {}
    match_labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: metadata[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in metadata
        },
        "spec": {"replicas": spec.get("replicas", 1)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(match_labels.items())),
        },
    }


def _key(t: ResourceType, obj: Obj) -> ObjectKey:
    metadata = obj["metadata"]
    return (metadata.get("namespace", "") if t.namespaced else "", metadata["name"])


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _keep_server_metadata(candidate: Obj, live: Obj) -> None:
    metadata = candidate.setdefault("metadata", {})
    for key in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if key in live["metadata"]:
            metadata[key] = live["metadata"][key]
        else:
            metadata.pop(key, None)
    if "namespace" in live["metadata"]:
        metadata["namespace"] = live["metadata"]["namespace"]


def _check_precondition(t: ResourceType, live: Obj, requested: Any) -> None:
    if requested and str(requested) != live["metadata"].get("resourceVersion"):
        raise errors.modified_conflict(
            t.group,
            t.plural,
            live["metadata"]["name"],
            "the object has been modified; please apply your changes to the latest version "
            "and try again",
        )


def _check_body(
    t: ResourceType,
    body: Any,
    namespace: str,
    *,
    name: str | None,
    allow_generate_name: bool = False,
    type_required: bool = False,
) -> Obj:
    """A deep copy of `body` after the checks every write makes; ApiError names what is wrong.

    An apply must say its apiVersion and kind; a create or update may leave them to the URL.
    """
    if not isinstance(body, dict):
        raise errors.bad_request(
            f"the request body must be a {t.kind} object, not {type(body).__name__}"
        )
    body = clone(body)
    if not type_required:
        # As the API server decodes a create or update: the URL supplies what the body omits.
        body.setdefault("apiVersion", t.api_version)
        body.setdefault("kind", t.kind)
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if not kind:
        raise errors.bad_request(
            f"Object 'Kind' is missing in the request body (expected {t.kind})"
        )
    if not api_version:
        raise errors.bad_request(
            f"Object 'apiVersion' is missing in the request body (expected {t.api_version})"
        )
    if kind != t.kind:
        raise errors.bad_request(
            f"the kind {kind!r} in the request body does not match the resource "
            f"{errors.qualified(t.group, t.plural)} of the URL (kind {t.kind!r})"
        )
    if api_version != t.api_version:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected "
            f"API version ({t.api_version})"
        )
    metadata = body.get("metadata")
    if metadata is None:
        metadata = body["metadata"] = {}
    if not isinstance(metadata, dict):
        raise errors.bad_request("metadata must be an object")
    for key in ("name", "generateName", "namespace"):
        if metadata.get(key) is not None and not isinstance(metadata[key], str):
            raise errors.bad_request(
                f"metadata.{key} must be a string, not {type(metadata[key]).__name__}"
            )
    body_name = metadata.get("name")
    if name is None:
        if not body_name and not (allow_generate_name and metadata.get("generateName")):
            raise errors.invalid(
                t.kind,
                t.group,
                "",
                [("metadata.name", "Required value: name or generateName is required")],
            )
    elif body_name is None or body_name == "":
        metadata["name"] = name
    elif body_name != name:
        raise errors.bad_request(
            f"the name of the object ({body_name}) does not match the name on the URL ({name})"
        )
    body_namespace = metadata.get("namespace")
    if t.namespaced and body_namespace and body_namespace != namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the "
            f"request ({body_namespace} != {namespace})"
        )
    _check_string_map(t, metadata, "labels", label_values=True)
    _check_string_map(t, metadata, "annotations", label_values=False)
    finalizers = metadata.get("finalizers")
    if finalizers is not None and (
        not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)
    ):
        raise errors.bad_request("metadata.finalizers must be a list of strings")
    return body


def _check_string_map(
    t: ResourceType, metadata: Obj, field_name: str, *, label_values: bool
) -> None:
    values = metadata.get(field_name)
    if values is None:
        return
    if not isinstance(values, dict):
        raise errors.bad_request(f"metadata.{field_name} must be a map of strings")
    name = str(metadata.get("name") or metadata.get("generateName") or "")
    causes: list[tuple[str, str]] = []
    for key, value in values.items():
        if not isinstance(value, str):
            raise errors.bad_request(
                f"metadata.{field_name}.{key} must be a string, not {type(value).__name__} "
                f"({value!r}); quote it in YAML"
            )
        prefix, _, label_name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix))) or (
            len(label_name) > 63 or not _LABEL_NAME.match(label_name)
        ):
            causes.append(
                (f"metadata.{field_name}", f"Invalid value: {key!r}: not a valid key name")
            )
        elif label_values and (len(value) > 63 or not _LABEL_VALUE.match(value)):
            causes.append(
                (f"metadata.labels.{key}", f"Invalid value: {value!r}: not a valid label value")
            )
    if causes:
        raise errors.invalid(t.kind, t.group, name, causes)


def _check_name(t: ResourceType, name: str) -> None:
    if t.group == "rbac.authorization.k8s.io":
        ok = name not in (".", "..") and "/" not in name and "%" not in name
        rule = "may not be '.' or '..' and may not contain '/' or '%'"
    elif t.storage_key in (NAMESPACES, ("", "services")):
        ok = len(name) <= 63 and bool(_DNS_LABEL.match(name))
        rule = "must be a lowercase RFC 1123 label (a-z, 0-9, '-'; at most 63 characters)"
    else:
        ok = len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))
        rule = "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'; at most 253 characters)"
    if not ok:
        raise errors.invalid(
            t.kind, t.group, name, [("metadata.name", f"Invalid value: {name!r}: {rule}")]
        )


def _parse_revision(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise errors.bad_request(f"invalid resourceVersion {text!r}: must be a number") from None
    if value < 0:
        raise errors.bad_request(f"invalid resourceVersion {text!r}: must not be negative")
    return value


def _encode_continue(key: ObjectKey) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_continue(token: str) -> ObjectKey:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))
        return (str(namespace), str(name))
    except (ValueError, TypeError) as exc:
        raise errors.bad_request(f"invalid continue token {token!r}") from exc
