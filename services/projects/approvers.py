"""Who an approver ID names, checked. Pure.

An app's or project's `--approver` is one of

- `user:NAME` or `cli:NAME`: a person through the CLI (`cli:ana` is stored as
  `user:ana`, the identity the CLI signs as);
- `matrix:@user:server`, `slack:UID`, `mattermost:USERNAME`, `discord:USERID`,
  `teams:ID`: a person on a chat platform, as the notifier's key vouches for them;
- `token:NAME`: the holder of the console's API token NAME (`wake token create`),
  as the api's key vouches for them;
- `group:NAME`: every member of the group NAME of the notify file
  (`WAKE_NOTIFY_CONFIG`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_FORMS: dict[str, re.Pattern[str]] = {
    "user": re.compile(r"[^\s:]+"),
    "matrix": re.compile(r"@[^\s:]+:[^\s]+"),
    "slack": re.compile(r"[A-Z0-9]+"),
    "mattermost": re.compile(r"[a-z0-9._-]+"),
    "discord": re.compile(r"[0-9]+"),
    "teams": re.compile(r"[^\s]+"),
    # services/api/access.py: the names `wake token create` accepts
    "token": re.compile(r"[a-z0-9][a-z0-9._-]{0,62}"),
    "group": re.compile(r"[a-z0-9][a-z0-9._-]*"),
}

FORMS_HELP = (
    "matrix:@user:server, slack:UID, mattermost:USERNAME, discord:USERID, teams:ID, "
    "token:NAME, group:NAME or cli:USER"
)


class InvalidApprover(ValueError):
    """An approver ID of no known form; the message names it and the forms."""


def checked_approver(text: str) -> str:
    """`text` as stored: `cli:ana` becomes `user:ana`; InvalidApprover if it has no known form."""
    namespace, colon, rest = text.strip().partition(":")
    if namespace == "cli":
        namespace = "user"
    form = _FORMS.get(namespace)
    if not colon or form is None or not form.fullmatch(rest):
        raise InvalidApprover(f"approver {text!r} is not one of {FORMS_HELP}")
    return f"{namespace}:{rest}"


def group_name(approver: str) -> str | None:
    """NAME of `group:NAME`, else None."""
    namespace, _, rest = approver.partition(":")
    return rest if namespace == "group" else None


def member_of(
    actor: str, approvers: Iterable[str], groups: Mapping[str, Iterable[str]]
) -> str | None:
    """The entry of `approvers` that lets `actor` in (itself or a `group:NAME` holding it)."""
    for approver in approvers:
        if approver == actor:
            return approver
        name = group_name(approver)
        if name is not None and actor in groups.get(name, ()):
            return approver
    return None
