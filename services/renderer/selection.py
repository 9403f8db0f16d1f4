"""Which renderer reads an app's directory. Pure.

An app names its renderer, or leaves it to `auto`, which reads the top of the
app's directory: a kustomization makes it kustomize, a Chart.yaml helm, any
`.jsonnet` file (or the renderer option `main`) jsonnet; anything else is read
as plain YAML/JSON manifests.

A jsonnet app evaluates one entry file when it has one (the option `main`, else
`main.jsonnet`, Tanka's convention); otherwise, as Argo CD's directory source,
every top-level `.jsonnet` file, beside the top-level YAML/JSON manifests.
`.libsonnet` files are libraries, never entries.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.renderer.manifests import RenderError
from services.wiring.git import RepoPath

AVAILABLE = ("yaml", "kustomize", "jsonnet", "helm")

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
JSONNET_SUFFIXES = (".jsonnet", ".libsonnet")
JSONNET_ENTRY_SUFFIX = ".jsonnet"
DEFAULT_JSONNET_MAIN = "main.jsonnet"
# jsonnet-bundler's own files: JSON beside the entries, never manifests.
JSONNET_TOOLING = frozenset({"jsonnetfile.json", "jsonnetfile.lock.json"})

# Where an app's jsonnet libraries are, in the renderer option `libs`.
JSONNET_LIBS_SEPARATOR = ","

# A file at the top of the app's directory that says which tool it is for,
# looked for in this order.
MARKERS = (
    *((name, "kustomize") for name in KUSTOMIZATION_FILES),
    ("Chart.yaml", "helm"),
)


def unavailable(requested: str) -> str | None:
    """Why `requested` cannot render (a message), or None if it can."""
    if requested in ("auto", *AVAILABLE):
        return None
    return f"unknown renderer {requested!r}: use one of auto, {', '.join(AVAILABLE)}"


def jsonnet_entries(options: Mapping[str, str], top_level: frozenset[str]) -> list[str] | None:
    """The jsonnet files to evaluate, relative to the app's directory, in order.

    One file when the app names it (option `main`) or has `main.jsonnet`;
    None when there is neither, meaning every top-level `.jsonnet` file with
    the app's top-level manifests, as Argo CD's directory source renders them.
    """
    if options.get("main"):
        return [options["main"]]
    if DEFAULT_JSONNET_MAIN in top_level:
        return [DEFAULT_JSONNET_MAIN]
    return None


def is_jsonnet_tooling(name: str) -> bool:
    return name in JSONNET_TOOLING


def jsonnet_libs(options: Mapping[str, str]) -> list[str]:
    """The library folders of the option `libs`, in order, as given (not yet checked)."""
    parts = options.get("libs", "").split(JSONNET_LIBS_SEPARATOR)
    return [part.strip() for part in parts if part.strip()]


def directory_entries(top_level: frozenset[str]) -> list[str]:
    """The top-level `.jsonnet` files of a directory, in name order (libraries excluded)."""
    return sorted(name for name in top_level if name.endswith(JSONNET_ENTRY_SUFFIX))


def choose(
    requested: str,
    *,
    app_path: RepoPath,
    top_level: frozenset[str],
    options: Mapping[str, str] | None = None,
) -> str:
    """The renderer for the app: `requested`, or what `auto` detects from `top_level`.

    Raises RenderError naming the app path for an unknown renderer.
    """
    reason = unavailable(requested)
    if reason is not None:
        raise RenderError(app_path, None, reason)
    if requested != "auto":
        return requested
    for marker, tool in MARKERS:
        if marker in top_level:
            return tool
    options = options or {}
    if "main" in options and options["main"].endswith(JSONNET_SUFFIXES):
        return "jsonnet"
    if any(name.endswith(JSONNET_ENTRY_SUFFIX) for name in top_level):
        return "jsonnet"
    return "yaml"
