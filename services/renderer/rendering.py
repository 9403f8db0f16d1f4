"""One render, start to finish: choose the renderer, run it within the caps, make the bundle.

Blocking (git reads, subprocesses): the service runs it in a thread. Every
failure a revision can be blamed for comes back as a RenderFailed naming the
renderer, the file and, where known, the line; nothing here raises for it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pygit2

from events.bundle import Bundle, encode_bundle
from events.payloads import AppSpec, RenderFailed, RevisionDetected
from services.renderer import selection
from services.renderer.checkout import RepoTree
from services.renderer.helm import release_of, render_helm
from services.renderer.jsonnet import render_jsonnet
from services.renderer.kustomize import render_kustomize
from services.renderer.manifests import RenderError, SourcedResource, combined, render
from services.renderer.paths import is_manifest
from services.renderer.processes import Limits
from services.renderer.sources import app_directory, read_app_files
from services.wiring.git import InvalidRepoPath, Mirror, RepoPath
from services.wiring.settings import Settings


@dataclass(frozen=True, slots=True)
class Rendered:
    """A successful render: the bundle's bytes and its resources, in canonical order."""

    renderer: str
    data: bytes
    resources: list[SourcedResource]
    # The repository paths the render read, compacted (see `compact_inputs`).
    inputs: tuple[str, ...] = ()


def compact_inputs(paths: Iterable[RepoPath]) -> tuple[str, ...]:
    """`paths` sorted, without those inside another (a folder stands for all under it)."""
    kept: list[RepoPath] = []
    for path in sorted(set(paths), key=lambda p: p.parts):
        if not any(path.is_within(folder) for folder in kept):
            kept.append(path)
    return tuple(str(path) for path in kept)


def render_app(
    mirror: Mirror,
    *,
    app: str,
    spec: AppSpec,
    revision: RevisionDetected,
    app_path: RepoPath,
    settings: Settings,
) -> Rendered | RenderFailed:
    """Render the app at the revision's commit (which the mirror holds)."""
    limits = Limits.starting_now(
        timeout=settings.render_timeout, max_bytes=settings.render_max_bytes
    )
    renderer = spec.renderer
    try:
        commit = mirror.commit(revision.commit)
        top_level = frozenset(entry.name for entry in app_directory(commit, app_path))
        renderer = selection.choose(
            spec.renderer, app_path=app_path, top_level=top_level, options=spec.renderer_options
        )
        resources, reads = _render_with(
            renderer, mirror, commit, app=app, spec=spec, app_path=app_path, limits=limits
        )
        if not resources and not spec.allow_empty:
            # An empty render would prune everything the app has, or report success for
            # a layout Wake did not understand: only an app that says so may be empty.
            raise RenderError(
                app_path,
                None,
                f"the {renderer} renderer found no resources here; "
                "register the app with --allow-empty if it may be empty",
            )
        bundle = Bundle(
            app=app,
            repo_url=revision.repo_url,
            commit=revision.commit,
            path=str(app_path),
            renderer=renderer,
            resources=[item.resource for item in resources],
        )
        data = encode_bundle(bundle)
        if len(data) > limits.max_bytes:
            raise RenderError(
                app_path,
                None,
                f"the bundle is {len(data)} bytes, over the output cap of {limits.max_bytes} "
                "bytes (render_max_bytes)",
            )
    except RenderError as exc:
        return RenderFailed(
            commit=revision.commit,
            error=exc.message,
            file=exc.file,
            line=exc.line,
            renderer=renderer,
        )
    # The app's folder always counts: `auto` chose the renderer from its top.
    return Rendered(
        renderer=renderer,
        data=data,
        resources=resources,
        inputs=compact_inputs({app_path, *reads}),
    )


