"""A commit's files as a tool reads them: looked up in the tree, or written to a private dir.

Tools (kustomize, helm) read a filesystem, so the renderer writes the parts of
the commit's tree they need into a directory of its own -- never a worktree of
the user's repository, never the mirror. Symbolic links are resolved from the
tree, repository-wide: a link whose target stays in the repository is written
as a copy of what it points to (so the tool never sees a link at all); one
that leaves the repository, dangles or loops is a RenderError naming the link.

Every byte written (or read, for jsonnet's imports) counts against the input
cap, and every file or directory written ENTRY_COST bytes more; going over
it is a RenderError naming the cap.
"""

from __future__ import annotations

from pathlib import Path

import pygit2

from services.renderer.manifests import RenderError
from services.renderer.paths import MAX_LINK_HOPS, MAX_LINK_TARGET_BYTES, link_target
from services.renderer.sources import blob_size, is_link, walk_to
from services.wiring.git import RepoPath

ROOT = RepoPath(".")

# What writing one file or directory costs against the input cap beyond its
# bytes: directory symlinks can multiply empty files without adding a byte.
ENTRY_COST = 256


class InputTooLarge(RenderError):
    """More bytes of the repository were needed than the input cap allows."""


class RepoTree:
    """The tree of one commit, with symlinks followed inside the repository only.

    `max_bytes` caps the total of the blobs `read` hands out. `reads` is every
    path `find` found, with every symlink on the way to it: what the render
    depended on (a directory standing for everything under it), so that
    git-watcher can tell which later commits may change the render.
    """

    def __init__(
        self, commit: pygit2.Commit, *, max_bytes: int, odb: pygit2.Odb | None = None
    ) -> None:
        self.commit = commit
        self.odb = odb
        self.short = str(commit.id)[:12]
        self.max_bytes = max_bytes
        self.bytes_read = 0
        self.reads: set[RepoPath] = set()

    def find(self, path: RepoPath) -> tuple[RepoPath, pygit2.Object] | None:
        """The object at `path` (its real path and itself), symlinks followed; None if absent.

        Raises RenderError naming a link on the way that leaves the
        repository, is not UTF-8, or is one of too long a chain.
        """
        hops = 0
        while True:
            found = walk_to(self.commit, path)
            if found is None:
                return None
            where, obj, rest = found
            # The link itself is an input too: retargeting it changes the render.
            self.reads.add(where)
            if not is_link(obj):
                return where, obj
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise RenderError(where, None, "too many levels of symlinks")
            target = link_target(where, _target_of(where, obj), app_path=ROOT)
            path = target.joinpath(*rest) if rest else target

    def read(self, path: RepoPath, *, via: str) -> bytes:
        """The content of the file at `path`, counted against the input cap.

        Raises RenderError naming `via` if there is no file there.
        """
        found = self.find(path)
        if found is None or not isinstance(found[1], pygit2.Blob):
            what = "does not exist" if found is None else "is not a file"
            raise RenderError(via, None, f"{path} {what} at commit {self.short}")
        return self.load(found[1])

    def load(self, blob: pygit2.Blob) -> bytes:
        """The blob's content, counted against the input cap *before* it is loaded.

        The size comes from the object's header in the object database
        (`blob_size`): a 2 GB blob in a hostile repository is refused without
        ever being inflated into memory.
        """
        self.count(b"", overhead=blob_size(blob, self.odb))
        return blob.data

    def count(self, data: bytes, *, overhead: int = 0) -> bytes:
        """`data`, once its size (plus `overhead`) is counted against the input cap."""
        self.bytes_read += len(data) + overhead
        if self.bytes_read > self.max_bytes:
            raise InputTooLarge(
                ROOT,
                None,
                f"the render reads more than the input cap of {self.max_bytes} bytes "
                "(render_max_bytes)",
            )
        return data


class Checkout:
    """Parts of a commit's tree written under `root`, at their repository paths."""

    def __init__(self, tree: RepoTree, root: Path) -> None:
        self.tree = tree
        self.root = root
        self.written: set[RepoPath] = set()

    def local(self, path: RepoPath) -> Path:
        """Where `path` is (or would be) written."""
        return self.root.joinpath(*path.parts)

    def write(self, path: RepoPath, *, via: str, field: str = "") -> pygit2.Object:
        """Write the file or directory at `path` (a directory with everything below it).

        Returns the object found there. Raises RenderError naming `via` (the
        file that names `path`, in its `field`) if nothing is there, or naming
        a link under it that leaves the repository.
        """
        found = self.tree.find(path)
        if found is None:
            prefix = f"{field}: " if field else ""
            raise RenderError(
                via, None, f"{prefix}{path} does not exist at commit {self.tree.short}"
            )
        real, obj = found
        self._write(path, real, obj, stack=(real,))
        return obj

    def _write(
        self, shown: RepoPath, real: RepoPath, obj: pygit2.Object, *, stack: tuple[RepoPath, ...]
    ) -> None:
        if shown in self.written:
            return
        self.written.add(shown)
        self.tree.count(b"", overhead=ENTRY_COST)
        target = self.local(shown)
        if isinstance(obj, pygit2.Tree):
            target.mkdir(parents=True, exist_ok=True)
            for entry in obj:
                child_real = real.joinpath(entry.name)
                child_shown = shown.joinpath(entry.name)
                if is_link(entry):
                    found = self.tree.find(child_real)
                    if found is None:
                        raise RenderError(
                            child_real,
                            None,
                            f"symlink to {_target_of(child_real, entry)!r}, which does not "
                            f"exist at commit {self.tree.short}",
                        )
                    link_real, linked = found
                    if isinstance(linked, pygit2.Tree) and any(
                        walking.is_within(link_real) for walking in stack
                    ):
                        raise RenderError(
                            child_real, None, f"symlink to {link_real} makes a directory loop"
                        )
                    self._write(child_shown, link_real, linked, stack=(*stack, link_real))
                elif isinstance(entry, pygit2.Tree | pygit2.Blob):
                    self._write(child_shown, child_real, entry, stack=(*stack, child_real))
                # Submodules (commit entries) have no content in this repository.
        elif isinstance(obj, pygit2.Blob):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.tree.load(obj))


def _target_of(link: RepoPath, entry: pygit2.Object) -> str:
    if entry.size > MAX_LINK_TARGET_BYTES:
        raise RenderError(link, None, f"symlink target longer than {MAX_LINK_TARGET_BYTES} bytes")
    try:
        return entry.data.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(link, None, "symlink target is not UTF-8") from None
