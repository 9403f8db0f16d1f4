"""The catalogue of kinds the emulator serves, and the discovery documents for it.

Built-in kinds are declared here; a CustomResourceDefinition adds its kinds
while it exists. Both the classic per-group documents (`/api/v1`,
`/apis/<group>/<version>`) and the aggregated discovery (`apidiscovery.k8s.io/v2`,
one request for everything, which kubectl asks for first) are rendered from the
same catalogue, so they cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

KUBERNETES_MINOR = "36"
GIT_VERSION = f"v1.{KUBERNETES_MINOR}.0-wake-emulator"

_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_SUBRESOURCE_VERBS = ("get", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    """One kind at one group/version, as discovery describes it."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    scale_subresource: bool = False
    from_crd: bool = False
    singular: str = ""
    list_kind: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects are stored once per (group, plural), whatever version they are read at."""
        return (self.group, self.plural)


def _core(kind: str, plural: str, **kw: Any) -> ResourceType:
    return ResourceType("", "v1", kind, plural, kw.pop("namespaced", True), **kw)


def _grp(group: str, version: str, kind: str, plural: str, **kw: Any) -> ResourceType:
    return ResourceType(group, version, kind, plural, kw.pop("namespaced", True), **kw)


BUILTIN_TYPES: tuple[ResourceType, ...] = (
    _core(
        "Namespace", "namespaces", namespaced=False, short_names=("ns",), status_subresource=True
    ),
    _core("ConfigMap", "configmaps", short_names=("cm",)),
    _core("Secret", "secrets"),
    _core(
        "Service", "services", short_names=("svc",), categories=("all",), status_subresource=True
    ),
    _core("ServiceAccount", "serviceaccounts", short_names=("sa",)),
    _core("Pod", "pods", short_names=("po",), categories=("all",), status_subresource=True),
    _core(
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        short_names=("pvc",),
        status_subresource=True,
    ),
    _core(
        "PersistentVolume",
        "persistentvolumes",
        namespaced=False,
        short_names=("pv",),
        status_subresource=True,
    ),
    _core("Event", "events", short_names=("ev",)),
    _core("Endpoints", "endpoints", short_names=("ep",), singular="endpoints"),
    _core("Node", "nodes", namespaced=False, short_names=("no",), status_subresource=True),
    _core("LimitRange", "limitranges", short_names=("limits",)),
    _core("ResourceQuota", "resourcequotas", short_names=("quota",), status_subresource=True),
    _core(
        "ReplicationController",
        "replicationcontrollers",
        short_names=("rc",),
        categories=("all",),
        status_subresource=True,
        scale_subresource=True,
    ),
    _grp(
        "apps",
        "v1",
        "Deployment",
        "deployments",
        short_names=("deploy",),
        categories=("all",),
        status_subresource=True,
        scale_subresource=True,
    ),
    _grp(
        "apps",
        "v1",
        "StatefulSet",
        "statefulsets",
        short_names=("sts",),
        categories=("all",),
        status_subresource=True,
        scale_subresource=True,
    ),
    _grp(
        "apps",
        "v1",
        "DaemonSet",
        "daemonsets",
        short_names=("ds",),
        categories=("all",),
        status_subresource=True,
    ),
    _grp(
        "apps",
        "v1",
        "ReplicaSet",
        "replicasets",
        short_names=("rs",),
        categories=("all",),
        status_subresource=True,
        scale_subresource=True,
    ),
    _grp("apps", "v1", "ControllerRevision", "controllerrevisions"),
    _grp("batch", "v1", "Job", "jobs", categories=("all",), status_subresource=True),
    _grp(
        "batch",
        "v1",
        "CronJob",
        "cronjobs",
        short_names=("cj",),
        categories=("all",),
        status_subresource=True,
    ),
    _grp(
        "networking.k8s.io",
        "v1",
        "Ingress",
        "ingresses",
        short_names=("ing",),
        status_subresource=True,
    ),
    _grp("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=("netpol",)),
    _grp("networking.k8s.io", "v1", "IngressClass", "ingressclasses", namespaced=False),
    _grp("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    _grp("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    _grp("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    _grp(
        "rbac.authorization.k8s.io",
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        namespaced=False,
    ),
    _grp(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status_subresource=True,
    ),
    _grp(
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        short_names=("pdb",),
        status_subresource=True,
    ),
    _grp(
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        short_names=("hpa",),
        categories=("all",),
        status_subresource=True,
    ),
    _grp(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "storageclasses",
        namespaced=False,
        short_names=("sc",),
    ),
)

CRD_GROUP = "apiextensions.k8s.io"
CRD_PLURAL = "customresourcedefinitions"
NAMESPACES = ("", "namespaces")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class CrdInvalid(ValueError):
    """A CRD the emulator cannot serve; `causes` are (field path, what is wrong)."""

    def __init__(self, causes: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {w}" for f, w in causes))
        self.causes = causes


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The served kinds a CustomResourceDefinition declares; raises CrdInvalid."""
    spec = crd.get("spec") if isinstance(crd.get("spec"), dict) else {}
    names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    group = spec.get("group")
    plural = names.get("plural")
    kind = names.get("kind")
    scope = spec.get("scope")
    versions = spec.get("versions")
    causes: list[tuple[str, str]] = []
    if not isinstance(group, str) or "." not in group or not _DNS_SUBDOMAIN.match(group):
        causes.append(("spec.group", "must be a DNS subdomain with at least one dot"))
    if not isinstance(plural, str) or not _DNS_LABEL.match(plural):
        causes.append(("spec.names.plural", "must be a lowercase DNS label"))
    if not isinstance(kind, str) or not kind[:1].isupper():
        causes.append(("spec.names.kind", "must be a CamelCase kind name"))
    if scope not in ("Namespaced", "Cluster"):
        causes.append(("spec.scope", 'must be "Namespaced" or "Cluster"'))
    if not isinstance(versions, list) or not versions:
        causes.append(("spec.versions", "must list at least one version"))
        versions = []
    name = (crd.get("metadata") or {}).get("name")
    if isinstance(group, str) and isinstance(plural, str) and name != f"{plural}.{group}":
        causes.append(
            ("metadata.name", f'must be spec.names.plural+"."+spec.group: "{plural}.{group}"')
        )
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage")]
    if versions and len(storage) != 1:
        causes.append(("spec.versions", "exactly one version must be marked storage: true"))
    for index, version in enumerate(versions):
        if not isinstance(version, dict) or not isinstance(version.get("name"), str):
            causes.append((f"spec.versions[{index}].name", "is required"))
    if causes:
        raise CrdInvalid(causes)
    assert isinstance(group, str) and isinstance(plural, str) and isinstance(kind, str)
    return [
        ResourceType(
            group=group,
            version=version["name"],
            kind=kind,
            plural=plural,
            namespaced=scope == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            categories=tuple(names.get("categories") or ()),
            status_subresource="status" in (version.get("subresources") or {}),
            from_crd=True,
            singular=names.get("singular") or kind.lower(),
            list_kind=names.get("listKind") or f"{kind}List",
        )
        for version in versions
        if version.get("served", True)
    ]


