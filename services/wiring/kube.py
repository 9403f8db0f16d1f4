"""Kubernetes: the one place Wake talks to an API server, through kubernetes_asyncio.

Production code pointed at a kubeconfig (tests point it at the sandbox
emulator): discovery of kinds, server-side apply (and its dry run), get,
delete and list by labels, on unstructured dicts. Every failure the API
server answers with becomes a `KubeError` naming the resource at fault.

Not kubernetes_asyncio's DynamicClient: in 36.x it reads responses with
`_preload_content=False` and skips the status check, so an error `Status`
comes back as if it were the object (a GET of a missing ConfigMap returns a
`ResourceInstance[Status]`); and its discovery cache is a file in /tmp keyed
by server URL that outlives the kinds a CRD served. Requests here go through
the same generated `ApiClient.call_api` (auth, TLS, proxies from the
kubeconfig), on paths built from our own discovery.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from events.bundle import ref_of
from events.payloads import ResourceRef
from services.wiring import telemetry

# kubernetes_asyncio without its generated models: 61 MiB of every process talking to a cluster.
from services.wiring.kubelight import ApiException, ConfigException, client, config
from services.wiring.settings import Settings

Resource = dict[str, Any]

FIELD_MANAGER = "wake"
USER_AGENT = "wake"
APPLY_PATCH = "application/apply-patch+yaml"
_IN_CLUSTER_HOST = "KUBERNETES_SERVICE_HOST"


class KubeConfigError(ValueError):
    """No usable kubeconfig: the message names the file or context at fault."""


class KubeError(Exception):
    """The API server refused a request (or could not be reached) for `ref`.

    `status_code` and `reason` are the API's (422 Invalid, 404 NotFound, ...);
    `message` is its own words, which name the field at fault.
    """

    def __init__(
        self, status_code: int, reason: str, message: str, ref: ResourceRef | None = None
    ) -> None:
        where = f"{ref}: " if ref is not None else ""
        super().__init__(f"{where}{status_code} {reason}: {message}")
        self.status_code = status_code
        self.reason = reason
        self.message = message
        self.ref = ref


class KubeUnreachable(KubeError):
    """No answer from the API server (connection refused, timeout): worth retrying."""

    def __init__(self, message: str, ref: ResourceRef | None = None) -> None:
        super().__init__(0, "Unreachable", message, ref)


@dataclass(frozen=True, slots=True)
class ApiResource:
    """A kind the server serves: where its objects live and whether they have a namespace."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    def path(self, *, namespace: str = "", name: str = "") -> str:
        """The URL path of the collection (no name) or of one object."""
        base = f"/apis/{self.api_version}" if self.group else f"/api/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


@dataclass(frozen=True, slots=True)
class Applied:
    """The object as the server stored it (or would have, for a dry run)."""

    object: Resource
    created: bool


def kubeconfig_source(kubeconfig: str = "", environ: Mapping[str, str] | None = None) -> str | None:
    """The kubeconfig path(s) to load, or None to use the pod's service account.

    In order: `kubeconfig` (the setting), $KUBECONFIG (a ':'-separated list, as
    kubectl reads it), ~/.kube/config, then in-cluster if running in a pod.
    """
    environ = os.environ if environ is None else environ
    source = kubeconfig or environ.get("KUBECONFIG", "")
    if source:
        paths = [Path(p).expanduser() for p in source.split(os.pathsep) if p]
        if not any(p.is_file() for p in paths):
            raise KubeConfigError(f"kubeconfig {source} not found")
        return source
    default = Path("~/.kube/config").expanduser()
    if default.is_file():
        return str(default)
    if environ.get(_IN_CLUSTER_HOST):
        return None
    raise KubeConfigError(
        "no kubeconfig: set WAKE_KUBECONFIG or $KUBECONFIG, or create ~/.kube/config "
        "(or run in a pod with a service account)"
    )


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def _skip_env_lookups_without_proxies(api: client.ApiClient, environ: Mapping[str, str]) -> None:
    """Stop aiohttp reading ~/.netrc and proxy variables on every request, when none is set.

    kubernetes_asyncio opens its aiohttp session with trust_env=True, and aiohttp
    then looks up .netrc and the proxy variables in a worker thread for every
    request: 15% of the planner's CPU in the 1000-app fan-out. A kubeconfig
    carries its own credentials, so .netrc is never what authenticates Wake; with
    a proxy variable set, the lookups stay on so the proxy is used.
    """
    if any(name in environ or name.upper() in environ for name in _PROXY_VARIABLES):
        return
    session = api.rest_client.pool_manager
    if hasattr(session, "_trust_env"):
        session._trust_env = False


