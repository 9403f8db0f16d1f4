"""Git plumbing shared by git-watcher and renderer: bare mirrors, refs, trees.

Each service keeps its own mirrors (they share nothing but the log), under
`<data dir>/<service>/mirrors/<sha256(normalized url)[:16]>.git`. All network
and disk work of libgit2 runs in a thread (`asyncio.to_thread`), one fetch at
a time per mirror.

Thread safety: libgit2 lets several threads use the library at once, but not
one `pygit2.Repository` handle; so every fetch opens its own handle in its
thread, and a `Mirror` returned to a caller carries a fresh handle that the
caller uses from one thread at a time.

Private repositories: an app names a credential (`AppSpec.git_credential`),
never holds it. `GitCredentials` finds it by name in
`<git_credentials_dir>/<name>/` (`token`, optional `username`; or `ssh_key`,
optional `ssh_key.pub`, `passphrase`, `known_hosts`) or, for a token, in
`WAKE_GIT_TOKEN_<NAME>`; fetches and `check_reachable` hand it to libgit2
through `RemoteCallbacks`. A secret is read from its file at each use (so a
rotated token is picked up) and never enters a message, an event or a log.

A credential is bound to the repository URLs it may be sent to: glob
patterns, one a line, in `<git_credentials_dir>/<name>/urls` (or
`WAKE_GIT_URLS_<NAME>`, patterns separated by spaces or commas). It is handed
only to a URL one of them matches, over HTTPS (a token) or SSH (a key) --
never plain http://, not even to this machine -- and otherwise the fetch
fails naming the credential and the URL, before any connection is made
(`GitCredentials.for_url`). A credential bound to no URL is sent nowhere.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import fnmatch
import functools
import hashlib
import os
import re
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pygit2
from opentelemetry.trace import SpanKind
from pygit2.enums import CredentialType, FetchPrune

from services.wiring import telemetry
from services.wiring.coalescing import NextRound
from services.wiring.logs import without_credentials
from services.wiring.private import private_dir
from services.wiring.settings import Settings

# A mirror holds every branch and tag of its repository under the same names.
MIRROR_REFSPECS = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"]

# libgit2 waits forever on a silent server by default; a poll must not hang.
CONNECT_TIMEOUT_MS = 30_000
SERVER_TIMEOUT_MS = 120_000

# The ref of an app that follows the repository's default branch, whatever
# it is called (Argo CD's targetRevision HEAD).
FOLLOW_HEAD = "HEAD"

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

    Remembered per URL (with the directory and home a relative path depends
    on): every poll asks it of every app, three times.
    """
    return _normalized(url, os.getcwd(), os.environ.get("HOME", ""))


@functools.lru_cache(maxsize=16_384)
def _normalized(url: str, cwd: str, home: str) -> str:
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


# --- credentials ---------------------------------------------------------------------

TOKEN_ENV_PREFIX = "WAKE_GIT_TOKEN_"
USERNAME_ENV_PREFIX = "WAKE_GIT_USERNAME_"
URLS_ENV_PREFIX = "WAKE_GIT_URLS_"
URLS_FILE = "urls"

# The user name sent with a bare token. GitHub, GitLab and Gitea accept any
# name with a personal access token; this is the one GitHub documents.
DEFAULT_TOKEN_USERNAME = "x-access-token"

_CREDENTIAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class CredentialError(Exception):
    """A credential that cannot be used: unknown, malformed, unreadable, or unsafe here."""


class CredentialName(str):
    """A credential's name, checked: letters, digits, `_ . -`; a directory name, never a path."""

    __slots__ = ()

    def __new__(cls, value: str) -> CredentialName:
        if isinstance(value, CredentialName):
            return value
        if not isinstance(value, str) or not _CREDENTIAL_NAME.match(value):
            raise CredentialError(
                f"invalid git credential name {value!r}: use letters, digits, '_', '.', '-' "
                "(at most 63, starting with a letter or digit)"
            )
        return super().__new__(cls, value)

    @property
    def env_suffix(self) -> str:
        """The name as it ends an environment variable: upper case, '-' and '.' as '_'."""
        return re.sub(r"[^A-Z0-9_]", "_", self.upper())