@dataclass
class Catalogue:
    """The kinds served right now: built-ins plus those of existing CRDs."""

    _types: list[ResourceType] = field(default_factory=lambda: list(BUILTIN_TYPES))
    _by_crd: dict[str, list[ResourceType]] = field(default_factory=dict)

    def all(self) -> list[ResourceType]:
        return [*self._types, *(t for ts in self._by_crd.values() for t in ts)]

    def set_crd(self, crd_name: str, types: list[ResourceType]) -> None:
        self._by_crd[crd_name] = types

    def drop_crd(self, crd_name: str) -> list[ResourceType]:
        return self._by_crd.pop(crd_name, [])

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        for t in self.all():
            if t.group == group and t.version == version and t.plural == plural:
                return t
        return None

    def group_served(self, group: str, version: str) -> bool:
        return any(t.group == group and t.version == version for t in self.all())

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions, preferred (first declared) first; core is ""."""
        out: dict[str, list[str]] = {}
        for t in self.all():
            versions = out.setdefault(t.group, [])
            if t.version not in versions:
                versions.append(t.version)
        return out


def _resource_entry(t: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": t.plural,
        "singularName": t.singular_name,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": list(_VERBS),
    }
    if t.short_names:
        entry["shortNames"] = list(t.short_names)
    if t.categories:
        entry["categories"] = list(t.categories)
    return entry


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def resource_list(catalogue: Catalogue, group: str, version: str) -> dict[str, Any]:
    resources: list[dict[str, Any]] = []
    for t in catalogue.all():
        if t.group != group or t.version != version:
            continue
        resources.append(_resource_entry(t))
        for subresource, kind, group_version in _subresources(t):
            entry = {
                "name": f"{t.plural}/{subresource}",
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": kind,
                "verbs": list(_SUBRESOURCE_VERBS),
            }
            if group_version:
                entry["group"], _, entry["version"] = group_version.partition("/")
            resources.append(entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(catalogue: Catalogue) -> dict[str, Any]:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_entry(g, vs) for g, vs in catalogue.groups().items() if g],
    }


def api_group(catalogue: Catalogue, group: str) -> dict[str, Any] | None:
    versions = catalogue.groups().get(group)
    if not group or versions is None:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def wants_aggregated(accept: str) -> bool:
    """Whether the client asked for aggregated discovery v2 (kubectl does, first)."""
    for option in accept.split(","):
        params = {
            k.strip(): v.strip() for k, _, v in (p.partition("=") for p in option.split(";")[1:])
        }
        if (
            params.get("g") == "apidiscovery.k8s.io"
            and params.get("v") == "v2"
            and params.get("as") == "APIGroupDiscoveryList"
        ):
            return True
    return False


def aggregated_discovery(catalogue: Catalogue, *, core: bool) -> dict[str, Any]:
    """The APIGroupDiscoveryList for `/api` (core) or `/apis` (every named group)."""
    items = []
    for group, versions in catalogue.groups().items():
        if (group == "") != core:
            continue
        items.append(
            {
                "metadata": {"name": group} if group else {},
                "versions": [
                    {
                        "version": v,
                        "resources": [
                            _aggregated_resource(t) for t in _of(catalogue.all(), group, v)
                        ],
                        "freshness": "Current",
                    }
                    for v in versions
                ],
            }
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }


def _of(types: Iterable[ResourceType], group: str, version: str) -> list[ResourceType]:
    return [t for t in types if t.group == group and t.version == version]


def _aggregated_resource(t: ResourceType) -> dict[str, Any]:
    kind = {"group": t.group, "version": t.version, "kind": t.kind}
    entry: dict[str, Any] = {
        "resource": t.plural,
        "responseKind": kind,
        "scope": "Namespaced" if t.namespaced else "Cluster",
        "singularResource": t.singular_name,
        "verbs": list(_VERBS),
    }
    if t.short_names:
        entry["shortNames"] = list(t.short_names)
    if t.categories:
        entry["categories"] = list(t.categories)
    subresources = []
    for subresource, sub_kind, group_version in _subresources(t):
        response_kind = kind
        if group_version:
            group, _, version = group_version.partition("/")
            response_kind = {"group": group, "version": version, "kind": sub_kind}
        subresources.append(
            {
                "subresource": subresource,
                "responseKind": response_kind,
                "verbs": list(_SUBRESOURCE_VERBS),
            }
        )
    if subresources:
        entry["subresources"] = subresources
    return entry


def _subresources(t: ResourceType) -> list[tuple[str, str, str]]:
    """(subresource, kind, group/version if not the parent's) of a kind."""
    out = []
    if t.status_subresource:
        out.append(("status", t.kind, ""))
    if t.scale_subresource:
        out.append(("scale", "Scale", "autoscaling/v1"))
    return out


def server_version() -> dict[str, str]:
    return {
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "wake-emulator (Python)",
        "compiler": "wake-emulator",
        "platform": "linux/amd64",
    }
