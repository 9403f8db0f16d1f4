"""What a forge's webhook says, and whether it may be believed. Pure: bytes in, decisions out.

Five providers, each with its own signature and payload:

| route        | signature header                    | what is signed                    |
|--------------|-------------------------------------|-----------------------------------|
| `/github`    | `X-Hub-Signature-256: sha256=<hex>` | HMAC-SHA256 of the body           |
| `/gitlab`    | `X-Gitlab-Token: <secret>`          | nothing: the secret itself is sent |
| `/gitea`     | `X-Gitea-Signature: <hex>` (or `X-Forgejo-Signature`) | HMAC-SHA256 of the body |
| `/bitbucket` | `X-Hub-Signature: sha256=<hex>`     | HMAC-SHA256 of the body           |
| `/generic`   | `X-Wake-Signature: sha256=<hex>`    | HMAC-SHA256 of the body           |

The generic body is `{"repo_url": "<url>", "ref": "refs/heads/main"}` (`ref`
optional: every app of the repository is checked; `"event": "ping"` pings).

Which secret: a body is believed if it verifies with the global secret or
with the webhook secret of an app whose repository the body names. It then
triggers an app only if it verifies with *that app's* secret: the app's own
`webhook_secret_file` if it has one, else the global secret. So a team given
its own secret can wake its own apps, and nobody else's; and an app with its
own secret is not woken by the global one. Only the secrets of apps the body
names are tried, so the work a stranger can cause is bounded by the apps of
one repository, not by every app registered.

Nothing in a payload is trusted beyond "look at this repository now": the
commit ids it carries are ignored, the watcher fetches and decides itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

# Forges send a few KiB; GitHub caps its own payloads at 25 MiB, but a push
# that names more than 1 MiB of commits still only means "fetch this repo".
MAX_BODY_BYTES = 1024 * 1024
# The forges' push payloads nest under ten levels; anything past this is hostile.
MAX_JSON_DEPTH = 64

Provider = Literal["github", "gitlab", "gitea", "bitbucket", "generic"]
PROVIDERS: tuple[Provider, ...] = ("github", "gitlab", "gitea", "bitbucket", "generic")

EventKind = Literal["push", "ping", "other"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?(?P<host>[^/:]+):(?P<path>(?!//).*)$")


class WebhookError(ValueError):
    """A verified body that still cannot be understood (bad JSON, missing field)."""


# --- repository identity -------------------------------------------------------------


def repo_key(url: str) -> str:
    """The repository a URL names, for matching a webhook to registered apps.

    Clone, HTML, SSH and git URLs of one repository give the same key: scheme,
    `user@`, port, a trailing `.git` and `/` are dropped and the result is
    lower-cased (`https://GitHub.com/Org/Repo.git`, `git@github.com:org/repo`
    and `ssh://git@github.com:22/org/repo.git` are all `github.com/org/repo`).
    Lenient on purpose: a false match only costs a fetch (the commit is never
    taken from the payload), a missed one loses the webhook. Local paths
    (and `file://` URLs) are keyed by their absolute path.
    """
    url = url.strip()
    if _SCHEME.match(url):
        parts = urlsplit(url)
        if parts.scheme.lower() == "file":
            host, path = "", parts.path
        else:
            host, path = (parts.hostname or ""), parts.path
    else:
        scp = _SCP_LIKE.match(url)
        if scp is not None and not url.startswith("/"):
            host, path = scp.group("host"), scp.group("path")
        else:
            host, path = "", url
    path = path.rstrip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    path = "/" + path.strip("/")
    return (host + path).lower()


# --- signatures ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Secret:
    """A webhook secret and whose it is ("global", or "app <name>"). `repr` hides the value."""

    owner: str
    value: bytes

    def __repr__(self) -> str:
        return f"Secret(owner={self.owner!r})"


@dataclass(frozen=True, slots=True)
class VerifiedBody:
    """A webhook body whose signature verified: only `verify` makes one.

    `signed_with` holds the owners of the secrets it verified with.
    """

    provider: Provider
    body: bytes
    signed_with: frozenset[str]


_SIGNATURE_HEADERS: dict[Provider, tuple[str, ...]] = {
    "github": ("x-hub-signature-256",),
    "gitlab": ("x-gitlab-token",),
    "gitea": ("x-gitea-signature", "x-forgejo-signature"),
    "bitbucket": ("x-hub-signature",),
    "generic": ("x-wake-signature",),
}


def signature_header(provider: Provider, headers: Mapping[str, str]) -> str | None:
    """The provider's signature header's value, or None if the request has none."""
    lowered = {name.lower(): value for name, value in headers.items()}
    for name in _SIGNATURE_HEADERS[provider]:
        if name in lowered:
            return lowered[name].strip()
    return None


def hmac_sha256_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _matches(provider: Provider, signature: str, secret: bytes, body: bytes) -> bool:
    """Constant-time: `compare_digest` on equal-length inputs leaks nothing about the secret."""
    if provider == "gitlab":
        # GitLab sends the secret itself; compare digests so lengths leak nothing either.
        return hmac.compare_digest(
            hashlib.sha256(signature.encode()).digest(), hashlib.sha256(secret).digest()
        )
    if provider == "gitea":
        given = signature.removeprefix("sha256=")
    else:
        if not signature.startswith("sha256="):
            return False
        given = signature[len("sha256=") :]
    return hmac.compare_digest(given.lower().encode(), hmac_sha256_hex(secret, body).encode())


def verify(
    provider: Provider, headers: Mapping[str, str], body: bytes, secrets: Iterable[Secret]
) -> VerifiedBody | None:
    """The body as verified, if its signature matches one of `secrets`; None otherwise.

    Every secret is tried (no early exit), so the time taken says nothing
    about which one matched.
    """
    signature = signature_header(provider, headers)
    if not signature:
        return None
    signed_with = frozenset(
        secret.owner
        for secret in secrets
        if secret.value and _matches(provider, signature, secret.value, body)
    )
    if not signed_with:
        return None
    return VerifiedBody(provider=provider, body=body, signed_with=signed_with)


# --- payloads ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notice:
    """What a webhook says: its kind, the repository's URLs, the refs it moved.

    `refs` are full names (`refs/heads/main`, `refs/tags/v1`); empty means
    "any ref" (a generic notice without one).
    """

    kind: EventKind
    event: str
    repo_urls: tuple[str, ...] = ()
    refs: tuple[str, ...] = ()

    @property
    def repo_keys(self) -> frozenset[str]:
        return frozenset(repo_key(url) for url in self.repo_urls)


def event_name(provider: Provider, headers: Mapping[str, str]) -> str:
    """The provider's name for the event (`push`, `Push Hook`, `repo:push`...), or ""."""
    lowered = {name.lower(): value for name, value in headers.items()}
    header = {
        "github": "x-github-event",
        "gitlab": "x-gitlab-event",
        "gitea": "x-gitea-event",
        "bitbucket": "x-event-key",
        "generic": "x-wake-event",
    }[provider]
    value = lowered.get(header) or (
        lowered.get("x-forgejo-event", "") if provider == "gitea" else ""
    )
    return value.strip()