@dataclass(frozen=True, slots=True)
class TokenCredential:
    """An HTTPS token (sent as the password of Basic auth). `repr` never shows the token."""

    name: CredentialName
    username: str
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SshKeyCredential:
    """An SSH key pair on disk; `known_hosts` (if any) lists the hosts it may talk to."""

    name: CredentialName
    private_key: Path
    public_key: Path | None
    passphrase: str | None = field(repr=False)
    known_hosts: Path | None


GitCredential = TokenCredential | SshKeyCredential


class GitCredentials:
    """Where credentials are found by name: a directory and the environment.

    `<directory>/<name>/token` (HTTPS; optional `username` beside it) or
    `<directory>/<name>/ssh_key` (optional `ssh_key.pub`, `passphrase`,
    `known_hosts`); else `WAKE_GIT_TOKEN_<NAME>` (optional
    `WAKE_GIT_USERNAME_<NAME>`), NAME upper-cased with '-' and '.' as '_'.
    A file wins over the environment.
    """

    def __init__(
        self, directory: str | Path = "", *, environ: Mapping[str, str] | None = None
    ) -> None:
        self.directory = Path(directory).expanduser() if directory else None
        self.environ = dict(os.environ if environ is None else environ)

    @classmethod
    def from_settings(cls, settings: Settings) -> GitCredentials:
        """The credentials a process configured by `settings` may use (and its environment)."""
        return cls(settings.git_credentials_dir)

    def get(self, name: str) -> GitCredential | None:
        """The credential called `name`; None for "" (no credential).

        Raises CredentialError naming the credential (never its secret) when it
        is not configured or its files are unusable.
        """
        if not name:
            return None
        checked = CredentialName(name)
        if self.directory is not None:
            home = self.directory / checked
            if (home / "token").is_file():
                return TokenCredential(
                    name=checked,
                    username=_read_secret(home / "username", checked, optional=True)
                    or DEFAULT_TOKEN_USERNAME,
                    token=_read_secret(home / "token", checked),
                )
            if (home / "ssh_key").is_file():
                public = home / "ssh_key.pub"
                known_hosts = home / "known_hosts"
                return SshKeyCredential(
                    name=checked,
                    private_key=home / "ssh_key",
                    public_key=public if public.is_file() else None,
                    passphrase=_read_secret(home / "passphrase", checked, optional=True) or None,
                    known_hosts=known_hosts if known_hosts.is_file() else None,
                )
        token = self.environ.get(TOKEN_ENV_PREFIX + checked.env_suffix, "").strip()
        if token:
            username = self.environ.get(USERNAME_ENV_PREFIX + checked.env_suffix, "").strip()
            return TokenCredential(
                name=checked, username=username or DEFAULT_TOKEN_USERNAME, token=token
            )
        where = f"{self.directory / checked}/token or ssh_key, " if self.directory else ""
        raise CredentialError(
            f"git credential {checked!r} is not configured "
            f"(looked for {where}{TOKEN_ENV_PREFIX}{checked.env_suffix})"
        )

    def urls(self, name: str) -> list[str]:
        """The URL patterns credential `name` is bound to (its `urls` file, else the
        environment); [] if none."""
        checked = CredentialName(name)
        if self.directory is not None:
            path = self.directory / checked / URLS_FILE
            if path.is_file():
                text = _read_secret(path, checked, optional=True)
                return [line.strip() for line in text.splitlines() if line.strip()]
        value = self.environ.get(URLS_ENV_PREFIX + checked.env_suffix, "")
        return [part for part in re.split(r"[\s,]+", value) if part]

    def for_url(self, name: str, url: str) -> GitCredential | None:
        """The credential called `name`, if it may be sent to `url`; None for "" (none).

        Raises CredentialError naming the credential and the URL (never the
        secret) when it is unknown, bound to no pattern that matches `url`, or
        the URL's transport is not its own: HTTPS for a token, SSH for a key.
        """
        credential = self.get(name)
        if credential is None:
            return None
        shown = redact(url)
        transport = _transport(url)
        if isinstance(credential, TokenCredential) and transport != "https":
            raise CredentialError(
                f"git credential {credential.name!r} is an HTTPS token and is not sent to "
                f"{shown}: only over https:// (never plain http://)"
            )
        if isinstance(credential, SshKeyCredential) and transport != "ssh":
            raise CredentialError(
                f"git credential {credential.name!r} is an SSH key and is not sent to "
                f"{shown}: only over ssh://"
            )
        patterns = self.urls(credential.name)
        if not patterns:
            where = f"{self.directory / credential.name / URLS_FILE} or " if self.directory else ""
            raise CredentialError(
                f"git credential {credential.name!r} is bound to no URL, so it is sent nowhere: "
                f"list the URL patterns it may go to in {where}"
                f"{URLS_ENV_PREFIX}{credential.name.env_suffix}"
            )
        candidates = {url.strip(), normalize_url(url)}
        if not any(fnmatch.fnmatchcase(c, p) for c in candidates for p in patterns):
            raise CredentialError(
                f"git credential {credential.name!r} is not sent to {shown}: it is bound to "
                f"{', '.join(patterns)}"
            )
        return credential


