"""Git plumbing shared by git-watcher and renderer: bare mirrors, refs, trees.

Each service keeps its own mirrors (they share nothing but the log), under
`<data dir>/<service>/mirrors/<sha256(normalized url)[:16]>.git`. All network
and disk work of libgit2 runs in a thread (`asyncio.to_thread`), one fetch at
a time per mirror.

Thread safety: libgit2 lets several threads use the library at once, but not
one `pygit2.Repository` handle; so every fetch opens its own handle in its
thread, and a `Mirror` returned to a caller carries a fresh handle that the
caller uses from one thread at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pygit2
from pygit2.enums import FetchPrune

# A mirror holds every branch and tag of its repository under the same names.
MIRROR_REFSPECS = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]

# libgit2 waits forever on a silent server by default; a poll must not hang.
CONNECT_TIMEOUT_MS = 30_000
SERVER_TIMEOUT_MS = 120_000

_FULL_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# scp-like SSH address: user@host:path (no scheme, a colon before any slash).
_SCP_LIKE = re.compile(r"^[^/:]+@[^/:]+:")


# --- paths inside a repository ---------------------------------------------------


class InvalidRepoPath(ValueError):
    """A path that cannot name a place inside a repository."""


class RepoPath(str):
    """A path inside a repository, checked: relative, no `..`, no empty segment.

    Only the checker makes one: `RepoPath(value)` and `RepoPath.parse(value)`
    both check and normalize (`.` segments dropped). The repository root is
    `"."`; every other path is `a/b/c`, '/'-separated as in a git tree.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> RepoPath:
        if isinstance(value, RepoPath):
            return value
        return super().__new__(cls, _checked_path(value))

    @classmethod
    def parse(cls, value: str) -> RepoPath:
        """`value` as a RepoPath, or InvalidRepoPath saying what is wrong with it."""
        return cls(value)

    @property
    def parts(self) -> tuple[str, ...]:
        """The segments; () for the root."""
        return () if self == "." else tuple(self.split("/"))

    @property
    def is_root(self) -> bool:
        return self == "."

    @property
    def name(self) -> str:
        return self.parts[-1] if self.parts else ""

    @property
    def parent(self) -> RepoPath:
        return RepoPath("/".join(self.parts[:-1]) or ".")

    def joinpath(self, *segments: str) -> RepoPath:
        return RepoPath("/".join((*self.parts, *segments)) or ".")

    def is_within(self, base: RepoPath) -> bool:
        """True if this path is `base` or lies below it."""
        return self.parts[: len(base.parts)] == base.parts


def _checked_path(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidRepoPath(f"invalid path {value!r}: not a string")
    if value in ("", "."):
        return "."
    if "\x00" in value:
        raise InvalidRepoPath(f"invalid path {value!r}: contains a NUL character")
    if value.startswith("/"):
        raise InvalidRepoPath(
            f"invalid path {value!r}: absolute; give it relative to the repository root"
        )
    kept = []
    for segment in value.split("/"):
        if segment == "":
            raise InvalidRepoPath(
                f"invalid path {value!r}: empty segment (a '//' or a '/' at the end)"
            )
        if segment == "..":
            raise InvalidRepoPath(f"invalid path {value!r}: '..' is not allowed")
        if segment != ".":
            kept.append(segment)
    return "/".join(kept) or "."


# --- repository URLs ------------------------------------------------------------------


def normalize_url(url: str) -> str:
    """One spelling per repository: the key of its mirror.

    A local path becomes an absolute `file://` URL (so `/r`, `file:///r` and
    `./r` seen from `/` share a mirror); for other URLs the scheme and host
    are lower-cased, credentials and a trailing '/' dropped.
    """
    url = url.strip()
    if _SCP_LIKE.match(url) and not _SCHEME.match(url):
        return url.rstrip("/")
    if not _SCHEME.match(url):
        return "file://" + os.path.normpath(os.path.abspath(os.path.expanduser(url)))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return "file://" + os.path.normpath(parts.path or "/")
    host = (parts.hostname or "").lower()
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), parts.query, ""))