def _render_with(
    renderer: str,
    mirror: Mirror,
    commit: pygit2.Commit,
    *,
    app: str,
    spec: AppSpec,
    app_path: RepoPath,
    limits: Limits,
) -> tuple[list[SourcedResource], set[RepoPath]]:
    """The app's resources, and the repository paths read to make them besides the app's folder."""
    tree = RepoTree(commit, max_bytes=limits.max_bytes, odb=mirror.repo.odb)
    if renderer == "yaml":
        app_files = read_app_files(
            commit, app_path, max_bytes=limits.max_bytes, odb=mirror.repo.odb
        )
        size = sum(len(data) for data in app_files.files.values())
        if size > limits.max_bytes:
            raise RenderError(
                app_path,
                None,
                f"the app's manifests are {size} bytes, over the input cap of "
                f"{limits.max_bytes} bytes (render_max_bytes)",
            )
        plain = render(app_files.files, namespace=spec.namespace)
        # A subfolder with a kustomization is kustomize's input, not manifests:
        # it is built and its objects join the app's (its bases become inputs).
        if not app_files.kustomizations:
            return plain, set()
        tree.count(b"", overhead=size)
        with tempfile.TemporaryDirectory(prefix="wake-render-") as scratch_dir:
            built = [
                render_kustomize(
                    tree,
                    folder,
                    namespace=spec.namespace,
                    limits=limits,
                    scratch=Path(scratch_dir) / str(index),
                )
                for index, folder in enumerate(app_files.kustomizations)
            ]
        return combined(plain, *built, namespace=spec.namespace), tree.reads
    with tempfile.TemporaryDirectory(prefix="wake-render-") as scratch_dir:
        scratch = Path(scratch_dir)
        if renderer == "kustomize":
            return render_kustomize(
                tree, app_path, namespace=spec.namespace, limits=limits, scratch=scratch
            ), tree.reads
        if renderer == "helm":
            release = release_of(
                app=app,
                app_path=app_path,
                release=spec.helm_release,
                namespace=spec.namespace,
                values=spec.helm_values,
            )
            return render_helm(tree, release, limits=limits, scratch=scratch), tree.reads
        return _render_jsonnet(
            mirror, commit, spec=spec, app_path=app_path, limits=limits, scratch=scratch
        )


def _render_jsonnet(
    mirror: Mirror,
    commit: pygit2.Commit,
    *,
    spec: AppSpec,
    app_path: RepoPath,
    limits: Limits,
    scratch: Path,
) -> tuple[list[SourcedResource], set[RepoPath]]:
    """The app's jsonnet resources, and the repository paths read to make them."""
    app_tree = app_directory(commit, app_path)
    named = selection.jsonnet_entries(
        spec.renderer_options, frozenset(entry.name for entry in app_tree)
    )
    files: dict[RepoPath, bytes] = {}
    if named is None:
        # Argo CD's directory source: each top-level .jsonnet file and the
        # manifests beside it (not in subfolders, which hold libraries and vendored code).
        blobs = frozenset(entry.name for entry in app_tree if isinstance(entry, pygit2.Blob))
        entries = [app_path.joinpath(name) for name in selection.directory_entries(blobs)]
        if not entries:
            raise RenderError(
                app_path,
                None,
                "no .jsonnet file at the top of the app path (.libsonnet files are "
                "libraries); name the entry file with --option main=FILE",
            )
        tree = RepoTree(commit, max_bytes=limits.max_bytes, odb=mirror.repo.odb)
        files = {
            path: tree.read(path, via=path)
            for path in (app_path.joinpath(name) for name in sorted(blobs))
            if is_manifest(path.name) and not selection.is_jsonnet_tooling(path.name)
        }
    else:
        entries = []
        for name in named:
            try:
                entries.append(app_path.joinpath(*RepoPath.parse(name).parts))
            except InvalidRepoPath as exc:
                raise RenderError(app_path, None, f"renderer option main: {exc}") from None
    libs = []
    for lib in selection.jsonnet_libs(spec.renderer_options):
        try:
            libs.append(RepoPath.parse(lib))
        except InvalidRepoPath as exc:
            raise RenderError(app_path, None, f"renderer option libs: {exc}") from None
    reads: set[RepoPath] = set(files)
    resources = render_jsonnet(
        repo=mirror.path,
        commit=str(commit.id),
        entries=entries,
        files=files,
        ext_vars=spec.jsonnet_ext_vars,
        tla=spec.jsonnet_tla,
        ext_code=spec.jsonnet_ext_code,
        tla_code=spec.jsonnet_tla_code,
        libs=libs,
        namespace=spec.namespace,
        limits=limits,
        scratch=scratch,
        reads=reads,
    )
    return resources, reads
