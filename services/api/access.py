"""Who may do what through the console: tokens, roles, and the failed-login limit. Pure.

A token is `wake_` + 43 URL-safe characters (256 random bits): only its SHA-256
is recorded (TokenCreated), so the log and the read models hold nothing that
opens the API. With that much entropy a plain hash suffices (nothing to guess
a token from); a presented token is found by its digest and the stored digest
is compared in constant time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["viewer", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "approver", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
TOKEN_PREFIX = "wake_"
ACTOR_NAMESPACE = "token"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_TOKEN_RE = re.compile(r"^wake_[A-Za-z0-9_-]{43}$")


class InvalidTokenName(ValueError):
    pass


RESERVED_NAMES = frozenset(("console",))
"""`console` is the one-time login link's session (`token:console`), never a token's."""


def token_name(value: str) -> str:
    """`value` if it may name a token (it becomes the actor `token:<name>`)."""
    if value in RESERVED_NAMES:
        raise InvalidTokenName(f"token name {value!r} is reserved for the one-time login link")
    if not _NAME_RE.match(value):
        raise InvalidTokenName(
            f"invalid token name {value!r}: 1 to 63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """The SHA-256 (hex) of a token: what is recorded and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


def well_formed(token: str) -> bool:
    """Whether `token` could be one `new_token` made (cheap refusal before any lookup)."""
    return bool(_TOKEN_RE.match(token))


def matches(presented: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(presented), stored_digest)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: a token's name, its role and the apps it covers."""

    name: str
    role: Role
    apps: str = "*"

    @property
    def actor(self) -> str:
        return f"{ACTOR_NAMESPACE}:{self.name}"

    def at_least(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]

    def covers(self, app: str) -> bool:
        """Whether the token's app glob covers `app` (an admin's covers every app)."""
        return self.role == "admin" or fnmatch.fnmatchcase(app, self.apps)

    def may(self, role: Role, app: str | None = None) -> bool:
        """Whether this principal may act as `role` (on `app`, if the action has one).

        Reading needs a viewer (any token); approving, rejecting and syncing an
        approver whose glob covers the app; everything else an admin.
        """
        if not self.at_least(role):
            return False
        return app is None or role == "viewer" or self.covers(app)


@dataclass
class LoginLimiter:
    """Failed logins per client: more than `limit` in `window` seconds are refused until
    the oldest falls out of the window. A success does not reset it (a guesser who
    found nothing keeps the count)."""

    clock: Callable[[], float]
    limit: int = 10
    window: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, client: str) -> deque[float]:
        now = self.clock()
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def blocked(self, client: str) -> float:
        """Seconds until `client` may try again (0: it may now)."""
        failures = self._recent(client)
        if len(failures) < self.limit:
            return 0.0
        return max(0.0, failures[0] + self.window - self.clock())

    def failed(self, client: str) -> None:
        self._recent(client)
        self._failures.setdefault(client, deque()).append(self.clock())
        # Bounded memory under a spray of clients: forget the stalest first.
        if len(self._failures) > 10_000:
            self._failures.pop(next(iter(self._failures)))


def live_tokens(events: list[tuple[str, str]]) -> set[str]:
    """The names of the tokens not revoked, from (event type, token name) in log order."""
    live: set[str] = set()
    for event_type, name in events:
        if event_type == "TokenCreated":
            live.add(name)
        elif event_type == "TokenRevoked":
            live.discard(name)
    return live
