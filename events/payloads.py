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
    # A render with no resources is a RenderFailed unless the app says it may be empty.
    allow_empty: bool = False
    # Jsonnet: ext vars and top-level arguments given as jsonnet code (Argo CD's
    # `code: true`): `replicas=3` is the number 3, not the string "3".
    jsonnet_ext_code: dict[str, str] = {}
    jsonnet_tla_code: dict[str, str] = {}
    # A failed apply is tried again up to `retry_limit` times (0: never), after
    # `retry_backoff_seconds`, multiplied by `retry_backoff_factor` at each retry
    # and capped at `retry_max_backoff_seconds`: Argo CD's retry limit, backoff
    # duration, factor and maxDuration, with its defaults.
    retry_limit: int = 5
    retry_backoff_seconds: float = 5.0
    retry_backoff_factor: float = 2.0
    retry_max_backoff_seconds: float = 180.0
    # Take over objects that exist already: another app's (its `wake.dev/app` label)
    # or nobody's. Without it such an object is a plan error (Argo CD's
    # SharedResourceWarning), and the plan is blocked.
    adopt: bool = False
    # Plan the destination namespace as a Namespace of the app when it does not
    # exist and the bundle has none (Argo CD's CreateNamespace=true).
    create_namespace: bool = False
    # The project that bounds what the app may touch ("" = the built-in
    # `default` project: the app's own destination namespace only).
    project: str = ""
    # Who may approve the app's plans (an event's `actor`, e.g. "user:ana"),
    # besides its project's approvers; none anywhere: any operator may.
    approvers: list[str] = []
    # Refuse an approval by the author of the commit the plan is for.
    separate_approver: bool = False


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
    # A hook's phases as the plan runs it ("PreSync", "PreSync,PostSync"): a hook
    # is created afresh at every sync and is not part of the inventory; "" for
    # an ordinary resource.
    hook: str = ""
    # The live object's resourceVersion when the plan was made ("" if none was
    # live): the applier tells `configured` from `unchanged` by comparing it with
    # what its apply returns, without reading the object again.
    resource_version: str = ""


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
    """Wake stops managing the app; with `cascade`, the applier deletes what it applied."""

    event_type: ClassVar[str] = "ApplicationRemoved"
    reason: str = ""
    cascade: bool = False


class SyncRequested(Payload, frozen=True, kw_only=True):
    """Check the app's source now; `resume` also ends a rollback's pin."""

    event_type: ClassVar[str] = "SyncRequested"
    resume: bool = False
    reason: str = ""


class SourceFailed(Payload, frozen=True, kw_only=True):
    """git-watcher cannot read the app's source: the repository, its ref or its path.

    Appended once per distinct failure (not per poll); it stands until a
    SourceRecovered. `repo_url` never carries credentials. `stage` says what
    failed: the fetch (repository gone, credential refused), the ref (a
    branch deleted) or the path.
    """

    event_type: ClassVar[str] = "SourceFailed"
    repo_url: str
    ref: str
    error: str
    stage: Literal["fetch", "ref", "path"] = "fetch"
    path: str = ""


class SourceRecovered(Payload, frozen=True, kw_only=True):
    """The app's source, failing since SourceFailed `failed_event_id`, reads again."""

    event_type: ClassVar[str] = "SourceRecovered"
    repo_url: str
    ref: str
    commit: str = ""
    failed_event_id: str = ""


# --- projects ---------------------------------------------------------------------


class ProjectSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What the apps of a project may touch (Argo CD's AppProject).

    Globs are fnmatch patterns (`*`, `?`, `[...]`). `sources`: repository URLs
    its apps may follow. `destinations`: `CONTEXT/NAMESPACE_GLOB` (an empty
    CONTEXT is the services' default context). `kinds`: the namespaced
    `GROUP/KIND`s allowed ([]: every one); `cluster_kinds`: the cluster-scoped
    ones allowed ([]: none; a Namespace is allowed by its name, when the
    destinations allow deploying into it). `credentials`: the git credentials
    its apps may name. `approvers`: who may approve its apps' plans.
    """

    sources: list[str] = []
    destinations: list[str] = []
    kinds: list[str] = []
    cluster_kinds: list[str] = []
    credentials: list[str] = []
    approvers: list[str] = []
    separate_approver: bool = False
    description: str = ""


class TokenCreated(Payload, frozen=True, kw_only=True):
    """An API token (`wake token create`): the console and the REST API accept it as
    `token:<name>` with `role` (viewer, approver, admin) over the apps matching the
    glob `apps`. Only the SHA-256 of the token is recorded, never the token; filed
    under the app token `_wake`."""

    event_type: ClassVar[str] = "TokenCreated"
    name: str
    role: Literal["viewer", "approver", "admin"]
    apps: str = "*"
    digest: Sha256


class TokenRevoked(Payload, frozen=True, kw_only=True):
    """An API token no longer opens anything (its sessions end too)."""

    event_type: ClassVar[str] = "TokenRevoked"
    name: str
    reason: str = ""


class ProjectCreated(Payload, frozen=True, kw_only=True):
    """A project is defined. Project events are filed under the app token `_wake`."""

    event_type: ClassVar[str] = "ProjectCreated"
    name: str
    spec: ProjectSpec


class ProjectUpdated(Payload, frozen=True, kw_only=True):
    """A project's rules changed: every app in it is checked again."""

    event_type: ClassVar[str] = "ProjectUpdated"
    name: str
    spec: ProjectSpec
    changed: list[str] = []


class ProjectRemoved(Payload, frozen=True, kw_only=True):
    """A project no app uses any more is gone."""

    event_type: ClassVar[str] = "ProjectRemoved"
    name: str
    reason: str = ""


# --- the journey of a revision ---------------------------------------------------


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
    # What the render read: repository-relative POSIX paths, a folder meaning
    # everything under it. git-watcher detects the next commit that changes
    # any of them (an overlay's bases too); [] (a render from before this
    # field, or one that cannot tell) makes it detect every new commit.
    inputs: list[str] = []
    # Set when this render's resources equal, byte for byte, those of the
    # app's bundle applied at this commit, the app being synced there and
    # the revision found by a poll or a webhook: the app's revision moves to
    # `commit` and nothing is planned (see services/renderer/unchanged.py).
    unchanged_from: CommitId | None = None


class RenderFailed(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "RenderFailed"
    commit: CommitId
    # The message alone: where it happened is in `file` and `line`.
    error: str
    file: str = ""
    line: int | None = None
    renderer: str = ""

    @property
    def location(self) -> str:
        """`file:line`, `file`, or "" when the failure is not in a file."""
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    @property
    def reason(self) -> str:
        """The error without its location.

        Renderers before issue 8 also put `file:line: ` in front of `error`;
        it is cut here so no summary names the file twice.
        """
        where = self.location
        for prefix in (f"{where}: ", f"{self.file}: "):
            if self.file and self.error.startswith(prefix):
                return self.error[len(prefix) :]
        return self.error


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
    # Where the desired state this plan carries entered the app's history: the
    # stream sequence of its RevisionDetected (reason "revision"), of the
    # RollbackRequested (reason "rollback"). Plans are ordered by it, never by
    # their own place in the log (a plan appended late is not newer). 0 in plans
    # from before this field and in self-heal plans: their PlanCreated's own
    # sequence stands in.
    desired_seq: int = 0


class PlanSuperseded(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "PlanSuperseded"
    plan_id: str
    superseded_by: str
    # Set when a revision is superseded before it was ever planned: `plan_id`
    # is then the id its plan would have had (no PlanCreated carries it), and
    # `commit` the revision a newer plan (`superseded_by`) made moot.
    commit: str = ""


class ApprovalRequested(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApprovalRequested"
    plan_id: str
    summary: str = ""


class PlanApproved(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "PlanApproved"
    plan_id: str
    via: Literal["policy", "cli", "api", "chat"] = "policy"
    comment: str = ""
    # From chat (via "chat"): the person's display name on the platform, the
    # notify file's channel and the platform's id of the message that approved
    # (the actor, `matrix:@ana:example.org`, is who).
    display_name: str = ""
    channel: str = ""
    message_ref: str = ""


class ApprovalAccepted(Payload, frozen=True, kw_only=True):
    """The planner checked a person's PlanApproved (`approval_id`): the applier may apply it.

    `approver` is the approval's actor; `reason` says which rule let it through.
    """

    event_type: ClassVar[str] = "ApprovalAccepted"
    plan_id: str
    approval_id: str
    approver: str
    reason: str = ""


class ApprovalRefused(Payload, frozen=True, kw_only=True):
    """The planner refused a person's PlanApproved: it is never applied.

    Who (`approver`, the approval's actor), what (`plan_id`, `approval_id`)
    and why (`reason`: not an approver of the app or its project, or the
    commit's own author under `separate_approver`).
    """

    event_type: ClassVar[str] = "ApprovalRefused"
    plan_id: str
    approval_id: str
    approver: str
    reason: str


class PlanRejected(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "PlanRejected"
    plan_id: str
    reason: str
    via: Literal["cli", "api", "chat"] = "cli"
    # From chat: as in PlanApproved.
    display_name: str = ""
    channel: str = ""
    message_ref: str = ""


class ApplyStarted(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApplyStarted"
    apply_id: str
    plan_id: str
    commit: CommitId
    bundle_digest: Sha256
    rollback_of: str | None = None
    # 1 for the approval's own apply, 2 for its first retry, ...
    attempt: int = 1


class ResourceApplied(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ResourceApplied"
    apply_id: str
    ref: ResourceRef
    action: Literal["created", "configured", "unchanged", "pruned"]
    digest: str = ""
    # The wave it was applied in, and for a hook the phase it ran in ("" for
    # an ordinary resource, which always goes in the Sync phase).
    wave: int = 0
    hook: str = ""


class ApplySucceeded(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApplySucceeded"
    apply_id: str
    plan_id: str
    commit: CommitId
    bundle_digest: Sha256
    inventory: list[ResourceRef]
    rollback_of: str | None = None
    attempt: int = 1


class ApplyFailed(Payload, frozen=True, kw_only=True):
    event_type: ClassVar[str] = "ApplyFailed"
    apply_id: str
    plan_id: str
    error: str
    resource: ResourceRef | None = None
    status_code: int | None = None
    attempt: int = 1
    # When the next try is due (an ApplyRetryScheduled follows); None: no
    # further try, the app waits for a new commit or `wake sync`.
    retry_at: datetime | None = None


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


class WaveWaiting(Payload, frozen=True, kw_only=True):
    """A wave of an apply is in, and the next waits until these resources are healthy."""

    event_type: ClassVar[str] = "WaveWaiting"
    apply_id: str
    phase: str
    wave: int
    waiting_for: list[ResourceHealth]


class WaveCompleted(Payload, frozen=True, kw_only=True):
    """A wave of a sync phase is done: applied, its hooks complete, and healthy if `waited`.

    The last wave of an apply is not waited on (the app's health watch
    judges it); every earlier one is.
    """

    event_type: ClassVar[str] = "WaveCompleted"
    apply_id: str
    phase: str
    wave: int
    resources: list[ResourceRef] = []
    hooks: list[ResourceRef] = []
    waited: bool = False


class HookFinished(Payload, frozen=True, kw_only=True):
    """A hook of an apply completed (a Job or Pod succeeded or failed; another kind healthy)."""

    event_type: ClassVar[str] = "HookFinished"
    apply_id: str
    ref: ResourceRef
    phase: str
    wave: int = 0
    status: Literal["Succeeded", "Failed"]
    message: str = ""


class HookDeleted(Payload, frozen=True, kw_only=True):
    """A hook deleted by its delete policy: BeforeHookCreation, HookSucceeded or HookFailed."""

    event_type: ClassVar[str] = "HookDeleted"
    apply_id: str
    ref: ResourceRef
    phase: str
    policy: str


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
    # On a chat channel: the platform's id of the message sent, and of the
    # first message of the journey's thread (the same for that first one). A
    # restarted notifier continues each journey's thread from these.
    message_id: str = ""
    thread_id: str = ""


class ChatCommandRefused(Payload, frozen=True, kw_only=True):
    """A command given in chat that Wake did not carry out: who, what, why.

    `requester` is the person as the platform names them (`matrix:@bob:example.org`),
    `command` what they asked (`approve 01a2164a`), `reason` why not (not an
    approver, an unknown or superseded plan, a replayed request, ...); `message_ref`
    the platform's id of their message. Appended by the notifier, under the app
    the command is about (`_wake` when it names none that exists).
    """

    event_type: ClassVar[str] = "ChatCommandRefused"
    requester: str
    command: str
    reason: str
    display_name: str = ""
    channel: str = ""
    message_ref: str = ""
    plan_id: str = ""


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


class ApplyRetryScheduled(Payload, frozen=True, kw_only=True):
    """The failed apply `after_apply_id` of plan `plan_id` is tried again at `due_at`.

    `attempt` is the number the retry's ApplyStarted will carry (2 for the
    first retry); `approval_id` is the PlanApproved being retried.
    """

    event_type: ClassVar[str] = "ApplyRetryScheduled"
    plan_id: str
    after_apply_id: str
    attempt: int
    due_at: datetime
    delay_seconds: float
    approval_id: str = ""


class ResourceDeleted(Payload, frozen=True, kw_only=True):
    """`wake app remove --cascade`: one object of the app's last inventory, deleted or kept.

    `removal_id` is the ApplicationRemoved's event id; `reason` says why a kept
    object was left (a protected namespace, someone else's labels, already gone).
    """

    event_type: ClassVar[str] = "ResourceDeleted"
    removal_id: str
    ref: ResourceRef
    action: Literal["deleted", "kept"] = "deleted"
    reason: str = ""


class KeyRegistered(Payload, frozen=True, kw_only=True):
    """A signing key is registered: events signed by it are `identity`'s, entitled as `role`.

    Appended on the system app (`_wake`) and signed by the admin key, the trust
    anchor (`admin_public_key`); readers verify every other event against the
    keys registered so (events/signing.py). `role` is an identity of
    events/ownership.py: a service's name, `operator` for a person, `admin`.
    """

    event_type: ClassVar[str] = "KeyRegistered"
    key_id: str
    identity: str
    role: str
    # Ed25519 public key, base64 of its 32 raw bytes; `key_id` is derived from it.
    public_key: str
    # Namespaces of actors it signs for (a gateway: `matrix` lets it append events
    # whose actor is `matrix:@ana:example.org`), beside its own identity.
    # See events/ownership.py VOUCHABLE.
    vouches_for: list[str] = []


class KeyRevoked(Payload, frozen=True, kw_only=True):
    """A signing key is revoked: events it signs after this one are refused.

    Events it signed before (lower stream sequences) stay valid, so a rotation
    (register the new key, revoke the old) keeps the history verifiable.
    """

    event_type: ClassVar[str] = "KeyRevoked"
    key_id: str
    identity: str = ""
    reason: str = ""


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
    ApplyRetryScheduled,
    ResourceDeleted,
    SourceFailed,
    SourceRecovered,
    WaveWaiting,
    WaveCompleted,
    HookFinished,
    HookDeleted,
    PlanBlocked,
    ProjectCreated,
    ProjectUpdated,
    ProjectRemoved,
    ApprovalAccepted,
    ApprovalRefused,
    KeyRegistered,
    KeyRevoked,
    TokenCreated,
    TokenRevoked,
    ChatCommandRefused,
)

BY_TYPE: dict[str, type[Payload]] = {cls.event_type: cls for cls in PAYLOAD_TYPES}