def parse(provider: Provider, headers: Mapping[str, str], body: bytes | VerifiedBody) -> Notice:
    """What the body says. Raises WebhookError naming the provider and what is missing.

    Accepts raw bytes so that the secrets to try can be chosen from the
    repositories a body claims to be about; nothing is acted on until
    `verify` has made a VerifiedBody of it.
    """
    raw = body.body if isinstance(body, VerifiedBody) else body
    event = event_name(provider, headers)
    document = _json(provider, headers, raw)
    match provider:
        case "github":
            return _github(event, document)
        case "gitlab":
            return _gitlab(event, document)
        case "gitea":
            return _gitea(event, document)
        case "bitbucket":
            return _bitbucket(event, document)
        case "generic":
            return _generic(event, document)
    raise WebhookError(f"unknown webhook provider {provider!r}")


def _json(provider: Provider, headers: Mapping[str, str], raw: bytes) -> dict:
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type", "").split(";")[0].strip().lower()
    text: str | bytes = raw
    if content_type == "application/x-www-form-urlencoded":
        # GitHub's "application/x-www-form-urlencoded" content type: payload=<json>.
        try:
            text = parse_qs(raw.decode(), strict_parsing=True)["payload"][0]
        except (UnicodeDecodeError, ValueError, KeyError):
            raise WebhookError(f"{provider} webhook: form body without a 'payload' field") from None
    try:
        document = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookError(f"{provider} webhook: body is not JSON: {exc}") from None
    except RecursionError:
        # `[[[[...` a few thousand deep exhausts the parser's recursion: a
        # client's mistake (400), not a crash of ours (500 and a traceback).
        raise WebhookError(
            f"{provider} webhook: JSON nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    if not isinstance(document, dict):
        raise WebhookError(f"{provider} webhook: body is not a JSON object")
    if _deeper_than(document, MAX_JSON_DEPTH):
        raise WebhookError(f"{provider} webhook: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return document


def _deeper_than(document: object, limit: int) -> bool:
    """True if `document` nests objects or arrays more than `limit` levels (without recursing)."""
    stack: list[tuple[object, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)
    return False


def _strings(*values: object) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def _object(document: dict, key: str) -> dict:
    value = document.get(key)
    return value if isinstance(value, dict) else {}


def _ref(provider: str, document: dict) -> tuple[str, ...]:
    ref = document.get("ref")
    if not isinstance(ref, str) or not ref:
        raise WebhookError(f"{provider} push without a 'ref'")
    return (ref,)


def _need_urls(provider: str, urls: tuple[str, ...]) -> tuple[str, ...]:
    if not urls:
        raise WebhookError(f"{provider} push names no repository URL")
    return urls


def _github(event: str, document: dict) -> Notice:
    if event == "ping":
        return Notice(kind="ping", event=event)
    if event != "push":
        return Notice(kind="other", event=event)
    repo = _object(document, "repository")
    urls = _strings(
        repo.get("clone_url"),
        repo.get("html_url"),
        repo.get("ssh_url"),
        repo.get("git_url"),
        repo.get("url"),
        repo.get("svn_url"),
    )
    return Notice(
        kind="push",
        event=event,
        repo_urls=_need_urls("github", urls),
        refs=_ref("github", document),
    )


def _gitlab(event: str, document: dict) -> Notice:
    kind = document.get("object_kind") or document.get("event_name")
    if event in ("Push Hook", "Tag Push Hook") or (
        event == "System Hook" and kind in ("push", "tag_push")
    ):
        project = _object(document, "project")
        repo = _object(document, "repository")
        urls = _strings(
            project.get("git_http_url"),
            project.get("git_ssh_url"),
            project.get("web_url"),
            project.get("http_url"),
            project.get("ssh_url"),
            repo.get("git_http_url"),
            repo.get("git_ssh_url"),
            repo.get("homepage"),
            repo.get("url"),
        )
        return Notice(
            kind="push",
            event=event,
            repo_urls=_need_urls("gitlab", urls),
            refs=_ref("gitlab", document),
        )
    if event == "System Hook" or not event:
        # GitLab's "Test" of a system hook, and the other system events.
        return Notice(kind="ping", event=event or "test")
    return Notice(kind="other", event=event)


def _gitea(event: str, document: dict) -> Notice:
    if event == "ping" or (not event and "hook" in document):
        return Notice(kind="ping", event=event or "ping")
    if event != "push":
        return Notice(kind="other", event=event)
    repo = _object(document, "repository")
    urls = _strings(repo.get("clone_url"), repo.get("html_url"), repo.get("ssh_url"))
    return Notice(
        kind="push", event=event, repo_urls=_need_urls("gitea", urls), refs=_ref("gitea", document)
    )


def _bitbucket(event: str, document: dict) -> Notice:
    if event == "diagnostics:ping":
        return Notice(kind="ping", event=event)
    if event != "repo:push":
        return Notice(kind="other", event=event)
    repo = _object(document, "repository")
    html = _object(_object(repo, "links"), "html").get("href")
    full_name = repo.get("full_name")
    urls: tuple[str, ...] = _strings(html)
    if isinstance(html, str) and isinstance(full_name, str) and full_name:
        host = urlsplit(html).hostname or "bitbucket.org"
        urls = _strings(*urls, f"https://{host}/{full_name}.git", f"git@{host}:{full_name}.git")
    refs: list[str] = []
    for change in _object(document, "push").get("changes") or []:
        if not isinstance(change, dict):
            continue
        # A deleted branch has no "new"; its apps then fail to resolve at the fetch.
        for side in ("new", "old"):
            target = change.get(side)
            if isinstance(target, dict) and isinstance(target.get("name"), str):
                prefix = "refs/tags/" if target.get("type") == "tag" else "refs/heads/"
                refs.append(prefix + target["name"])
                break
    if not refs:
        raise WebhookError("bitbucket push names no branch or tag in push.changes")
    return Notice(
        kind="push",
        event=event,
        repo_urls=_need_urls("bitbucket", urls),
        refs=tuple(dict.fromkeys(refs)),
    )


def _generic(event: str, document: dict) -> Notice:
    event = str(document.get("event") or event or "push")
    if event == "ping":
        return Notice(kind="ping", event=event)
    if event != "push":
        return Notice(kind="other", event=event)
    url = document.get("repo_url")
    if not isinstance(url, str) or not url:
        raise WebhookError("generic push without a 'repo_url' string")
    ref = document.get("ref")
    if ref is not None and (not isinstance(ref, str) or not ref):
        raise WebhookError("generic push: 'ref' must be a non-empty string")
    refs = (ref if ref.startswith("refs/") else f"refs/heads/{ref}",) if ref else ()
    return Notice(kind="push", event=event, repo_urls=(url,), refs=refs)


# --- which apps a push is for ----------------------------------------------------------


def ref_matches(app_ref: str, pushed: Iterable[str]) -> bool:
    """True if a push of `pushed` refs may move an app following `app_ref`.

    `main` follows `refs/heads/main` (and a tag `main`, as git's lookup would);
    `refs/...` only itself; an app pinned to a commit id never moves; `HEAD`
    (the default branch) any branch, since which one HEAD names is known only
    to a fetch, and a check of an unmoved HEAD detects nothing. No pushed
    refs means any ref.
    """
    pushed = tuple(pushed)
    if not pushed:
        return True
    if app_ref == "HEAD":
        return any(ref.startswith("refs/heads/") for ref in pushed)
    if re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", app_ref):
        return False
    wanted = (
        {app_ref}
        if app_ref.startswith("refs/")
        else {f"refs/heads/{app_ref}", f"refs/tags/{app_ref}"}
    )
    return any(ref in wanted for ref in pushed)


@dataclass(frozen=True, slots=True)
class Candidate:
    """An app a webhook might be for: its name, repository, ref, and the owner of its secret."""

    app: str
    repo_url: str
    ref: str
    secret_owner: str


@dataclass(frozen=True, slots=True)
class Triage:
    """Which apps to check for a verified push, and why the others are not."""

    to_check: tuple[str, ...]
    other_branch: tuple[str, ...]
    wrong_secret: tuple[str, ...]


def named_apps(notice: Notice, candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates whose repository the notice names (any ref)."""
    keys = notice.repo_keys
    return [c for c in candidates if repo_key(c.repo_url) in keys]


def triage(notice: Notice, verified: VerifiedBody, candidates: Iterable[Candidate]) -> Triage:
    """The apps a verified push triggers: repository named, ref pushed, signed with its secret."""
    to_check, other_branch, wrong_secret = [], [], []
    for candidate in named_apps(notice, candidates):
        if candidate.secret_owner not in verified.signed_with:
            wrong_secret.append(candidate.app)
        elif not ref_matches(candidate.ref, notice.refs):
            other_branch.append(candidate.app)
        else:
            to_check.append(candidate.app)
    return Triage(tuple(to_check), tuple(other_branch), tuple(wrong_secret))
