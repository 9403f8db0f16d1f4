"""Which renderer reads an app's directory. Pure.

An app names its renderer, or leaves it to `auto`, which reads the top of the
app's directory: a kustomization makes it kustomize, a Chart.yaml helm, a main
jsonnet file (`main.jsonnet`, or the file named by the renderer option `main`)
jsonnet; anything else is read as plain YAML/JSON manifests.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.renderer.manifests import RenderError
from services.wiring.git import RepoPath

AVAILABLE = ("yaml", "kustomize", "jsonnet", "helm")

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
JSONNET_SUFFIXES = (".jsonnet", ".libsonnet")
DEFAULT_JSONNET_MAIN = "main.jsonnet"

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


def jsonnet_main(options: Mapping[str, str]) -> str:
    """The jsonnet file evaluated, relative to the app's directory."""
    return options.get("main") or DEFAULT_JSONNET_MAIN


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
    if DEFAULT_JSONNET_MAIN in top_level:
        return "jsonnet"
    return "yaml"