class Kube:
    """An API server, by kubeconfig. Use `await Kube.connect(...)`, then `close()`."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        loader: Any = None,
        request_timeout: float = 30.0,
    ) -> None:
        self.api = api
        self._loader = loader
        self._timeout = request_timeout
        # api_version -> kind -> ApiResource; a group-version absent here was never asked for.
        self._kinds: dict[str, dict[str, ApiResource]] = {}

    @classmethod
    async def connect(
        cls,
        *,
        kubeconfig: str = "",
        context: str = "",
        request_timeout: float = 30.0,
        environ: Mapping[str, str] | None = None,
    ) -> Kube:
        """A client for the cluster of `kubeconfig`'s `context` (default: its current one)."""
        source = kubeconfig_source(kubeconfig, environ)
        configuration = client.Configuration()
        loader = None
        try:
            if source is None:
                config.load_incluster_config(client_configuration=configuration)
            else:
                # persist_config=False: Wake never writes to an operator's kubeconfig.
                loader = await config.load_kube_config(
                    config_file=source,
                    context=context or None,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except (ConfigException, OSError, ValueError) as exc:
            where = source or "in-cluster service account"
            with_context = f" (context {context!r})" if context else ""
            raise KubeConfigError(f"kubeconfig {where}{with_context}: {exc}") from None
        api = client.ApiClient(configuration=configuration)
        api.user_agent = USER_AGENT  # what an API server's audit log shows as the client
        _skip_env_lookups_without_proxies(api, os.environ if environ is None else environ)
        return cls(api, loader=loader, request_timeout=request_timeout)

    @classmethod
    async def from_settings(cls, settings: Settings) -> Kube:
        return await cls.connect(kubeconfig=settings.kubeconfig, context=settings.kube_context)

    async def close(self) -> None:
        await self.api.close()

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- discovery -----------------------------------------------------------------

    async def resource(
        self, api_version: str, kind: str, *, ref: ResourceRef | None = None
    ) -> ApiResource:
        """Where `kind` of `api_version` is served; KubeError 404 if the server does not serve it.

        Cached per group-version. A miss refreshes that group-version once, so a
        kind a CRD just made servable is found.
        """
        known = self._kinds.get(api_version)
        if known is not None and kind in known:
            return known[kind]
        known = await self._discover(api_version, ref)
        if kind in known:
            return known[kind]
        raise KubeError(
            404, "NotFound", f"the server does not serve kind {kind} in {api_version}", ref
        )

    async def _discover(self, api_version: str, ref: ResourceRef | None) -> dict[str, ApiResource]:
        path = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
        try:
            listing, _ = await self._call("GET", path, ref=ref)
        except KubeError as exc:
            if exc.status_code != 404:
                raise
            listing = {"resources": []}
        kinds: dict[str, ApiResource] = {}
        for entry in listing.get("resources") or []:
            name = entry.get("name", "")
            if "/" in name:  # a subresource, deployments/status
                continue
            kinds[entry["kind"]] = ApiResource(
                api_version=api_version,
                kind=entry["kind"],
                plural=name,
                namespaced=bool(entry.get("namespaced")),
            )
        self._kinds[api_version] = kinds
        return kinds

    def _forget(self, api_version: str) -> None:
        # A 404 on a cached kind may mean its CRD went away; ask again next time.
        self._kinds.pop(api_version, None)

    async def _locate(self, ref: ResourceRef) -> tuple[ApiResource, str]:
        t = await self.resource(ref.api_version, ref.kind, ref=ref)
        if t.namespaced and not ref.namespace:
            raise KubeError(
                400, "BadRequest", f"{ref.kind} is namespaced: metadata.namespace is required", ref
            )
        if not ref.name:
            raise KubeError(400, "BadRequest", "metadata.name is required", ref)
        return t, t.path(namespace=ref.namespace, name=ref.name)

    # --- objects -------------------------------------------------------------------

    async def get(self, ref: ResourceRef) -> Resource | None:
        """The live object, or None if there is none."""
        _, path = await self._locate(ref)
        try:
            obj, _ = await self._call("GET", path, ref=ref)
        except KubeError as exc:
            if exc.status_code == 404:
                return None
            raise
        return obj

    async def apply(self, resource: Resource, *, dry_run: bool = False) -> Applied:
        """Server-side apply `resource` as field manager `wake`, taking over conflicting fields.

        force=True: Wake owns what it applies (as Argo CD's and Flux's
        server-side apply do), so a field another manager set is taken over
        rather than refused. `dry_run`: the server computes the result
        (defaults, merges, admission) and stores nothing.
        """
        ref = ref_of(resource)
        t, path = await self._locate(ref)
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")]
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            obj, status = await self._call(
                "PATCH", path, ref=ref, body=resource, query=query, content_type=APPLY_PATCH
            )
        except KubeError as exc:
            if exc.status_code == 404:
                self._forget(t.api_version)
            raise
        return Applied(object=obj, created=status == 201)

    async def create(self, resource: Resource) -> Resource:
        """Create `resource` (POST to its collection): what a hook with `generateName` needs.

        The server picks the name from `metadata.generateName`; the object it
        stored comes back. An object of that name already there is a 409.
        """
        ref = ref_of(resource)
        t = await self.resource(ref.api_version, ref.kind, ref=ref)
        if t.namespaced and not ref.namespace:
            raise KubeError(
                400, "BadRequest", f"{ref.kind} is namespaced: metadata.namespace is required", ref
            )
        obj, _ = await self._call(
            "POST",
            t.path(namespace=ref.namespace),
            ref=ref,
            body=resource,
            query=[("fieldManager", FIELD_MANAGER)],
        )
        return obj

    async def delete(self, ref: ResourceRef) -> bool:
        """Delete the object (its dependents in the background); False if it was not there."""
        _, path = await self._locate(ref)
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        try:
            await self._call("DELETE", path, ref=ref, body=body)
        except KubeError as exc:
            if exc.status_code == 404:
                return False
            raise
        return True

    async def list_by_labels(
        self,
        api_version: str,
        kind: str,
        labels: Mapping[str, str],
        *,
        namespace: str = "",
        page_size: int = 500,
    ) -> list[Resource]:
        """Every object of `kind` carrying all of `labels` (in `namespace`, or everywhere).

        Read in pages of `page_size`, so a large list never arrives as one response.
        """
        t = await self.resource(api_version, kind)
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        items: list[Resource] = []
        token = ""
        while True:
            query = [("labelSelector", selector), ("limit", str(page_size))]
            if token:
                query.append(("continue", token))
            listing, _ = await self._call("GET", t.path(namespace=namespace), query=query)
            for item in listing.get("items") or []:
                # A list's items leave out apiVersion and kind; put them back.
                items.append({"apiVersion": t.api_version, "kind": t.kind, **item})
            token = (listing.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    # --- transport -----------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        ref: ResourceRef | None = None,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
        retried: bool = False,
    ) -> tuple[Any, int]:
        with telemetry.http_client_span(
            method, f"{self.api.configuration.host}{path}", _kube_attributes(method, ref, query)
        ) as span:
            data, status = await self._call_once(
                method,
                path,
                ref=ref,
                body=body,
                query=query,
                content_type=content_type,
                retried=retried,
                span=span,
            )
            telemetry.record_status(span, status)
            return data, status

    async def _call_once(
        self,
        method: str,
        path: str,
        *,
        ref: ResourceRef | None,
        body: Any,
        query: list[tuple[str, str]] | None,
        content_type: str,
        retried: bool,
        span: Any,
    ) -> tuple[Any, int]:
        try:
            data, status, _ = await self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Content-Type": content_type, "Accept": "application/json"},
                body=body,
                response_types_map={200: "object", 201: "object", 202: "object"},
                auth_settings=["BearerToken"],
                _return_http_data_only=False,
                _request_timeout=self._timeout,
            )
        except ApiException as exc:
            telemetry.record_status(span, exc.status or 0)
            if exc.status == 401 and not retried and self._loader is not None:
                # A token from an exec plugin or OIDC expired: load it again, retry once.
                await self._loader.load_and_set(self.api.configuration)
                return await self._call(
                    method,
                    path,
                    ref=ref,
                    body=body,
                    query=query,
                    content_type=content_type,
                    retried=True,
                )
            raise _api_error(exc, ref) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeUnreachable(
                f"{method} {self.api.configuration.host}{path}: {exc!r}", ref
            ) from None
        return data, status


