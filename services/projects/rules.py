"""What a project allows, and why a resource, a source or a credential falls outside it. Pure.

An app belongs to one project (`AppSpec.project`; "" is the built-in
`default`). A project says which repositories its apps may follow
(`sources`), where they may deploy (`destinations`, `CONTEXT/NAMESPACE_GLOB`),
which kinds (`kinds` namespaced, `cluster_kinds` cluster-scoped), which git
credentials they may name, and who approves their plans.

- A namespaced resource must be in a namespace a destination allows for the
  app's context, and of a kind `kinds` allows (none listed: any).
- A Namespace is allowed by its name: one the destinations allow. Listing
  `/Namespace` among the cluster kinds allows no other.
- Any other cluster-scoped resource needs its `GROUP/KIND` in `cluster_kinds`.
- A wildcard never matches the cluster's own namespaces (`kube-system`,
  `kube-public`, `kube-node-lease`) nor Wake's: a project that may touch one
  names it exactly.

The `default` project is made from the app itself: any source, any
credential (the credential's own URL binding still holds), the app's own
destination namespace on its own context and no cluster-scoped kind but that
Namespace -- unless that namespace is one of the protected ones above, which
the default project never allows.

Globs are fnmatch patterns (`*` matches `/` too): `https://git.example.com/team/*`.
"""

from __future__ import annotations

import fnmatch
import glob
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from events.payloads import AppSpec, ProjectSpec, ResourceRef

DEFAULT_PROJECT = "default"

# The cluster's own namespaces: no wildcard matches them, the default project never allows them.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})

# Namespaces Wake never deletes, by prune or by an app removal's cascade.
NEVER_DELETED_NAMESPACES = frozenset({*SYSTEM_NAMESPACES, "default"})

_GLOB_CHARS = frozenset("*?[")


class InvalidRule(ValueError):
    """A project rule that cannot be used (the message names it)."""


@dataclass(frozen=True, slots=True)
class Project:
    """The project an app is in: its name and its rules (`default`'s made for the app)."""

    name: str
    spec: ProjectSpec


@dataclass(frozen=True, slots=True)
class Missing:
    """The app names a project that does not exist: nothing of it may be applied."""

    name: str

    def __str__(self) -> str:
        return (
            f"project {self.name!r} does not exist (`wake project add {self.name}`, "
            "or move the app with `wake app set --project`)"
        )


def is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def matches(value: str, pattern: str, *, protected: Iterable[str] = ()) -> bool:
    """Whether `value` matches `pattern`; a protected value only when named exactly."""
    if not is_glob(pattern):
        return value == pattern
    return value not in set(protected) and fnmatch.fnmatchcase(value, pattern)


def split_destination(destination: str) -> tuple[str, str]:
    """`CONTEXT/NAMESPACE_GLOB` as (context glob, namespace glob); InvalidRule if malformed."""
    context, slash, namespace = destination.rpartition("/")
    if not slash or not namespace:
        raise InvalidRule(
            f"destination {destination!r} is not CONTEXT/NAMESPACE_GLOB "
            "(an empty CONTEXT is the services' default context: `/team-*`)"
        )
    return context, namespace


def split_kind(kind: str) -> tuple[str, str]:
    """`GROUP/KIND` as (group glob, kind glob); the core group is empty: `/ConfigMap`."""
    group, slash, name = kind.partition("/")
    if not slash or not name or "/" in name:
        raise InvalidRule(
            f"kind {kind!r} is not GROUP/KIND (`apps/Deployment`; the core group is empty: "
            "`/ConfigMap`)"
        )
    return group, name


def check_spec(spec: ProjectSpec) -> None:
    """Raise InvalidRule naming the first malformed destination or kind of `spec`."""
    for destination in spec.destinations:
        split_destination(destination)
    for kind in [*spec.kinds, *spec.cluster_kinds]:
        split_kind(kind)


def default_project(app: AppSpec, *, system_namespace: str) -> Project:
    """The built-in `default` project of `app` (see the module docstring)."""
    own = app.namespace
    destinations = (
        []
        if own in SYSTEM_NAMESPACES or own == system_namespace
        else [f"{glob.escape(app.destination_context)}/{own}"]
    )
    return Project(
        DEFAULT_PROJECT,
        ProjectSpec(
            sources=["*"],
            destinations=destinations,
            credentials=["*"],
            description="built in: the app's own destination namespace only",
        ),
    )


def project_of(
    app: AppSpec, projects: Mapping[str, ProjectSpec], *, system_namespace: str
) -> Project | Missing:
    """The project `app` is in, or Missing when it names one that does not exist."""
    name = app.project or DEFAULT_PROJECT
    if name == DEFAULT_PROJECT:
        return default_project(app, system_namespace=system_namespace)
    spec = projects.get(name)
    if spec is None:
        return Missing(name)
    return Project(name, spec)