def _transport(url: str) -> str:
    """How `url` is reached: "https", "ssh" (ssh:// or scp-like), or its scheme."""
    url = url.strip()
    if _SCP_LIKE.match(url) and not _SCHEME.match(url):
        return "ssh"
    if not _SCHEME.match(url):
        return "file"
    scheme = urlsplit(url).scheme.lower()
    return "ssh" if scheme in ("ssh", "git+ssh", "ssh+git") else scheme


def _read_secret(path: Path, name: str, *, optional: bool = False) -> str:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        if optional:
            return ""
        raise CredentialError(f"git credential {name!r}: {path} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError(
            f"git credential {name!r}: cannot read {path}: {type(exc).__name__}"
        ) from None
    if not value and not optional:
        raise CredentialError(f"git credential {name!r}: {path} is empty")
    return value


class _Authenticating(pygit2.RemoteCallbacks):
    """Hands libgit2 one credential, once: a refusal is an error, never a retry loop.

    libgit2 calls `credentials` again after each refusal; answering with the
    same credential forever would hang the fetch.
    """

    def __init__(self, credential: GitCredential) -> None:
        super().__init__()
        self.credential = credential
        self.attempts = 0

    def credentials(
        self, url: str, username_from_url: str | None, allowed_types: CredentialType
    ) -> pygit2.UserPass | pygit2.Keypair | pygit2.Username:
        credential = self.credential
        username = username_from_url or "git"
        if allowed_types & CredentialType.USERNAME and not allowed_types & CredentialType.SSH_KEY:
            # SSH asks for the user name first and for the key next: not an attempt.
            return pygit2.Username(username)
        self.attempts += 1
        if self.attempts > 1:
            raise CredentialError(
                f"authentication with git credential {credential.name!r} was refused"
            )
        if isinstance(credential, TokenCredential):
            if not allowed_types & CredentialType.USERPASS_PLAINTEXT:
                raise CredentialError(
                    f"git credential {credential.name!r} is an HTTPS token, "
                    "but the server asks for another kind (an SSH URL needs an ssh_key)"
                )
            _refuse_cleartext(url, credential.name)
            return pygit2.UserPass(credential.username, credential.token)
        if not allowed_types & CredentialType.SSH_KEY:
            raise CredentialError(
                f"git credential {credential.name!r} is an SSH key, "
                "but the server asks for another kind (an HTTPS URL needs a token)"
            )
        return pygit2.Keypair(
            username,
            str(credential.public_key) if credential.public_key else None,
            str(credential.private_key),
            credential.passphrase or "",
        )

    def certificate_check(self, certificate: None, valid: bool, host: bytes) -> bool:
        # libgit2 has already checked the TLS chain, or the SSH host key
        # against known_hosts (see _trust_known_hosts); an unknown host is refused.
        if not valid:
            raise CredentialError(
                f"the host key or certificate of {host.decode(errors='replace')} is not trusted"
                + (
                    " (add it to the credential's known_hosts)"
                    if isinstance(self.credential, SshKeyCredential)
                    else ""
                )
            )
        return True


