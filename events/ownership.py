"""Who may append which event type, and which durable consumers each identity reads.

Pure data (STYLE 2): the NATS server's permissions (`services/wiring/permissions.py`)
are generated from it, and a signature check (issue 10 item 2: a signer must
be entitled to the event type it signs) can reuse it. Derived from the code:
each service's list is what its shell appends (grep `log.append` under
`services/<service>/`), plus EventRejected, which every reader of the log appends
for a message it can never handle (`EventLog.skip`, `services/wiring/consumers.reject`).

Identities:

- one per service (`git-watcher`, `renderer`, `planner`, `applier`, `notifier`,
  `projector`, `api`); the api's signing key vouches for the `token` namespace, so the
  commands it appends for a person carry `token:<name>` as their actor;
- `operator`: a person through the CLI (and, later, the API or chat): commands
  as events -- register, update and remove apps and projects, sync, approve or
  reject a plan, roll back;
- `admin`: provisions the stream, the object store and the durable consumers;
  may do anything, and is used by nothing that runs all the time.
"""

from __future__ import annotations

from types import MappingProxyType

ADMIN = "admin"
OPERATOR = "operator"

# Namespaces of actors a gateway's key may vouch for (events/signing.py): the
# people of a chat platform or the API's tokens. Not `service`, `user` or
# `admin`: those are identities with keys of their own, never spoken for.
VOUCHABLE: frozenset[str] = frozenset(
    ("matrix", "slack", "mattermost", "discord", "teams", "token")
)


def vouched_namespace(actor: str) -> str | None:
    """The namespace of `actor` (`slack` of `slack:U123`) if a gateway may vouch for
    it, else None. The rest after the colon must not be empty."""
    namespace, colon, rest = actor.partition(":")
    if colon and rest and namespace in VOUCHABLE:
        return namespace
    return None


SERVICES: tuple[str, ...] = (
    "git-watcher",
    "renderer",
    "planner",
    "applier",
    "notifier",
    "projector",
    "api",
)

IDENTITIES: tuple[str, ...] = (*SERVICES, OPERATOR, ADMIN)

# Every consumer of the log records a message it can never handle.
_REJECTS = ("EventRejected",)

PUBLISHES: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "git-watcher": frozenset(
            ("RevisionDetected", "SourceFailed", "SourceRecovered", *_REJECTS)
        ),
        "renderer": frozenset(("ManifestsRendered", "RenderFailed", *_REJECTS)),
        "planner": frozenset(
            (
                "PlanCreated",
                "PlanSuperseded",
                # Auto-sync policy approves on its own (`planner/policy.py`, via="policy").
                "PlanApproved",
                "ApprovalRequested",
                "PlanBlocked",
                # The verdict on a person's approval (`planner/approving.py`).
                "ApprovalAccepted",
                "ApprovalRefused",
                *_REJECTS,
            )
        ),
        "applier": frozenset(
            (
                "ApplyStarted",
                "ResourceApplied",
                "ApplySucceeded",
                "ApplyFailed",
                "HealthChanged",
                "DriftDetected",
                "WaveWaiting",
                "WaveCompleted",
                "HookFinished",
                "HookDeleted",
                "ApplyRetryScheduled",
                "ResourceDeleted",
                *_REJECTS,
            )
        ),
        "notifier": frozenset(
            (
                "NotificationSent",
                "NotificationFailed",
                # Commands from chat (`notifier/chatops.py`), signed by the notifier's
                # key for the person it vouches for (`matrix:@ana:example.org`), and
                # the refusals of those it did not carry out.
                "PlanApproved",
                "PlanRejected",
                "RollbackRequested",
                "SyncRequested",
                "ChatCommandRefused",
                *_REJECTS,
            )
        ),
        # The projector only reads (it folds the log into PostgreSQL), and records
        # what it had to skip.
        "projector": frozenset(_REJECTS),
        # The console and REST API (`services/api/`): the commands a token's holder gives.
        "api": frozenset(
            (
                "ApplicationRegistered",
                "ApplicationUpdated",
                "ApplicationRemoved",
                "SyncRequested",
                "PlanApproved",
                "PlanRejected",
                "RollbackRequested",
                *_REJECTS,
            )
        ),
        OPERATOR: frozenset(
            (
                # API tokens are made and revoked by a person at the CLI (`wake token`).
                "TokenCreated",
                "TokenRevoked",
                "ApplicationRegistered",
                "ApplicationUpdated",
                "ApplicationRemoved",
                "SyncRequested",
                "PlanApproved",
                "PlanRejected",
                "RollbackRequested",
                "ProjectCreated",
                "ProjectUpdated",
                "ProjectRemoved",
                # what a command's read of the log had to skip (`wake events tail`)
                *_REJECTS,
            )
        ),
    }
)
"""Event types each identity may append (the admin: all of them)."""

CONSUMERS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "git-watcher": ("git-watcher-sync",),
        "renderer": ("renderer",),
        "planner": ("planner",),
        "applier": ("applier",),
        "notifier": ("notifier",),
        "projector": (),
        "api": (),
        OPERATOR: (),
    }
)
"""The durable consumers (base names) each identity pulls from and acknowledges."""

BUNDLE_WRITERS: frozenset[str] = frozenset(("renderer",))
# The CLI reads bundles for `wake rollback` (its diff) and `wake replay`.
BUNDLE_READERS: frozenset[str] = frozenset(("planner", "applier", OPERATOR))

# Who reads the span store back (`wake trace`, the console's trace viewer).
SPAN_READERS: frozenset[str] = frozenset((OPERATOR, "api"))

# Namespaces each service's signing key vouches for (events/signing.py): the
# console's api signs for its tokens (`token:ci-bot`); the notifier carries out
# commands given in chat and signs them for the person the platform
# authenticated (`matrix:@ana:example.org`).
VOUCHES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "api": ("token",),
        "notifier": ("matrix", "slack", "mattermost", "discord", "teams"),
    }
)

LEASES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        # which replica polls which partition of the apps
        "git-watcher": ("git-watcher-poll",),
        # which replica folds the log (one at a time)
        "projector": ("projector",),
    }
)
"""Lease names (keys `<name>.>` of the WAKE_LEASES bucket) each identity may hold, besides
its replicas' slots (`slot.<identity>.>`), which every service may hold."""


def entitled(identity: str, event_type: str) -> bool:
    """Whether `identity` may append an event of `event_type`."""
    if identity == ADMIN:
        return True
    return event_type in PUBLISHES.get(identity, frozenset())


def owners(event_type: str) -> frozenset[str]:
    """The identities (besides the admin) that may append `event_type`."""
    return frozenset(who for who, types in PUBLISHES.items() if event_type in types)


def durable_consumers() -> tuple[str, ...]:
    """Every durable consumer's base name, in the order of SERVICES."""
    return tuple(name for who in SERVICES for name in CONSUMERS[who])
