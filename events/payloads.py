"""Every event type's payload, as msgspec Structs.

Rules for changing this file (STYLE 4, docs later generated from the schema):
a new field has a default; a field's type never changes; a removed field is
only ever ignored; a type, once written to the log, stays here forever. When a
payload changes shape, bump its `schema_version` so readers can tell.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

import msgspec

Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]
CommitId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")]
Actor = str


class Payload(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=False):
    """Base of every payload. `event_type` is the envelope's `type`."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


# --- shared parts -------------------------------------------------------------


class ResourceRef(msgspec.Struct, frozen=True, kw_only=True):
    """One Kubernetes object, by identity. `namespace` is "" for cluster-scoped kinds."""

    api_version: str
    kind: str
    name: str
    namespace: str = ""

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


class IgnoreRule(msgspec.Struct, frozen=True, kw_only=True):
    """Differences to ignore, like Argo CD's ignoreDifferences."""

    json_pointers: list[str]
    kind: str = ""
    group: str = ""
    name: str = ""
    namespace: str = ""


class AppSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What an application is: where its desired state lives and where it goes."""

    repo_url: str
    path: str = "."
    ref: str = "main"
    namespace: str = "default"
    auto_sync: bool = True
    prune: bool = True
    self_heal: bool = False
    renderer: Literal["auto", "yaml", "kustomize", "jsonnet", "helm"] = "auto"
    renderer_options: dict[str, str] = {}
    destination_context: str = ""
    ignore_differences: list[IgnoreRule] = []
    health_timeout_seconds: float = 300.0
    # Jsonnet: external variables and top-level arguments (strings).
    jsonnet_ext_vars: dict[str, str] = {}
    jsonnet_tla: dict[str, str] = {}
    # Helm: values files inside the app path, and the release name ("" = the app name).
    helm_values: list[str] = []
    helm_release: str = ""
    # The name of a git credential (HTTPS token or SSH key) configured on the
    # services, never the secret itself: events are read by everyone.
    git_credential: str = ""
    # A file on the git-watcher holding this app's webhook secret ("" = the global one).
    webhook_secret_file: str = ""
    # Take over objects that exist already: another app's (its `wake.dev/app` label)
    # or nobody's. Without it such an object is a plan error (Argo CD's
    # SharedResourceWarning), and the plan is blocked.
    adopt: bool = False
    # Plan the destination namespace as a Namespace of the app when it does not
    # exist and the bundle has none (Argo CD's CreateNamespace=true).
    create_namespace: bool = False


class RenderedResource(msgspec.Struct, frozen=True, kw_only=True):
    """A resource of a rendered bundle: its identity, where it came from, its digest."""

    ref: ResourceRef
    digest: Sha256
    source: str = ""
    wave: int = 0


class ResourceChange(msgspec.Struct, frozen=True, kw_only=True):
    """What a plan does to one resource. Secret values are redacted in `diff`."""

    ref: ResourceRef
    action: Literal["create", "update", "unchanged", "prune"]
    diff: str = ""
    wave: int = 0
    # Why this change cannot be shown or made as planned (the API server
    # refused its dry run, a bad annotation); "" when there is nothing wrong.
    error: str = ""


class ResourceHealth(msgspec.Struct, frozen=True, kw_only=True):
    ref: ResourceRef
    status: Literal["Healthy", "Progressing", "Degraded", "Missing", "Suspended", "Unknown"]
    message: str = ""


class DriftedResource(msgspec.Struct, frozen=True, kw_only=True):
    ref: ResourceRef
    fields: list[str] = []
    deleted: bool = False


class ResourceError(msgspec.Struct, frozen=True, kw_only=True):
    """Why one resource of a plan cannot be applied: the API server's message, or Wake's."""

    ref: ResourceRef
    error: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.error}"


# --- applications ---------------------------------------------------------------


class ApplicationRegistered(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApplicationRegistered"
    spec: AppSpec


class ApplicationUpdated(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApplicationUpdated"
    spec: AppSpec
    changed: list[str] = []


class ApplicationRemoved(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApplicationRemoved"
    reason: str = ""


class SyncRequested(Payload, frozen=True, kw_only=True):
    """Check the app's source now; `resume` also ends a rollback's pin."""

    event_type: ClassVar[str] = "SyncRequested"
    resume: bool = False
    reason: str = ""


# --- the journey of a revision ------------------------------------------------------


class RevisionDetected(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "RevisionDetected"
    repo_url: str
    ref: str
    commit: CommitId
    parent: CommitId | None = None
    previous_commit: CommitId | None = None
    author: str = ""
    author_email: str = ""
    message: str = ""
    committed_at: datetime
    tree_id: str = ""
    trigger: Literal["poll", "webhook", "sync", "register"] = "poll"


class ManifestsRendered(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ManifestsRendered"
    commit: CommitId
    bundle_digest: Sha256
    bundle_size: int
    renderer: str
    resources: list[RenderedResource]


class RenderFailed(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "RenderFailed"
    commit: CommitId
    error: str
    file: str = ""
    line: int | None = None
    renderer: str = ""


class PlanCreated(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "PlanCreated"
    plan_id: str
    commit: CommitId
    bundle_digest: Sha256
    changes: list[ResourceChange]
    prune: list[ResourceRef] = []
    reason: Literal["revision", "rollback", "drift", "sync"] = "revision"
    rollback_of: str | None = None
    needs_approval: bool = False


class PlanSuperseded(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "PlanSuperseded"
    plan_id: str
    superseded_by: str


class ApprovalRequested(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApprovalRequested"
    plan_id: str
    summary: str = ""


class PlanApproved(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "PlanApproved"
    plan_id: str
    via: Literal["policy", "cli", "api", "chat"] = "policy"
    comment: str = ""


class PlanRejected(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "PlanRejected"
    plan_id: str
    reason: str
    via: Literal["cli", "api", "chat"] = "cli"


class ApplyStarted(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApplyStarted"
    apply_id: str
    plan_id: str
    commit: CommitId
    bundle_digest: Sha256
    rollback_of: str | None = None


class ResourceApplied(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ResourceApplied"
    apply_id: str
    ref: ResourceRef
    action: Literal["created", "configured", "unchanged", "pruned"]
    digest: str = ""


class ApplySucceeded(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApplySucceeded"
    apply_id: str
    plan_id: str
    commit: CommitId
    bundle_digest: Sha256
    inventory: list[ResourceRef]
    rollback_of: str | None = None


class ApplyFailed(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApplyFailed"
    apply_id: str
    plan_id: str
    error: str
    resource: ResourceRef | None = None
    status_code: int | None = None


class HealthChanged(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "HealthChanged"
    status: Literal["Healthy", "Progressing", "Degraded", "Missing", "Suspended", "Unknown"]
    resources: list[ResourceHealth] = []
    apply_id: str | None = None


class DriftDetected(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "DriftDetected"
    bundle_digest: Sha256
    resources: list[DriftedResource]
    self_heal: bool = False


class RollbackRequested(Payload, frozen=True, kw_only=True):
    """Roll the app back to `target`, a commit or an apply id.

    The requester resolves the target to the apply it means: `apply_id`,
    `commit` and `bundle_digest` of that ApplySucceeded, so the planner needs
    neither Git nor a search.
    """

    event_type: ClassVar[str] = "RollbackRequested"
    target: str
    reason: str = ""
    apply_id: str = ""
    commit: str = ""
    bundle_digest: str = ""


class PlanBlocked(Payload, frozen=True, kw_only=True):
    """The plan has resources that cannot be applied: nothing of it is applied.

    Appended with its PlanCreated instead of an approval or a request for one;
    the applier refuses the plan even if it is approved. A later plan (a new
    commit, a rollback) moves the app on.
    """

    event_type: ClassVar[str] = "PlanBlocked"
    plan_id: str
    errors: list[ResourceError]
    summary: str = ""


# --- notifications and the log itself ------------------------------------------------


class NotificationSent(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "NotificationSent"
    channel: str
    about_event_id: str
    about_type: str
    attempts: int = 1
    status_code: int | None = None


class NotificationFailed(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "NotificationFailed"
    channel: str
    about_event_id: str
    about_type: str
    attempts: int
    error: str


class EventRejected(Payload, frozen=True, kw_only=True):
    """A message on the log that a consumer could never handle.

    The message itself stays in the log at `stream_seq`; this records why it
    was skipped, so nothing is dropped silently.
    """

    event_type: ClassVar[str] = "EventRejected"
    stream_seq: int
    subject: str
    consumer: str
    error: str
    deliveries: int = 1
    rejected_event_id: str | None = None
    size: int = 0
    excerpt: str = ""


PAYLOAD_TYPES: tuple[type[Payload], ...] = (
    ApplicationRegistered,
    ApplicationUpdated,
    ApplicationRemoved,
    SyncRequested,
    RevisionDetected,
    ManifestsRendered,
    RenderFailed,
    PlanCreated,
    PlanSuperseded,
    ApprovalRequested,
    PlanApproved,
    PlanRejected,
    ApplyStarted,
    ResourceApplied,
    ApplySucceeded,
    ApplyFailed,
    HealthChanged,
    DriftDetected,
    RollbackRequested,
    NotificationSent,
    NotificationFailed,
    EventRejected,
    PlanBlocked,
)

BY_TYPE: dict[str, type[Payload]] = {cls.event_type: cls for cls in PAYLOAD_TYPES}