def _protected(system_namespace: str) -> frozenset[str]:
    return SYSTEM_NAMESPACES | {system_namespace} if system_namespace else SYSTEM_NAMESPACES


def namespace_allowed(
    project: Project, namespace: str, *, context: str, system_namespace: str = ""
) -> bool:
    """Whether a destination of `project` allows `namespace` on kubeconfig context `context`."""
    protected = _protected(system_namespace)
    for destination in project.spec.destinations:
        try:
            context_glob, namespace_glob = split_destination(destination)
        except InvalidRule:
            continue
        if (context_glob == context or matches(context, context_glob)) and matches(
            namespace, namespace_glob, protected=protected
        ):
            return True
    return False


def _kind_allowed(patterns: Iterable[str], group: str, kind: str) -> bool:
    for pattern in patterns:
        try:
            group_glob, kind_glob = split_kind(pattern)
        except InvalidRule:
            continue
        if matches(group, group_glob) and matches(kind, kind_glob):
            return True
    return False


def group_of(ref: ResourceRef) -> str:
    """The API group of `ref` ("" for the core group)."""
    group, slash, _ = ref.api_version.rpartition("/")
    return group if slash else ""


def resource_error(
    ref: ResourceRef, project: Project | Missing, *, context: str, system_namespace: str = ""
) -> str:
    """Why `ref` falls outside the app's project ("" when it is inside), naming the rule."""
    if isinstance(project, Missing):
        return f"{ref} cannot be checked: {project}"
    group, kind = group_of(ref), ref.kind
    outside = f"{ref} is outside project {project.name!r}"
    where = f" on context {context!r}" if context else ""
    allowed = ", ".join(project.spec.destinations) or "none"
    if group == "" and kind == "Namespace":
        if namespace_allowed(project, ref.name, context=context, system_namespace=system_namespace):
            return ""
        return (
            f"{outside}: namespace {ref.name!r}{where} is not among its destinations "
            f"({allowed}; `--destination`)"
        )
    if not ref.namespace:
        if _kind_allowed(project.spec.cluster_kinds, group, kind):
            return ""
        return (
            f"{outside}: cluster-scoped kind {group}/{kind} is not allowed "
            f"(allowed: {', '.join(project.spec.cluster_kinds) or 'none'}; "
            "`--allow-cluster-kind`)"
        )
    if not namespace_allowed(
        project, ref.namespace, context=context, system_namespace=system_namespace
    ):
        return (
            f"{outside}: namespace {ref.namespace!r}{where} is not among its destinations "
            f"({allowed}; `--destination`)"
        )
    if project.spec.kinds and not _kind_allowed(project.spec.kinds, group, kind):
        return (
            f"{outside}: kind {group}/{kind} is not allowed "
            f"(allowed: {', '.join(project.spec.kinds)}; `--allow-kind`)"
        )
    return ""


def source_error(url: str, project: Project | Missing, *, normalized: str = "") -> str:
    """Why the app may not follow repository `url` ("" when it may).

    `normalized`: the URL's one spelling (services/wiring/git.normalize_url),
    matched too, so a pattern need not guess case or a trailing slash.
    """
    if isinstance(project, Missing):
        return str(project)
    candidates = [url, *([normalized] if normalized else [])]
    for pattern in project.spec.sources:
        if any(fnmatch.fnmatchcase(c, pattern) for c in candidates):
            return ""
    return (
        f"repository {url} is outside project {project.name!r}: no source pattern matches it "
        f"(sources: {', '.join(project.spec.sources) or 'none'}; `--source`)"
    )


def credential_error(name: str, project: Project | Missing) -> str:
    """Why the app may not use git credential `name` ("" when it may, or names none)."""
    if not name:
        return ""
    if isinstance(project, Missing):
        return str(project)
    if any(matches(name, pattern) for pattern in project.spec.credentials):
        return ""
    return (
        f"git credential {name!r} is not allowed by project {project.name!r} "
        f"(credentials: {', '.join(project.spec.credentials) or 'none'}; `--credential`)"
    )


def never_deleted(ref: ResourceRef, *, system_namespace: str) -> str:
    """Why Wake never deletes `ref` (prune or cascade), or "": the namespaces a cluster
    or Wake itself lives in."""
    if ref.kind != "Namespace" or group_of(ref) != "":
        return ""
    if ref.name in NEVER_DELETED_NAMESPACES:
        return f"namespace {ref.name} is never deleted"
    if system_namespace and ref.name == system_namespace:
        return f"namespace {ref.name} is Wake's own"
    return ""