_KUBE_OPERATIONS = {"GET": "get", "PATCH": "apply", "DELETE": "delete", "POST": "create"}


def _kube_attributes(
    method: str, ref: ResourceRef | None, query: list[tuple[str, str]] | None
) -> dict[str, object]:
    """What a Kubernetes request's span says: the operation (dry run or not) and the object."""
    dry_run = any(key == "dryRun" for key, _ in query or [])
    operation = _KUBE_OPERATIONS.get(method.upper(), method.lower())
    attributes: dict[str, object] = {
        "wake.kube.operation": f"{operation} (dry run)" if dry_run else operation,
        "wake.kube.dry_run": dry_run,
    }
    if ref is not None:
        attributes["wake.kube.kind"] = ref.kind
        attributes["k8s.namespace.name"] = ref.namespace or ""
        attributes["wake.kube.name"] = ref.name
    return attributes


class Clusters:
    """One `Kube` per kubeconfig context, made on first use: how one Wake serves several clusters.

    An app's destination is a context of the settings' kubeconfig (its
    `destination_context`; "" is the settings' `kube_context`, itself "" for
    the kubeconfig's current context). `close()` closes every client made.
    """

    def __init__(self, *, kubeconfig: str = "", default_context: str = "") -> None:
        self.kubeconfig = kubeconfig
        self.default_context = default_context
        self._clients: dict[str, Kube] = {}
        self._lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Clusters:
        return cls(kubeconfig=settings.kubeconfig, default_context=settings.kube_context)

    @classmethod
    def serving(cls, kube: Kube, *, kubeconfig: str = "") -> Clusters:
        """Clusters whose default context is served by `kube`, already connected."""
        clusters = cls(kubeconfig=kubeconfig)
        clusters._clients[""] = kube
        return clusters

    async def get(self, context: str = "") -> Kube:
        """The client of `context` ("" = the default); KubeConfigError naming a bad context."""
        name = context or self.default_context
        async with self._lock:
            # Under the lock: two apps of a new context at once must not make two clients.
            kube = self._clients.get(name)
            if kube is None:
                kube = await Kube.connect(kubeconfig=self.kubeconfig, context=name)
                self._clients[name] = kube
            return kube

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for kube in clients:
            await kube.close()

    async def __aenter__(self) -> Clusters:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _api_error(exc: ApiException, ref: ResourceRef | None) -> KubeError:
    """The API's Status (reason, message) if the body is one, else what HTTP said."""
    status = int(exc.status or 0)
    reason = str(exc.reason or "")
    message = ""
    raw = exc.body
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if raw:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            message = raw[:500]
        else:
            if isinstance(parsed, dict):
                reason = str(parsed.get("reason") or reason)
                message = str(parsed.get("message") or "")
    return KubeError(status, reason, message or f"HTTP {status} {reason}".strip(), ref)


async def wait_established(
    kube: Kube, api_version: str, kind: str, *, timeout: float
) -> ApiResource:
    """Discovery of a kind a CRD just defined, retried until served or `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await kube.resource(api_version, kind)
        except KubeError as exc:
            if exc.status_code != 404 or asyncio.get_running_loop().time() >= deadline:
                raise
        await asyncio.sleep(0.2)