def _refuse_cleartext(url: str, name: str) -> None:
    """A token goes over HTTPS only: over plain HTTP anyone on the way may read it (on this
    machine too: any local process may listen on a loopback port)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return
    raise CredentialError(
        f"git credential {name!r} is not sent over {parts.scheme or 'this'} to "
        f"{parts.hostname}: use an https:// URL"
    )


_known_hosts_lock = threading.Lock()
_known_hosts_home: Path | None = None
_known_hosts_files: set[Path] = set()


def _trust_known_hosts(credential: SshKeyCredential) -> None:
    """Make libgit2 check SSH host keys against the credential's known_hosts too.

    libgit2 reads `<home>/.ssh/known_hosts`, and pygit2 does not show the
    host key to a callback; so the process gets a home of its own (created
    once) whose known_hosts is the union of every credential's file used so
    far plus the user's own. The home is process-wide, hence the lock.
    """
    global _known_hosts_home
    if credential.known_hosts is None:
        return
    with _known_hosts_lock:
        if _known_hosts_home is None:
            user_file = Path(pygit2.settings.homedir or "~").expanduser() / ".ssh" / "known_hosts"
            _known_hosts_home = Path(tempfile.mkdtemp(prefix="wake-ssh-home-"))
            (_known_hosts_home / ".ssh").mkdir(mode=0o700)
            if user_file.is_file():
                _known_hosts_files.add(user_file)
        if credential.known_hosts not in _known_hosts_files:
            _known_hosts_files.add(credential.known_hosts)
            lines = []
            for path in sorted(_known_hosts_files):
                try:
                    lines.append(path.read_text())
                except (OSError, UnicodeDecodeError) as exc:
                    raise CredentialError(
                        f"git credential {credential.name!r}: cannot read {path}: "
                        f"{type(exc).__name__}"
                    ) from None
            (_known_hosts_home / ".ssh" / "known_hosts").write_text(
                "\n".join(text.rstrip("\n") for text in lines) + "\n"
            )
        if pygit2.settings.homedir != str(_known_hosts_home):
            pygit2.settings.homedir = str(_known_hosts_home)


def remote_callbacks(credential: GitCredential | None) -> pygit2.RemoteCallbacks | None:
    """The callbacks that authenticate a fetch or listing with `credential` (None: anonymous).

    Called in the thread that fetches: files (a rotated key) are read now.
    """
    if credential is None:
        return None
    if isinstance(credential, SshKeyCredential):
        if not os.access(credential.private_key, os.R_OK):
            raise CredentialError(
                f"git credential {credential.name!r}: cannot read {credential.private_key}"
            )
        _trust_known_hosts(credential)
    return _Authenticating(credential)


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
    """The mirrors of one service, under `root`; fetches one at a time per mirror, and
    callers that ask while a fetch runs share the next (`NextRound`).

    `credentials` is where a fetch's `credential=<name>` is looked up; without
    it, a fetch naming a credential fails (RepoUnreachable saying so).
    """

    def __init__(self, root: Path, *, credentials: GitCredentials | None = None) -> None:
        self.root = Path(root)
        self.credentials = credentials or GitCredentials()
        self._locks: dict[str, asyncio.Lock] = {}
        self._fetching: dict[tuple[str, str], NextRound[None]] = {}
        self.fetches: Counter[str] = Counter()
        """Completed fetches per normalized URL (for logs and tests)."""

    def path_for(self, url: str) -> Path:
        return self.root / mirror_name(url)

    def _lock(self, url: str) -> asyncio.Lock:
        return self._locks.setdefault(mirror_name(url), asyncio.Lock())

    async def fetch(self, url: str, *, credential: str = "") -> Mirror:
        """Bring the mirror up to date with every branch and tag of `url` (pruned).

        Creates the mirror on first use. `credential` names the credential to
        authenticate with ("" = none). Raises RepoUnreachable with a one-line
        reason (an unknown credential included).
        """
        path = self.path_for(url)
        key = (mirror_name(url), credential)
        fetching = self._fetching.get(key)
        if fetching is None:
            fetching = self._fetching[key] = NextRound(
                functools.partial(self._fetch, url, path, credential)
            )
        # A fan-out asks for the same repository once per app: callers that
        # arrive during a fetch share the next one (which starts after they asked).
        await fetching()
        return await asyncio.to_thread(_open, url, path)

    async def _fetch(self, url: str, path: Path, credential: str) -> None:
        async with self._lock(url):
            found = self._credential(url, credential)
            with telemetry.child_span(
                "git fetch",
                {"url.full": without_credentials(url), "wake.git.credential": credential},
                kind=SpanKind.CLIENT,
            ):
                try:
                    await asyncio.to_thread(_fetch_blocking, url, path, found)
                finally:
                    await asyncio.to_thread(_release_freed_memory)
            self.fetches[normalize_url(url)] += 1

    async def open(self, url: str) -> Mirror | None:
        """The mirror as it is, without fetching; None if there is none yet."""
        path = self.path_for(url)
        if not (path / "HEAD").exists():
            return None
        return await asyncio.to_thread(_open, url, path)

    async def with_commit(self, url: str, commit_id: str, *, credential: str = "") -> Mirror:
        """A mirror holding `commit_id`: fetched only if it is missing.

        Raises RepoUnreachable if a needed fetch fails, CommitNotFound if the
        commit is not reachable from any branch or tag after it.
        """
        mirror = await self.open(url)
        if mirror is not None and mirror.has(commit_id):
            return mirror
        mirror = await self.fetch(url, credential=credential)
        if not mirror.has(commit_id):
            raise CommitNotFound(commit_id, url)
        return mirror

    def _credential(self, url: str, name: str) -> GitCredential | None:
        try:
            return self.credentials.for_url(name, url)
        except CredentialError as exc:
            raise RepoUnreachable(url, str(exc)) from None


def _open(url: str, path: Path) -> Mirror:
    return Mirror(url=url, path=path, repo=pygit2.Repository(str(path)))


_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None) if sys.platform == "linux" else None


def _release_freed_memory() -> None:
    """Hand back to the system what a fetch freed (glibc's malloc_trim; elsewhere nothing).

    libgit2 indexes a fetched pack in the fetching thread's malloc arena, which
    glibc keeps once freed: the first fetch of a 10,000-app monorepo left the
    process ~20 MB larger for good.
    """
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _fetch_blocking(url: str, path: Path, credential: GitCredential | None) -> None:
    _configure_libgit2()
    try:
        callbacks = remote_callbacks(credential)
        if not (path / "HEAD").exists():
            # Mirrors hold source code: 0700, and git creates what is inside
            # under the process's umask (077 for every `wake` command).
            private_dir(path.parent)
            private_dir(path)
            repo = pygit2.init_repository(str(path), bare=True)
        else:
            repo = pygit2.Repository(str(path))
        remote = repo.remotes.create_anonymous(fetch_url(url))
        remote.fetch(MIRROR_REFSPECS, prune=FetchPrune.PRUNE, callbacks=callbacks)
        # The listing of that fetch (no new connection) says which branch the
        # remote's HEAD names: the mirror's HEAD follows it, as a `git clone
        # --mirror` does, so the ref "HEAD" means the repository's default branch.
        _follow_remote_head(repo, remote.list_heads(connect=False))
    except (pygit2.GitError, OSError, ValueError, CredentialError) as exc:
        raise RepoUnreachable(url, _reason(exc)) from None


def _follow_remote_head(repo: pygit2.Repository, heads: list) -> None:
    for head in heads:
        if head.name != "HEAD":
            continue
        target = head.symref_target or ""
        if target.startswith("refs/heads/") and repo.references.get(target) is not None:
            repo.references.create("HEAD", target, force=True)
        return


async def check_reachable(url: str, *, credential: GitCredential | None = None) -> dict[str, str]:
    """List the repository's refs without fetching; {ref name: target id}.

    `credential` (from `GitCredentials.get`) authenticates, if given.
    Raises RepoUnreachable(url, reason) with a one-line reason if it cannot be
    listed (no such path, not a repository, connection refused, auth failed).
    """
    return (await list_remote(url, credential=credential)).refs


@dataclass(frozen=True, slots=True)
class RemoteRefs:
    """What a repository advertises (`git ls-remote`): its refs, and the branch HEAD names."""

    refs: dict[str, str]
    head: str = ""
    """The full name of the default branch (`refs/heads/main`); "" if HEAD names none."""

    @property
    def branches(self) -> list[str]:
        prefix = "refs/heads/"
        return sorted(n.removeprefix(prefix) for n in self.refs if n.startswith(prefix))


async def list_remote(url: str, *, credential: GitCredential | None = None) -> RemoteRefs:
    """The repository's refs and default branch, without fetching (RepoUnreachable if not)."""
    return await asyncio.to_thread(_list_refs_blocking, url, credential)


def _list_refs_blocking(url: str, credential: GitCredential | None) -> RemoteRefs:
    _configure_libgit2()
    with tempfile.TemporaryDirectory(prefix="wake-ls-remote-") as scratch:
        try:
            callbacks = remote_callbacks(credential)
            repo = pygit2.init_repository(scratch, bare=True)
            heads = repo.remotes.create_anonymous(fetch_url(url)).list_heads(callbacks=callbacks)
        except (pygit2.GitError, OSError, ValueError, CredentialError) as exc:
            raise RepoUnreachable(url, _reason(exc)) from None
    return RemoteRefs(
        refs={head.name: str(head.oid) for head in heads},
        head=next((h.symref_target or "" for h in heads if h.name == "HEAD"), ""),
    )


def ref_in_listing(listing: RemoteRefs, ref: str, url: str) -> str | None:
    """The commit `ref` names in a listing; None for a full commit id that is no tip.

    (Only a fetch can tell whether such a commit exists.) Raises RefNotFound
    naming the branches the repository has otherwise. Pure.
    """
    branches = ", ".join(listing.branches) or "none"
    if ref == FOLLOW_HEAD:
        if listing.head in listing.refs:
            return listing.refs[listing.head]
        raise RefNotFound(
            ref, url, f"the repository has no default branch (HEAD); its branches: {branches}"
        )
    if _FULL_SHA.match(ref):
        return ref if ref in listing.refs.values() else None
    candidates = (
        [ref]
        if ref.startswith("refs/")
        else [f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}"]
    )
    for name in candidates:
        if name in listing.refs:
            return listing.refs[name]
    detail = "it is neither a branch, a tag nor a full commit id there"
    raise RefNotFound(ref, url, f"{detail}; its branches: {branches}")


async def check_ref(url: str, ref: str, *, credential: GitCredential | None = None) -> str:
    """The commit `ref` names in the repository at `url` now: what `wake app add` checks.

    Lists the remote (as `git ls-remote`); a full commit id that no branch or
    tag points at directly is looked for in a scratch fetch. Raises
    RepoUnreachable or RefNotFound (naming the branches there is).
    """
    listing = await list_remote(url, credential=credential)
    found = ref_in_listing(listing, ref, url)
    if found is not None:
        return found
    with tempfile.TemporaryDirectory(prefix="wake-check-ref-") as scratch:
        path = Path(scratch) / "mirror.git"
        await asyncio.to_thread(_fetch_blocking, url, path, credential)
        mirror = await asyncio.to_thread(_open, url, path)
        if not mirror.has(ref):
            branches = ", ".join(listing.branches) or "none"
            raise RefNotFound(
                ref, url, f"no such commit on any branch or tag; its branches: {branches}"
            )
    return ref


# --- reading a mirror ----------------------------------------------------------------


def resolve(mirror: Mirror, ref: str) -> str:
    """The commit id `ref` names in the mirror: a branch, a tag, or a full commit id.

    A name is looked up as git does (`refs/<ref>`, then tags, then branches);
    annotated tags are peeled to their commit. `HEAD` is the branch the
    remote's HEAD named at the last fetch. Raises RefNotFound naming the ref
    and the repository.
    """
    repo = mirror.repo
    if ref == FOLLOW_HEAD:
        return _default_branch_commit(mirror)
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


def _default_branch_commit(mirror: Mirror) -> str:
    try:
        return str(mirror.repo.references["HEAD"].resolve().peel(pygit2.Commit).id)
    except (KeyError, ValueError, pygit2.GitError):
        raise RefNotFound(
            FOLLOW_HEAD,
            mirror.url,
            "the repository has no default branch (its HEAD names no branch it has)",
        ) from None


def default_branch(mirror: Mirror) -> str:
    """The branch the mirror's HEAD follows (`main`); "" if none."""
    head = mirror.repo.references.get("HEAD")
    target = head.target if head is not None else ""
    return target.removeprefix("refs/heads/") if isinstance(target, str) else ""


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