def fetch_url(url: str) -> str:
    """The URL handed to libgit2: local paths as absolute file:// URLs, others as given.

    (libgit2 answers a missing plain path with "unsupported URL protocol"; as
    a file:// URL it says which path it could not find.)
    """
    url = url.strip()
    if _SCP_LIKE.match(url) or _SCHEME.match(url):
        return url
    return normalize_url(url)


def redact(url: str) -> str:
    """The URL without its password or token, fit for logs and events."""
    if not _SCHEME.match(url):
        return url
    parts = urlsplit(url)
    if parts.password is None and not parts.username:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.password is not None else "***@"
    return urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment))


def _scrubbed(text: str, url: str) -> str:
    """`text` without the URL's password (libgit2 may quote the URL it failed on)."""
    if _SCHEME.match(url):
        password = urlsplit(url).password
        if password:
            text = text.replace(password, "***")
    return text


def mirror_name(url: str) -> str:
    """The directory name of the repository's mirror."""
    return hashlib.sha256(normalize_url(url).encode()).hexdigest()[:16] + ".git"


# --- errors ------------------------------------------------------------------------


class RepoUnreachable(Exception):
    """The repository could not be listed or fetched."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = _scrubbed(reason, url)
        super().__init__(f"cannot reach repository {redact(url)}: {self.reason}")


class RefNotFound(LookupError):
    """A branch, tag or commit that the repository does not have."""

    def __init__(self, ref: str, url: str, detail: str = "") -> None:
        self.ref = ref
        self.url = url
        what = detail or "it is neither a branch, a tag nor a commit id there"
        super().__init__(f"ref {ref!r} not found in repository {redact(url)}: {what}")


class CommitNotFound(LookupError):
    """A commit that is not in the mirror, even after a fetch."""

    def __init__(self, commit: str, url: str) -> None:
        self.commit = commit
        self.url = url
        super().__init__(
            f"commit {commit} not found in repository {redact(url)} "
            "(not reachable from any branch or tag)"
        )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


_configured = False


def _configure_libgit2() -> None:
    global _configured
    if not _configured:
        pygit2.settings.server_connect_timeout = CONNECT_TIMEOUT_MS
        pygit2.settings.server_timeout = SERVER_TIMEOUT_MS
        _configured = True


# --- mirrors -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mirror:
    """A bare mirror of one repository and a handle on it (for one thread at a time)."""

    url: str
    path: Path
    repo: pygit2.Repository

    def has(self, commit_id: str) -> bool:
        try:
            return isinstance(self.repo.get(commit_id), pygit2.Commit)
        except (ValueError, pygit2.GitError):
            return False

    def commit(self, commit_id: str) -> pygit2.Commit:
        """The commit, or CommitNotFound naming it and the repository."""
        if not self.has(commit_id):
            raise CommitNotFound(commit_id, self.url)
        return self.repo[commit_id]


class Mirrors:
    """The mirrors of one service, under `root`; fetches one at a time per mirror."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._locks: dict[str, asyncio.Lock] = {}
        self.fetches: Counter[str] = Counter()
        """Completed fetches per normalized URL (for logs and tests)."""

    def path_for(self, url: str) -> Path:
        return self.root / mirror_name(url)

    def _lock(self, url: str) -> asyncio.Lock:
        return self._locks.setdefault(mirror_name(url), asyncio.Lock())

    async def fetch(self, url: str) -> Mirror:
        """Bring the mirror up to date with every branch and tag of `url` (pruned).

        Creates the mirror on first use. Raises RepoUnreachable with a one-line reason.
        """
        path = self.path_for(url)
        async with self._lock(url):
            await asyncio.to_thread(_fetch_blocking, url, path)
            self.fetches[normalize_url(url)] += 1
        return await asyncio.to_thread(_open, url, path)

    async def open(self, url: str) -> Mirror | None:
        """The mirror as it is, without fetching; None if there is none yet."""
        path = self.path_for(url)
        if not (path / "HEAD").exists():
            return None
        return await asyncio.to_thread(_open, url, path)

    async def with_commit(self, url: str, commit_id: str) -> Mirror:
        """A mirror holding `commit_id`: fetched only if it is missing.

        Raises RepoUnreachable if a needed fetch fails, CommitNotFound if the
        commit is not reachable from any branch or tag after it.
        """
        mirror = await self.open(url)
        if mirror is not None and mirror.has(commit_id):
            return mirror
        mirror = await self.fetch(url)
        if not mirror.has(commit_id):
            raise CommitNotFound(commit_id, url)
        return mirror


