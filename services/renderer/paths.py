"""Which files of an app directory are manifests, and where a symlink may point. Pure.

A symbolic link in a repository is a blob holding its target. The renderer
follows one only if the target, resolved against the link's own directory,
stays inside the app's path: a link out of it (to another app, to the
repository's secrets, or with `..` or an absolute target out of the
repository) is refused, as Argo CD's repo server refuses out-of-bounds
symlinks. Nothing here reads the filesystem.
"""

from __future__ import annotations

from services.renderer.manifests import RenderError
from services.wiring.git import RepoPath

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

# Like `readlink -f`: a chain longer than this is a loop or a joke.
MAX_LINK_HOPS = 40
# Longest symlink target read (PATH_MAX): a "link" blob of gigabytes is refused unread.
MAX_LINK_TARGET_BYTES = 4096


def is_manifest(name: str) -> bool:
    """A file the yaml renderer reads, by its name."""
    return name.lower().endswith(MANIFEST_SUFFIXES)


def is_skipped_directory(name: str) -> bool:
    """Hidden directories (.git, .github, .helm...) hold no manifests of the app."""
    return name.startswith(".")


def link_target(link: RepoPath, target: str, *, app_path: RepoPath) -> RepoPath:
    """Where the symlink at `link` (its real location) points, checked.

    Raises RenderError naming the link if the target is empty, absolute,
    climbs out of the repository, or lands outside `app_path`.
    """
    if target == "":
        raise RenderError(link, None, "symlink with an empty target")
    if target.startswith("/"):
        raise RenderError(
            link, None, f"symlink to {target!r} leaves the repository (absolute target)"
        )
    parts = list(link.parent.parts)
    for segment in target.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                raise RenderError(link, None, f"symlink to {target!r} leaves the repository")
            parts.pop()
        else:
            parts.append(segment)
    resolved = RepoPath("/".join(parts) or ".")
    if not resolved.is_within(app_path):
        raise RenderError(
            link,
            None,
            f"symlink to {target!r} ({resolved}) leaves the app path {app_path}",
        )
    return resolved
