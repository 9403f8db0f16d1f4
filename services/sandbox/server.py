"""The HTTP face of the emulator: Kubernetes API paths over aiohttp.

Parses what clients send (paths, query parameters, JSON and YAML bodies,
kubectl's protobuf bodies through protobuf.py, patch content types), hands
it to the store, and renders objects, lists, watch streams, tables and
`Status` failures the way kubernetes_asyncio and kubectl expect them.
Anything unexpected becomes a Status 500 for that one request; the server
keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from aiohttp import web

from services.sandbox import discovery, errors, openapi, protobuf
from services.sandbox.discovery import Catalogue, ResourceType
from services.sandbox.errors import ApiError
from services.sandbox.faults import Faults
from services.sandbox.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from services.sandbox.store import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    ObjectStore,
    WatchEvent,
)

log = logging.getLogger(__name__)

# The API server accepts request bodies up to 3 MiB; leave room for the JSON envelope.
MAX_BODY_BYTES = 3 * 1024 * 1024 + 64 * 1024
# A client has HEADER_TIMEOUT from connecting to send a whole request head
# (aiohttp's keepalive_timeout, which also closes idle kept-alive connections:
# longer than a client's own idle close, 15 s for aiohttp, so the client
# always closes first and never sends into a closing connection), then
# BODY_TIMEOUT for the body.
HEADER_TIMEOUT = 60.0
BODY_TIMEOUT = 30.0
_BODY_TIMEOUT = web.AppKey("body_timeout", float)
DEFAULT_WATCH_SECONDS = 1800
_JSON_TYPES = ("application/json", MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH)
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", APPLY_PATCH)


class _YamlLoader(yaml.SafeLoader):
    """YAML as the API server reads it: timestamps stay strings (JSON has no dates)."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Target:
    """What a resource URL names."""

    type: ResourceType
    namespace: str | None  # None: all namespaces (or a cluster-scoped kind)
    name: str | None
    subresource: str


