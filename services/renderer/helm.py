"""The helm renderer: `helm template` over a private copy of the chart, where helm is installed.

The app's directory is the chart; it is written, with its `charts/`
subdirectory (the only dependencies allowed: nothing is downloaded, no
`--dependency-update`), into a private directory. Values files come from the
app spec (`helm_values`, each inside the app's path), the release name is
`helm_release` or the app's name, the namespace the app's. Helm's own
configuration, cache and repositories point into the private directory, so
nothing of the machine's helm setup is read.

Helm is not a Python wheel: where no `helm` is on PATH, a render is a
RenderFailed saying so.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pygit2

from services.renderer.checkout import Checkout, RepoTree
from services.renderer.manifests import RenderError, SourcedResource, render_output
from services.renderer.processes import Limits, run_tool
from services.wiring.git import InvalidRepoPath, RepoPath

NOT_INSTALLED = (
    "helm is not installed on the renderer: install a helm binary on its PATH, "
    "or render this app with another renderer"
)


@dataclass(frozen=True, slots=True)
class HelmRelease:
    """What `helm template` is asked: the chart (an app path), release, namespace, values."""

    chart: RepoPath
    release: str
    namespace: str
    values: tuple[RepoPath, ...]


def release_of(
    *, app: str, app_path: RepoPath, release: str, namespace: str, values: list[str]
) -> HelmRelease:
    """The release of the app, its values files checked to be inside the app's path.

    Raises RenderError naming the chart for a values file outside the app's path.
    """
    chart_file = app_path.joinpath("Chart.yaml")
    checked = []
    for value in values:
        try:
            path = app_path.joinpath(*RepoPath.parse(value).parts)
        except InvalidRepoPath as exc:
            raise RenderError(chart_file, None, f"helm_values: {exc}") from None
        checked.append(path)
    return HelmRelease(
        chart=app_path, release=release or app, namespace=namespace, values=tuple(checked)
    )


def template_arguments(helm: str, release: HelmRelease, *, root: Path) -> list[str]:
    """The command line of `helm template` for `release`, the chart written under `root`.

    Never `--dependency-update`, never a repository, never the cluster.
    """
    argv = [
        helm,
        "template",
        release.release,
        str(root.joinpath(*release.chart.parts)),
        "--namespace",
        release.namespace,
        "--include-crds",
    ]
    for values in release.values:
        argv += ["--values", str(root.joinpath(*values.parts))]
    return argv


def helm_environment(scratch: Path) -> dict[str, str]:
    """Helm's configuration, cache and data inside the render's private directory."""
    return {
        "HELM_CACHE_HOME": str(scratch / ".helm" / "cache"),
        "HELM_CONFIG_HOME": str(scratch / ".helm" / "config"),
        "HELM_DATA_HOME": str(scratch / ".helm" / "data"),
        "HELM_REPOSITORY_CONFIG": str(scratch / ".helm" / "repositories.yaml"),
        "HELM_REGISTRY_CONFIG": str(scratch / ".helm" / "registry.json"),
        "HELM_PLUGINS": str(scratch / ".helm" / "plugins"),
        "KUBECONFIG": str(scratch / ".helm" / "no-kubeconfig"),
    }


def render_helm(
    tree: RepoTree, release: HelmRelease, *, limits: Limits, scratch: Path
) -> list[SourcedResource]:
    """The chart's resources as `helm template` renders them, canonical."""
    chart_file = release.chart.joinpath("Chart.yaml")
    helm = shutil.which("helm")
    if helm is None:
        raise RenderError(chart_file, None, NOT_INSTALLED)
    for values in release.values:
        found = tree.find(values)
        if found is None or not isinstance(found[1], pygit2.Blob):
            raise RenderError(
                chart_file, None, f"helm_values: {values} is not a file at commit {tree.short}"
            )
    checkout = Checkout(tree, scratch / "repo")
    checkout.write(release.chart, via=release.chart)
    finished = run_tool(
        template_arguments(helm, release, root=checkout.root),
        what="helm template",
        file=chart_file,
        limits=limits,
        cwd=scratch,
        env=helm_environment(scratch),
    )
    if finished.returncode != 0:
        message = finished.stderr.replace(str(checkout.root) + "/", "")
        raise RenderError(chart_file, None, f"helm template failed: {message or 'no message'}")
    return render_output(
        finished.stdout, tool="helm", entry=chart_file, namespace=release.namespace
    )
