"""An app directory's manifest files, read from a commit's tree (no worktree, no filesystem).

Symbolic links are resolved from the tree itself: a link is a blob whose
content is its target, checked by `paths.link_target` before it is followed,
so a link cannot read anything outside the app's path whatever the machine
the renderer runs on holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import pygit2
from pygit2.enums import FileMode

from services.renderer.manifests import RenderError
from services.renderer.paths import (
    MAX_LINK_HOPS,
    MAX_LINK_TARGET_BYTES,
    is_manifest,
    is_skipped_directory,
    link_target,
)
from services.renderer.selection import KUSTOMIZATION_FILES
from services.wiring.git import RepoPath


@dataclass(frozen=True, slots=True)
class AppFiles:
    """The app's manifest files by their path in the repository, and its top-level names.

    `kustomizations` are the subfolders (real repository paths) that hold a
    kustomization: their files are not read as manifests, the renderer builds
    each with kustomize (see `rendering.py`).
    """

    files: dict[RepoPath, bytes]
    top_level: frozenset[str]
    kustomizations: tuple[RepoPath, ...] = ()


def read_app_files(
    commit: pygit2.Commit,
    app_path: RepoPath,
    *,
    max_bytes: int | None = None,
    odb: pygit2.Odb | None = None,
) -> AppFiles:
    """Every manifest file under `app_path` at `commit`, recursively.

    A subfolder holding a kustomization (kustomization.yaml, .yml or
    Kustomization) is not walked: it is listed in `kustomizations` instead,
    since its files are kustomize's input (patches, bases), not manifests.
    A file reached through a symlink is listed under the link's path. Raises
    RenderError if the app path is not a directory there, or a symlink in it
    points outside it, nowhere, or in a loop. With `max_bytes`, raises
    RenderError as soon as the files' sizes (read from the object headers,
    before any content) add up to more.
    """
    reader = _TreeReader(commit, app_path, max_bytes=max_bytes, odb=odb)
    root = reader.app_tree()
    files: dict[RepoPath, bytes] = {}
    reader.walk(root, shown=app_path, real=app_path, files=files, stack=(app_path,))
    return AppFiles(
        files=files,
        top_level=frozenset(entry.name for entry in root),
        # A folder reached twice (directly and through a link) is built once.
        kustomizations=tuple(dict.fromkeys(reader.kustomizations)),
    )


def holds_kustomization(tree: pygit2.Tree) -> bool:
    """True if `tree` has a kustomization file (kustomize's names) at its top."""
    return any(
        name in tree and not isinstance(tree[name], pygit2.Tree) for name in KUSTOMIZATION_FILES
    )


def app_directory(commit: pygit2.Commit, app_path: RepoPath) -> pygit2.Tree:
    """The tree of the app's directory at `commit`.

    Raises RenderError if it does not exist, is not a directory, or is reached
    through a symlink.
    """
    return _TreeReader(commit, app_path).app_tree()


def is_link(entry: pygit2.Object) -> bool:
    return entry.filemode == FileMode.LINK


def walk_to(
    commit: pygit2.Commit, path: RepoPath
) -> tuple[RepoPath, pygit2.Object, tuple[str, ...]] | None:
    """The object at `path` in `commit`'s tree, or the first symlink on the way (with the
    segments after it); None if nothing is there."""
    obj: pygit2.Object = commit.tree
    walked = RepoPath(".")
    parts = path.parts
    for index, segment in enumerate(parts):
        if not isinstance(obj, pygit2.Tree):
            return None
        try:
            obj = obj[segment]
        except KeyError:
            return None
        walked = walked.joinpath(segment)
        if is_link(obj):
            return walked, obj, parts[index + 1 :]
    return walked, obj, ()


def blob_size(blob: pygit2.Blob, odb: pygit2.Odb | None) -> int:
    """The blob's size from its header, without loading it.

    pygit2's `Blob.size` loads (inflates) the whole blob first; the object
    database reads just the header. Without an odb, `Blob.size` it is.
    """
    if odb is None:
        return blob.size
    return odb.read_header(blob.id)[1]


class _TreeReader:
    def __init__(
        self,
        commit: pygit2.Commit,
        app_path: RepoPath,
        *,
        max_bytes: int | None = None,
        odb: pygit2.Odb | None = None,
    ) -> None:
        self.commit = commit
        self.app_path = app_path
        self.max_bytes = max_bytes
        self.odb = odb
        self.bytes_read = 0
        self.short = str(commit.id)[:12]
        self.kustomizations: list[RepoPath] = []

    def app_tree(self) -> pygit2.Tree:
        tree: pygit2.Tree = self.commit.tree
        walked = RepoPath(".")
        for segment in self.app_path.parts:
            walked = walked.joinpath(segment)
            try:
                entry = tree[segment]
            except KeyError:
                raise RenderError(
                    self.app_path,
                    None,
                    f"the app path {self.app_path} does not exist at commit {self.short}",
                ) from None
            if is_link(entry):
                raise RenderError(
                    self.app_path,
                    None,
                    f"the app path goes through the symlink {walked}, which is not followed",
                )
            if not isinstance(entry, pygit2.Tree):
                raise RenderError(
                    self.app_path,
                    None,
                    f"the app path {self.app_path} is not a directory at commit {self.short}",
                )
            tree = entry
        return tree

    def walk(
        self,
        tree: pygit2.Tree,
        *,
        shown: RepoPath,
        real: RepoPath,
        files: dict[RepoPath, bytes],
        stack: tuple[RepoPath, ...],
    ) -> None:
        """Collect the manifests of `tree`, found at `real`, listed under `shown`.

        `stack` holds the real directories being walked, to catch a directory
        symlink that leads back into one of them.
        """
        for entry in sorted(tree, key=lambda e: e.name):
            name = entry.name
            if isinstance(entry, pygit2.Tree):
                if is_skipped_directory(name):
                    continue
                if holds_kustomization(entry):
                    self.kustomizations.append(real.joinpath(name))
                else:
                    self.walk(
                        entry,
                        shown=shown.joinpath(name),
                        real=real.joinpath(name),
                        files=files,
                        stack=(*stack, real.joinpath(name)),
                    )
            elif is_link(entry):
                self._follow(
                    entry,
                    shown=shown.joinpath(name),
                    link=real.joinpath(name),
                    files=files,
                    stack=stack,
                )
            elif isinstance(entry, pygit2.Blob) and is_manifest(name):
                files[shown.joinpath(name)] = self.load(entry, shown.joinpath(name))
            # Submodules (commit entries) and other files hold no manifests.

    def _follow(
        self,
        entry: pygit2.Blob,
        *,
        shown: RepoPath,
        link: RepoPath,
        files: dict[RepoPath, bytes],
        stack: tuple[RepoPath, ...],
    ) -> None:
        target, obj = self.resolve(link, entry)
        if isinstance(obj, pygit2.Tree):
            # Following a link to a directory being walked (or one above it) never ends.
            if any(walking.is_within(target) for walking in stack):
                raise RenderError(shown, None, f"symlink to {target} makes a directory loop")
            if holds_kustomization(obj):
                self.kustomizations.append(target)
                return
            self.walk(obj, shown=shown, real=target, files=files, stack=(*stack, target))
        elif isinstance(obj, pygit2.Blob) and is_manifest(shown.name):
            files[shown] = self.load(obj, shown)

    def load(self, blob: pygit2.Blob, shown: RepoPath) -> bytes:
        """The blob's content once its size (from its header) fits the cap; never loaded if not."""
        self.bytes_read += blob_size(blob, self.odb)
        if self.max_bytes is not None and self.bytes_read > self.max_bytes:
            raise RenderError(
                self.app_path,
                None,
                f"the app's manifests are over the input cap of {self.max_bytes} bytes "
                f"(render_max_bytes), {shown} included",
            )
        return blob.data

    def resolve(self, link: RepoPath, entry: pygit2.Blob) -> tuple[RepoPath, pygit2.Object]:
        """Follow the symlink at `link` (and any link its target goes through) to a real object."""
        hops = 0
        path = link_target(link, _target_of(link, entry), app_path=self.app_path)
        while True:
            found = walk_to(self.commit, path)
            if found is None:
                raise RenderError(
                    link, None, f"symlink to {path}, which does not exist at commit {self.short}"
                )
            where, obj, rest = found
            if not is_link(obj):
                return path, obj
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise RenderError(link, None, "too many levels of symlinks")
            path = link_target(where, _target_of(where, obj), app_path=self.app_path)
            if rest:
                path = path.joinpath(*rest)


def _target_of(link: RepoPath, entry: pygit2.Blob) -> str:
    if entry.size > MAX_LINK_TARGET_BYTES:
        raise RenderError(link, None, f"symlink target longer than {MAX_LINK_TARGET_BYTES} bytes")
    try:
        return entry.data.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(link, None, "symlink target is not UTF-8") from None