class SandboxServer:
    """aiohttp application serving `store` as a Kubernetes API."""

    def __init__(
        self, store: ObjectStore, *, latency_ms: float = 0.0, body_timeout: float = BODY_TIMEOUT
    ) -> None:
        self.store = store
        self.body_timeout = body_timeout
        self.catalogue: Catalogue = store.catalogue
        self.latency_ms = latency_ms
        # Test-only fault injection (see faults.py); empty unless a test arms it.
        self.faults = Faults()
        # Test-only: a list to record each request's (method, path) in, when set.
        self.requests: list[tuple[str, str]] | None = None
        self.address = ""  # host:port, for /api's serverAddressByClientCIDRs
        self._watches: set[asyncio.Task[Any]] = set()

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._latency])
        app[_BODY_TIMEOUT] = self.body_timeout
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    @web.middleware
    async def _latency(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)
        return await handler(request)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.requests is not None:
            self.requests.append((request.method, request.path))
        try:
            return await self._dispatch(request)
        except ApiError as exc:
            return _json(exc.status(), exc.code)
        except Exception as exc:
            log.exception("sandbox: %s %s failed", request.method, request.path_qs)
            failure = ApiError(500, "InternalError", f"internal error in the emulator: {exc!r}")
            return _json(failure.status(), 500)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return web.Response(text="ok")
        accept = request.headers.get("Accept", "")
        if "protobuf" in accept and not protobuf.accepts_json(accept):
            raise ApiError(
                406,
                "NotAcceptable",
                f"the emulator answers in JSON only, and the request accepts "
                f"{accept!r}: add application/json to its Accept header",
            )
        if parts == ["version"]:
            return _json(discovery.server_version())
        if parts[:2] == ["openapi", "v3"] and method == "GET":
            return self._openapi(parts[2:])
        if parts and parts[0] in ("api", "apis") and method == "GET":
            document = self._discovery(request, parts)
            if document is not None:
                return document
        if parts[:1] == ["api"] and len(parts) >= 3:
            return await self._resource(request, "", parts[1], parts[2:])
        if parts[:1] == ["apis"] and len(parts) >= 4:
            return await self._resource(request, parts[1], parts[2], parts[3:])
        raise ApiError(
            404,
            "NotFound",
            f"the server could not find the requested resource ({method} {request.path})",
        )

    def _openapi(self, rest: list[str]) -> web.StreamResponse:
        if not rest:
            return _json(openapi.root(self.catalogue))
        if rest[0] == "api" and len(rest) == 2:
            body = openapi.document(self.catalogue, "", rest[1])
        elif rest[0] == "apis" and len(rest) == 3:
            body = openapi.document(self.catalogue, rest[1], rest[2])
        else:
            body = None
        if body is None:
            raise ApiError(404, "NotFound", f"no OpenAPI v3 document for {'/'.join(rest)}")
        return _json(body)

    def _discovery(self, request: web.Request, parts: list[str]) -> web.StreamResponse | None:
        accept = request.headers.get("Accept", "")
        if parts == ["api"]:
            if discovery.wants_aggregated(accept):
                return _aggregated(discovery.aggregated_discovery(self.catalogue, core=True))
            return _json(discovery.api_versions(self.address))
        if parts == ["apis"]:
            if discovery.wants_aggregated(accept):
                return _aggregated(discovery.aggregated_discovery(self.catalogue, core=False))
            return _json(discovery.api_group_list(self.catalogue))
        if parts == ["api", "v1"]:
            return _json(discovery.resource_list(self.catalogue, "", "v1"))
        if len(parts) == 2 and parts[0] == "apis":
            group = discovery.api_group(self.catalogue, parts[1])
            if group is None:
                raise ApiError(
                    404, "NotFound", f"the server could not find the API group {parts[1]!r}"
                )
            return _json(group)
        if len(parts) == 3 and parts[0] == "apis":
            if not self.catalogue.group_served(parts[1], parts[2]):
                raise ApiError(
                    404,
                    "NotFound",
                    f"the server does not serve the API version {parts[1]}/{parts[2]}",
                )
            return _json(discovery.resource_list(self.catalogue, parts[1], parts[2]))
        return None

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace: str | None = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        if not self.catalogue.group_served(group, version):
            api = f"{group}/{version}" if group else version
            raise ApiError(404, "NotFound", f"the server does not serve the API version {api}")
        t = self.catalogue.lookup(group, version, plural)
        if t is None:
            api = f"{group}/{version}" if group else version
            raise ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource: "
                f"{api} has no resource {plural!r}",
            )
        if len(rest) > 3:
            raise ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource {'/'.join(rest)}",
            )
        name = rest[1] if len(rest) >= 2 else None
        subresource = rest[2] if len(rest) == 3 else ""
        known = (subresource == "status" and t.status_subresource) or (
            subresource == "scale" and t.scale_subresource
        )
        if subresource and not known:
            raise ApiError(
                404,
                "NotFound",
                f"{errors.qualified(t.group, t.plural)} has no subresource {subresource!r}",
            )
        if namespace is not None and not t.namespaced:
            raise ApiError(
                404,
                "NotFound",
                f"{errors.qualified(t.group, t.plural)} is cluster-scoped; "
                "it has no namespaced URL",
            )
        return Target(t, namespace, name, subresource)

    async def _resource(
        self, request: web.Request, group: str, version: str, rest: list[str]
    ) -> web.StreamResponse:
        target = self._target(group, version, rest)
        t, name = target.type, target.name
        query = request.query
        method = request.method
        namespace = target.namespace or ""
        if name is None:
            if method == "GET":
                if _flag(query.get("watch")):
                    return await self._watch(request, target)
                return self._list(request, target)
            if method == "POST":
                if t.namespaced and target.namespace is None:
                    raise errors.method_not_allowed(
                        f"create {t.plural} needs a namespace in the URL "
                        f"(/namespaces/<ns>/{t.plural})"
                    )
                obj = self.store.create(
                    t,
                    namespace,
                    await _body(request),
                    manager=_manager(request, required=False),
                    dry_run=_dry_run(request),
                )
                return _json(obj, 201)
            if method == "DELETE":
                return await self._delete_collection(request, target)
            raise errors.method_not_allowed(
                f"{method} is not allowed on a collection of {t.plural}"
            )
        if t.namespaced and target.namespace is None:
            raise ApiError(
                404,
                "NotFound",
                f"{errors.qualified(t.group, t.plural)} is namespaced: "
                f"use /namespaces/<ns>/{t.plural}/{name}",
            )
        if method in ("PUT", "PATCH") and not _dry_run(request):
            self.faults.check(t.kind, namespace, name)
        if target.subresource == "scale":
            return await self._scale(request, target, name)
        if method == "GET":
            if _flag(query.get("watch")):
                return await self._watch(request, target)
            obj = self.store.get(t, namespace, name)
            if _wants_table(request):
                return _json(
                    _table(t, [obj], {"resourceVersion": obj["metadata"]["resourceVersion"]})
                )
            return _json(obj)
        if method == "PUT":
            obj = self.store.replace(
                t,
                namespace,
                name,
                await _body(request),
                manager=_manager(request, required=False),
                dry_run=_dry_run(request),
                subresource=target.subresource,
            )
            return _json(obj)
        if method == "PATCH":
            return await self._patch(request, target, name)
        if method == "DELETE":
            if target.subresource:
                raise errors.method_not_allowed("DELETE is not allowed on a subresource")
            options = await _delete_options(request)
            obj, gone = self.store.delete(
                t,
                namespace,
                name,
                dry_run=_dry_run(request, options),
                preconditions=options.get("preconditions"),
            )
            return _json(obj, 200 if gone else 202)
        raise errors.method_not_allowed(f"{method} is not allowed on {t.plural}/{name}")

    async def _scale(self, request: web.Request, target: Target, name: str) -> web.StreamResponse:
        t, namespace = target.type, target.namespace or ""
        if request.method == "GET":
            return _json(self.store.get_scale(t, namespace, name))
        if request.method not in ("PUT", "PATCH"):
            raise errors.method_not_allowed(f"{request.method} is not allowed on {t.plural}/scale")
        patch_type = request.content_type if request.method == "PATCH" else None
        if patch_type == APPLY_PATCH:
            raise errors.unsupported_media_type(
                "the emulator does not support server-side apply on the scale subresource: "
                "use PUT, a merge patch or a JSON patch"
            )
        scale = self.store.update_scale(
            t,
            namespace,
            name,
            await _body(request),
            patch_type=patch_type,
            manager=_manager(request, required=False),
            dry_run=_dry_run(request),
        )
        return _json(scale)

    async def _patch(self, request: web.Request, target: Target, name: str) -> web.StreamResponse:
        t = target.type
        content_type = request.content_type
        if content_type not in (APPLY_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH):
            raise errors.unsupported_media_type(
                f"the body of the request was in an unknown format ({content_type or 'none'}) - "
                "accepted media types include: application/json-patch+json, "
                "application/merge-patch+json, application/apply-patch+yaml, "
                "application/strategic-merge-patch+json"
            )
        force = request.query.get("force")
        if force is not None and content_type != APPLY_PATCH and _flag(force):
            raise errors.bad_request(
                "force is only allowed for apply patches (application/apply-patch+yaml)"
            )
        body = await _body(request)
        namespace = target.namespace or ""
        if content_type == APPLY_PATCH:
            obj, created = self.store.apply(
                t,
                namespace,
                name,
                body,
                manager=_manager(request, required=True),
                force=_flag(force),
                dry_run=_dry_run(request),
                subresource=target.subresource,
            )
            return _json(obj, 201 if created else 200)
        obj = self.store.patch(
            t,
            namespace,
            name,
            content_type,
            body,
            manager=_manager(request, required=False),
            dry_run=_dry_run(request),
            subresource=target.subresource,
        )
        return _json(obj)

    async def _delete_collection(self, request: web.Request, target: Target) -> web.StreamResponse:
        t = target.type
        options = await _delete_options(request)
        dry_run = _dry_run(request, options)
        labels, fields = _selectors(request, t)
        listed = self.store.list(t, target.namespace, labels=labels, fields=fields)
        deleted = []
        for item in listed.items:
            metadata = item["metadata"]
            obj, _ = self.store.delete(
                t, metadata.get("namespace", ""), metadata["name"], dry_run=dry_run
            )
            deleted.append(obj)
        return _json(
            {
                "kind": t.list_kind_name,
                "apiVersion": t.api_version,
                "metadata": {"resourceVersion": str(self.store.resource_version)},
                "items": deleted,
            }
        )

    def _list(self, request: web.Request, target: Target) -> web.StreamResponse:
        t = target.type
        query = request.query
        labels, fields = _selectors(request, t)
        limit = _int_param(query, "limit")
        result = self.store.list(
            t,
            target.namespace,
            labels=labels,
            fields=fields,
            limit=limit,
            continue_token=query.get("continue") or None,
        )
        metadata: dict[str, Any] = {"resourceVersion": result.resource_version}
        if result.continue_token:
            metadata["continue"] = result.continue_token
            metadata["remainingItemCount"] = result.remaining
        if _wants_table(request):
            return _json(_table(t, result.items, metadata))
        return _json(
            {
                "kind": t.list_kind_name,
                "apiVersion": t.api_version,
                "metadata": metadata,
                "items": result.items,
            }
        )

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        t = target.type
        query = request.query
        labels, fields = _selectors(request, t)
        if target.name is not None:
            fields = FieldSelector(
                (
                    *fields.requirements,
                    *parse_field_selector(f"metadata.name={target.name}", t.kind).requirements,
                )
            )
        timeout = _int_param(query, "timeoutSeconds") or DEFAULT_WATCH_SECONDS
        send_initial = _flag(query.get("sendInitialEvents"))
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        resource_version = query.get("resourceVersion")
        if send_initial:
            resource_version = None

        response = web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        try:
            subscription = self.store.subscribe(t, resource_version)
        except ApiError as exc:
            if exc.code != 410:
                raise
            # A too old resourceVersion is reported inside the stream, as the API server does.
            await response.prepare(request)
            await _write_event(response, {"type": "ERROR", "object": exc.status()})
            await response.write_eof()
            return response
        await response.prepare(request)
        task = asyncio.current_task()
        if task is not None:
            self._watches.add(task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            for event in subscription.backlog:
                await self._send(response, event, target, labels, fields)
            if send_initial and bookmarks:
                await _write_event(
                    response,
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": t.kind,
                            "apiVersion": t.api_version,
                            "metadata": {
                                "resourceVersion": str(subscription.resource_version),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    },
                )
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(subscription.queue.get(), remaining)
                except TimeoutError:
                    break
                if event is None:
                    break
                await self._send(response, event, target, labels, fields)
        finally:
            # Also reached when the client hangs up: aiohttp then cancels this handler
            # (handler_cancellation), so a dead watch does not keep its queue growing.
            self.store.unsubscribe(subscription)
            if task is not None:
                self._watches.discard(task)
        await response.write_eof()
        return response

    async def _send(
        self,
        response: web.StreamResponse,
        event: WatchEvent,
        target: Target,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> None:
        t = target.type

        def matches(obj: dict[str, Any] | None) -> bool:
            if obj is None:
                return False
            metadata = obj["metadata"]
            if (
                target.namespace is not None
                and t.namespaced
                and metadata.get("namespace") != target.namespace
            ):
                return False
            return labels.matches(metadata.get("labels")) and fields.matches(obj)

        now, before = matches(event.obj), matches(event.previous)
        kind = event.type
        if kind == "MODIFIED":
            if now and not before:
                kind = "ADDED"
            elif before and not now:
                kind = "DELETED"
            elif not now:
                return
        elif not now:
            return
        obj = dict(event.obj)
        obj["apiVersion"] = t.api_version
        await _write_event(response, {"type": kind, "object": obj})

    def end_watches(self) -> None:
        """End streaming watches so a stop does not wait for their timeouts."""
        self.store.close_watches()
        for task in list(self._watches):
            task.cancel()


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _int_param(query: Any, name: str) -> int | None:
    raw = query.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise errors.bad_request(f"invalid {name} {raw!r}: must be an integer") from None
    if value < 0:
        raise errors.bad_request(f"invalid {name} {raw!r}: must not be negative")
    return value


def _selectors(request: web.Request, t: ResourceType) -> tuple[LabelSelector, FieldSelector]:
    try:
        return (
            parse_label_selector(request.query.get("labelSelector")),
            parse_field_selector(request.query.get("fieldSelector"), t.kind),
        )
    except SelectorError as exc:
        raise errors.bad_request(str(exc)) from exc


def _dry_run(request: web.Request, options: dict[str, Any] | None = None) -> bool:
    values = request.query.getall("dryRun", [])
    if options and isinstance(options.get("dryRun"), list):
        values = [*values, *options["dryRun"]]
    for value in values:
        if value != "All":
            raise errors.bad_request(
                f'invalid dryRun value {value!r}: the only supported value is "All"'
            )
    return bool(values)


def _manager(request: web.Request, *, required: bool) -> str:
    manager = request.query.get("fieldManager")
    if manager is None:
        if required:
            raise errors.bad_request(
                "fieldManager is required for apply requests: set the fieldManager query parameter"
            )
        # The API server names an unnamed writer after its user agent's product.
        manager = request.headers.get("User-Agent", "unknown").split("/")[0].strip() or "unknown"
    if not manager or len(manager) > 128:
        raise errors.bad_request("fieldManager must be 1 to 128 characters long")
    return manager


async def _raw_body(request: web.Request) -> bytes:
    within = request.app.get(_BODY_TIMEOUT, BODY_TIMEOUT)
    try:
        async with asyncio.timeout(within):
            return await request.read()
    except TimeoutError:
        raise ApiError(
            408, "Timeout", f"the request body did not arrive within {within:g}s"
        ) from None
    except web.HTTPRequestEntityTooLarge as exc:
        raise ApiError(
            413, "RequestEntityTooLarge", "the request body is larger than 3 MiB"
        ) from exc


async def _body(request: web.Request) -> Any:
    raw = await _raw_body(request)
    if not raw.strip():
        raise errors.bad_request("the request body is empty: send the object as JSON or YAML")
    content_type = request.content_type
    if content_type == protobuf.CONTENT_TYPE:
        return _protobuf_body(raw)
    if "protobuf" in content_type:
        raise errors.unsupported_media_type(
            f"the emulator reads JSON, YAML and {protobuf.CONTENT_TYPE} bodies, not {content_type}"
        )
    text = raw.decode("utf-8", errors="replace")
    if content_type in _JSON_TYPES:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.bad_request(
                f"error decoding JSON body: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from exc
    if (
        content_type in _YAML_TYPES
        or not content_type
        or content_type == "application/octet-stream"
    ):
        if text.lstrip().startswith("{"):
            # JSON is YAML, and what clients send as an apply patch (kubectl,
            # kubernetes_asyncio): read it as JSON, as the API server's YAML
            # decoder does, not by the pure-Python YAML parser (most of the
            # emulator's CPU in a fan-out). Anything json rejects is read as YAML.
            with contextlib.suppress(json.JSONDecodeError):
                document = json.loads(text)
                if isinstance(document, dict):
                    return document
        try:
            documents = [d for d in yaml.load_all(text, Loader=_YamlLoader) if d is not None]
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding YAML body: {exc}") from exc
        if len(documents) != 1:
            raise errors.bad_request(
                "the request body must hold exactly one object, "
                f"found {len(documents)} YAML documents"
            )
        return documents[0]
    raise errors.unsupported_media_type(
        f"unsupported Content-Type {content_type!r}: use JSON or YAML"
    )


def _protobuf_body(raw: bytes) -> Any:
    """kubectl's typed `create` sends protobuf; it accepts the JSON answer every route gives."""
    try:
        return protobuf.decode(raw)
    except protobuf.ProtobufError as exc:
        if exc.unsupported:
            raise errors.unsupported_media_type(str(exc)) from exc
        raise errors.bad_request(f"error decoding the protobuf body: {exc}") from exc


async def _delete_options(request: web.Request) -> dict[str, Any]:
    raw = await _raw_body(request)
    if not raw.strip():
        return {}
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise errors.bad_request(f"error decoding DeleteOptions: {exc.msg}") from exc
    if not isinstance(options, dict):
        raise errors.bad_request("DeleteOptions must be a JSON object")
    return options


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _aggregated(body: Any) -> web.Response:
    response = web.Response(body=json.dumps(body, separators=(",", ":")).encode())
    # Clients pick the decoder from these parameters, so they must be on the response.
    response.headers["Content-Type"] = discovery.AGGREGATED_CONTENT_TYPE
    return response


async def _write_event(response: web.StreamResponse, event: dict[str, Any]) -> None:
    await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    first = accept.split(",")[0]
    params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in first.split(";")[1:])}
    return params.get("as") == "Table" and params.get("g") == "meta.k8s.io"


def _age(created: str | None) -> str:
    if not created:
        return "<unknown>"
    try:
        moment = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return "<unknown>"
    seconds = max(0, int((datetime.now(UTC) - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _table(
    t: ResourceType, items: list[dict[str, Any]], metadata: dict[str, Any]
) -> dict[str, Any]:
    """A meta.k8s.io Table with NAME and AGE, which is what `kubectl get` prints."""
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "description": "Name",
                "priority": 0,
            },
            {"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0},
        ],
        "rows": [
            {
                "cells": [
                    item["metadata"]["name"],
                    _age(item["metadata"].get("creationTimestamp")),
                ],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": item["metadata"],
                },
            }
            for item in items
        ],
    }