def _open(url: str, path: Path) -> Mirror:
    return Mirror(url=url, path=path, repo=pygit2.Repository(str(path)))


def _fetch_blocking(url: str, path: Path) -> None:
    _configure_libgit2()
    try:
        if not (path / "HEAD").exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            repo = pygit2.init_repository(str(path), bare=True)
        else:
            repo = pygit2.Repository(str(path))
        remote = repo.remotes.create_anonymous(fetch_url(url))
        remote.fetch(MIRROR_REFSPECS, prune=FetchPrune.PRUNE)
    except (pygit2.GitError, OSError, ValueError) as exc:
        raise RepoUnreachable(url, _reason(exc)) from None


async def check_reachable(url: str) -> dict[str, str]:
    """List the repository's refs without fetching; {ref name: target id}.

    Raises RepoUnreachable(url, reason) with a one-line reason if it cannot be
    listed (no such path, not a repository, connection refused, auth failed).
    """
    return await asyncio.to_thread(_list_refs_blocking, url)


def _list_refs_blocking(url: str) -> dict[str, str]:
    _configure_libgit2()
    with tempfile.TemporaryDirectory(prefix="wake-ls-remote-") as scratch:
        try:
            repo = pygit2.init_repository(scratch, bare=True)
            heads = repo.remotes.create_anonymous(fetch_url(url)).list_heads()
        except (pygit2.GitError, OSError, ValueError) as exc:
            raise RepoUnreachable(url, _reason(exc)) from None
    return {head.name: str(head.oid) for head in heads}


# --- reading a mirror ----------------------------------------------------------------


def resolve(mirror: Mirror, ref: str) -> str:
    """The commit id `ref` names in the mirror: a branch, a tag, or a full commit id.

    A name is looked up as git does (`refs/<ref>`, then tags, then branches);
    annotated tags are peeled to their commit. Raises RefNotFound naming the
    ref and the repository.
    """
    repo = mirror.repo
    if _FULL_SHA.match(ref):
        if mirror.has(ref):
            return ref
        raise RefNotFound(ref, mirror.url, "no such commit on any branch or tag")
    candidates = (
        [ref]
        if ref.startswith("refs/")
        else [f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}"]
    )
    for name in candidates:
        try:
            reference = repo.references.get(name)
        except (ValueError, pygit2.GitError):
            raise RefNotFound(ref, mirror.url, "not a valid ref name") from None
        if reference is None:
            continue
        try:
            return str(reference.peel(pygit2.Commit).id)
        except (ValueError, pygit2.GitError):
            raise RefNotFound(ref, mirror.url, f"{name} does not point at a commit") from None
    raise RefNotFound(ref, mirror.url)


def tree_id_of(commit: pygit2.Commit, path: RepoPath) -> str | None:
    """The id of the tree at `path` in `commit`; None if there is no directory there.

    Symbolic links are not followed: an app path must be a real directory.
    """
    tree: pygit2.Tree = commit.tree
    for segment in path.parts:
        try:
            entry = tree[segment]
        except KeyError:
            return None
        if not isinstance(entry, pygit2.Tree):
            return None
        tree = entry
    return str(tree.id)
