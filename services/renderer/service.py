"""The renderer's shell: RevisionDetected -> bundle + ManifestsRendered | RenderFailed.

Durable consumer `renderer`. For each revision: the app's spec from the log,
the commit from the renderer's own mirror (fetched only when missing), the
app's files read from the commit's tree (never a worktree), the pure render,
the bundle stored under its digest, then the outcome appended, derived from
the RevisionDetected (redelivery re-derives the same id: stored once).

Each ManifestsRendered lists the repository paths the render read (`inputs`,
what git-watcher compares between commits), and for a revision found by a
poll or a webhook whose resources equal the applied bundle, the commit it is
unchanged from (`unchanged.py`): the planner plans nothing for it.

A revision that cannot render (bad YAML, a symlink out of the app or the
repository, a refused kustomization, a jsonnet error, a missing helm, a cap
exceeded, a commit gone from the repository) is a RenderFailed naming the
renderer, the file and the line. A repository that cannot be reached is not the
revision's fault: the handler raises and the consumer retries with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

from events import names
from events.bundle import digest as bundle_digest
from events.bundle import ref_of, resource_digest
from events.envelope import Envelope
from events.payloads import (
    ApplySucceeded,
    AppSpec,
    DriftDetected,
    ManifestsRendered,
    PlanCreated,
    RenderedResource,
    RenderFailed,
    RevisionDetected,
)
from services.catalog.following import Follower
from services.catalog.lookup import app_spec
from services.projects.book import PROJECT_TYPES, Projects
from services.projects.rules import credential_error, project_of, source_error
from services.renderer import selection, unchanged
from services.renderer.rendering import Rendered, render_app
from services.wiring import metrics
from services.wiring.consumers import ConsumerSettings, serve_consumer
from services.wiring.eventlog import EventLog, StoredEvent, checked_bytes
from services.wiring.git import (
    CommitNotFound,
    CredentialError,
    GitCredentials,
    InvalidRepoPath,
    Mirrors,
    RepoPath,
    normalize_url,
    redact,
)
from services.wiring.runtime import ServiceContext
from services.wiring.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

SERVICE = "renderer"
CONSUMER = ConsumerSettings(
    name="renderer", subjects=[names.type_subjects(RevisionDetected.event_type)]
)


async def main(ctx: ServiceContext) -> None:
    """Render every detected revision until `ctx.stop`."""
    mirrors = Mirrors(
        ctx.settings.data_path / SERVICE / "mirrors",
        credentials=GitCredentials.from_settings(ctx.settings),
    )
    # Every app's spec and standing, and every project, folded once by one
    # follower of the log: a render reads neither from the log (seven direct
    # gets per render before), and a revision is fetched only with a source and
    # credential its app's project allows (git-watcher checked them when it
    # detected it; a project may have changed since).
    projects = Projects()

    def fold(state: unchanged.Followed, seq: int, event: Envelope) -> None:
        if event.type in PROJECT_TYPES:
            projects.add(seq, event)
        else:
            state.add(seq, event)

    followed: Follower[unchanged.Followed] = Follower(
        ctx.log,
        (*unchanged.FOLLOWED_TYPES, *PROJECT_TYPES),
        new_state=unchanged.Followed,
        fold=fold,
        name=f"{ctx.name} apps",
        passing=(RevisionDetected.event_type,),
    )

    async def handle(stored: StoredEvent) -> None:
        await handle_revision(ctx, mirrors, stored, projects=projects, followed=followed)

    async with followed:
        await serve_consumer(ctx, CONSUMER, handle)


async def handle_revision(
    ctx: ServiceContext,
    mirrors: Mirrors,
    stored: StoredEvent,
    *,
    projects: Projects | None = None,
    followed: Follower[unchanged.Followed] | None = None,
) -> None:
    """Render one RevisionDetected and append its outcome; idempotent.

    `followed`: the apps' specs and standings, followed (else read from the log);
    `projects`: the projects its follower folds (else not checked here).
    """
    event = stored.event
    revision = event.payload
    if not isinstance(revision, RevisionDetected):
        log.warning(
            "event %s on %s is not a RevisionDetected: ignored", event.event_id, stored.subject
        )
        return
    state = None
    if followed is not None:
        # Never decide on a state that has not seen everything before this event.
        state = await followed.at_least(stored.seq, event.app)
        spec = state.spec
    else:
        spec = await app_spec(ctx.log, event.app)
    if spec is None:
        log.warning(
            "RevisionDetected %s for app %s, which is not registered (any more): not rendered",
            event.event_id,
            event.app,
        )
        return
    outside = ""
    if projects is not None:
        # Folded at least up to this event: `followed.at_least` above.
        project = project_of(spec, projects.specs, system_namespace=ctx.settings.system_namespace)
        outside = source_error(
            redact(revision.repo_url), project, normalized=normalize_url(revision.repo_url)
        ) or credential_error(spec.git_credential, project)
    if outside:
        outcome: Rendered | RenderFailed = RenderFailed(
            commit=revision.commit, error=outside, renderer=spec.renderer
        )
    else:
        outcome = await render_revision(
            mirrors, app=event.app, spec=spec, revision=revision, settings=ctx.settings
        )
    if isinstance(outcome, RenderFailed):
        log.warning(
            "app %s: render of %s failed%s: %s",
            event.app,
            revision.commit[:12],
            f" in {outcome.location}" if outcome.location else "",
            outcome.reason,
        )
        await ctx.log.append(ctx.derive(outcome, cause=event))
        return
    digest = bundle_digest(outcome.data)
    resources = [
        RenderedResource(
            ref=ref_of(item.resource),
            digest=resource_digest(item.resource),
            source=item.source,
        )
        for item in outcome.resources
    ]
    same_as = None
    if revision.trigger in ("poll", "webhook"):
        same_as = unchanged.unchanged_from(
            trigger=revision.trigger,
            resources=resources,
            standing=state.standing()
            if state is not None
            else await standing_of(ctx.log, event.app),
        )
    payload = ManifestsRendered(
        commit=revision.commit,
        bundle_digest=digest,
        bundle_size=len(outcome.data),
        renderer=outcome.renderer,
        resources=resources,
        inputs=list(outcome.inputs),
        unchanged_from=same_as,
    )
    rendered = ctx.derive(payload, cause=event)
    size, limit = len(checked_bytes(rendered)), ctx.log.message_limit()
    if size > limit:
        # Appending it would fail on every redelivery for ten minutes, then
        # nothing: say so once, as the render's outcome.
        failed = RenderFailed(
            commit=revision.commit,
            error=(
                f"the ManifestsRendered event of {len(resources)} resources is {size} bytes, "
                f"over the log's message limit of {limit} bytes (NATS max_payload): "
                "split the app into smaller ones"
            ),
            renderer=outcome.renderer,
        )
        log.warning(
            "app %s: render of %s failed: %s", event.app, revision.commit[:12], failed.error
        )
        await ctx.log.append(ctx.derive(failed, cause=event))
        return
    # The bundle first: an event must never name a bundle that is not stored.
    await ctx.log.put_bundle(outcome.data)
    await ctx.log.append(rendered)
    log.info(
        "app %s: rendered %s: %d resources, bundle %s%s",
        event.app,
        revision.commit[:12],
        len(outcome.resources),
        digest[:12],
        f", unchanged from {same_as[:12]} (synced there): nothing to plan" if same_as else "",
    )


async def standing_of(event_log: EventLog, app: str) -> unchanged.Standing:
    """Where `app` stands, from the last event of each type `unchanged` looks at.

    The four reads go out at once: one round trip per render, not four.
    """
    types = (
        ManifestsRendered.event_type,
        ApplySucceeded.event_type,
        PlanCreated.event_type,
        DriftDetected.event_type,
    )
    found = await asyncio.gather(*(event_log.last_event(app, t) for t in types))
    last = dict(zip(types, found, strict=True))
    rendered = last[ManifestsRendered.event_type]
    applied = last[ApplySucceeded.event_type]
    planned = last[PlanCreated.event_type]
    drift = last[DriftDetected.event_type]
    drift_payload = drift.event.payload if drift is not None else None
    return unchanged.Standing(
        last_render=_payload(rendered, ManifestsRendered),
        last_applied=_payload(applied, ApplySucceeded),
        last_plan_id=(
            planned.event.payload.plan_id
            if planned is not None and isinstance(planned.event.payload, PlanCreated)
            else None
        ),
        drifted=(
            isinstance(drift_payload, DriftDetected)
            and bool(drift_payload.resources)
            and (applied is None or drift.seq > applied.seq)
        ),
    )


def _payload(stored: StoredEvent | None, kind: type[T]) -> T | None:
    if stored is None or not isinstance(stored.event.payload, kind):
        return None
    return stored.event.payload


async def render_revision(
    mirrors: Mirrors,
    *,
    app: str,
    spec: AppSpec,
    revision: RevisionDetected,
    settings: Settings,
) -> Rendered | RenderFailed:
    """Render the app at the revision's commit, within the settings' caps.

    Raises RepoUnreachable when the commit is missing and the repository
    cannot be fetched (a retry may succeed); every other failure is a RenderFailed.
    """
    reason = selection.unavailable(spec.renderer)
    if reason is not None:
        return RenderFailed(commit=revision.commit, error=reason, renderer=spec.renderer)
    try:
        app_path = RepoPath.parse(spec.path)
    except InvalidRepoPath as exc:
        return RenderFailed(
            commit=revision.commit, error=str(exc), file=spec.path, renderer=spec.renderer
        )
    try:
        mirror = await mirrors.with_commit(
            revision.repo_url, revision.commit, credential=spec.git_credential
        )
    except (CommitNotFound, CredentialError) as exc:
        return RenderFailed(commit=revision.commit, error=str(exc), renderer=spec.renderer)
    # Rendering is CPU work and subprocesses: off the event loop, which keeps
    # the consumer's in-progress heartbeats going meanwhile.
    with metrics.timed(metrics.RENDER_SECONDS, kind=str(spec.renderer), outcome="ok") as labels:
        result = await asyncio.to_thread(
            render_app,
            mirror,
            app=app,
            spec=spec,
            revision=revision,
            app_path=app_path,
            settings=settings,
        )
        if isinstance(result, RenderFailed):
            labels["outcome"] = "failed"
    return result
