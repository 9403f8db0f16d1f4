"""Which renderer reads an app's directory. Pure.

Only plain YAML/JSON directories are rendered for now. `auto` reads a
directory as plain manifests unless it is plainly made for another tool (a
kustomization or a Helm chart at its top), which gets a clear RenderFailed
rather than a confusing one about a kustomization.yaml without metadata.name.
"""

from __future__ import annotations

from services.renderer.manifests import RenderError
from services.wiring.git import RepoPath

AVAILABLE = ("yaml",)

# A file at the top of the app's directory that says which tool it is for.
MARKERS = {
    "kustomization.yaml": "kustomize",
    "kustomization.yml": "kustomize",
    "Kustomization": "kustomize",
    "Chart.yaml": "helm",
}


def unavailable(requested: str) -> str | None:
    """Why `requested` cannot render (a message), or None if it can."""
    if requested in ("auto", *AVAILABLE):
        return None
    return (
        f"the {requested} renderer is not available yet: only plain YAML/JSON "
        "directories can be rendered (renderer auto or yaml)"
    )


def choose(requested: str, *, app_path: RepoPath, top_level: frozenset[str]) -> str:
    """The renderer for the app: `yaml`, or RenderError naming the file that says otherwise."""
    reason = unavailable(requested)
    if reason is not None:
        raise RenderError(app_path, None, reason)
    if requested == "auto":
        for marker in sorted(top_level & MARKERS.keys()):
            tool = MARKERS[marker]
            raise RenderError(
                app_path.joinpath(marker),
                None,
                f"this looks like a {tool} directory, and the {tool} renderer is not "
                "available yet; set the app's renderer to yaml to read its files as "
                "plain manifests",
            )
    return "yaml"
