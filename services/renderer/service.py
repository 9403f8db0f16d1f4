"""The renderer's shell: RevisionDetected -> bundle + ManifestsRendered | RenderFailed.

Durable consumer `renderer`. For each revision: the app's spec from the log,
the commit from the renderer's own mirror (fetched only when missing), the
app's files read from the commit's tree (never a worktree), the pure render,
the bundle stored under its digest, then the outcome appended, derived from
the RevisionDetected (redelivery re-derives the same id: stored once).

A revision that cannot render (bad YAML, a symlink out of the app, an
unavailable renderer, a commit gone from the repository) is a RenderFailed
naming the file and line. A repository that cannot be reached is not the
revision's fault: the handler raises and the consumer retries with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from events import names
from events.bundle import Bundle, encode_bundle, ref_of, resource_digest
from events.payloads import (
    AppSpec,
    ManifestsRendered,
    RenderedResource,
    RenderFailed,
    RevisionDetected,
)
from services.catalog.lookup import app_spec
from services.renderer import selection
from services.renderer.manifests import RenderError, SourcedResource, render
from services.renderer.sources import read_app_files
from services.wiring.consumers import ConsumerSettings, consume, ensure_consumer
from services.wiring.eventlog import StoredEvent
from services.wiring.git import CommitNotFound, InvalidRepoPath, Mirror, Mirrors, RepoPath
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

SERVICE = "renderer"
CONSUMER = ConsumerSettings(
    name="renderer", subjects=[names.type_subjects(RevisionDetected.event_type)]
)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A successful render: the bundle's bytes and its resources, in canonical order."""

    renderer: str
    data: bytes
    resources: list[SourcedResource]


async def main(ctx: ServiceContext) -> None:
    """Render every detected revision until `ctx.stop`."""
    mirrors = Mirrors(ctx.settings.data_path / SERVICE / "mirrors")
    await ensure_consumer(ctx.log, CONSUMER)
    ctx.ready()

    async def handle(stored: StoredEvent) -> None:
        await handle_revision(ctx, mirrors, stored)

    await consume(ctx.log, CONSUMER, handle, stop=ctx.stop)


async def handle_revision(ctx: ServiceContext, mirrors: Mirrors, stored: StoredEvent) -> None:
    """Render one RevisionDetected and append its outcome; idempotent."""
    event = stored.event
    revision = event.payload
    if not isinstance(revision, RevisionDetected):
        log.warning(
            "event %s on %s is not a RevisionDetected: ignored", event.event_id, stored.subject
        )
        return
    spec = await app_spec(ctx.log, event.app)
    if spec is None:
        log.warning(
            "RevisionDetected %s for app %s, which is not registered (any more): not rendered",
            event.event_id,
            event.app,
        )
        return
    outcome = await render_revision(mirrors, app=event.app, spec=spec, revision=revision)
    if isinstance(outcome, RenderFailed):
        log.warning(
            "app %s: render of %s failed: %s", event.app, revision.commit[:12], outcome.error
        )
        await ctx.log.append(ctx.derive(outcome, cause=event))
        return
    # The bundle first: an event must never name a bundle that is not stored.
    digest = await ctx.log.put_bundle(outcome.data)
    payload = ManifestsRendered(
        commit=revision.commit,
        bundle_digest=digest,
        bundle_size=len(outcome.data),
        renderer=outcome.renderer,
        resources=[
            RenderedResource(
                ref=ref_of(item.resource),
                digest=resource_digest(item.resource),
                source=item.source,
            )
            for item in outcome.resources
        ],
    )
    await ctx.log.append(ctx.derive(payload, cause=event))
    log.info(
        "app %s: rendered %s: %d resources, bundle %s",
        event.app,
        revision.commit[:12],
        len(outcome.resources),
        digest[:12],
    )


async def render_revision(
    mirrors: Mirrors, *, app: str, spec: AppSpec, revision: RevisionDetected
) -> Rendered | RenderFailed:
    """Render the app at the revision's commit.

    Raises RepoUnreachable when the commit is missing and the repository
    cannot be fetched (a retry may succeed); every other failure is a RenderFailed.
    """
    reason = selection.unavailable(spec.renderer)
    if reason is not None:
        return RenderFailed(commit=revision.commit, error=reason, renderer=spec.renderer)
    try:
        app_path = RepoPath.parse(spec.path)
    except InvalidRepoPath as exc:
        return RenderFailed(commit=revision.commit, error=str(exc), file=spec.path, renderer="yaml")
    try:
        mirror = await mirrors.with_commit(revision.repo_url, revision.commit)
    except CommitNotFound as exc:
        return RenderFailed(commit=revision.commit, error=str(exc), renderer="yaml")
    try:
        # Parsing a large app is CPU work: off the event loop, which keeps
        # the consumer's in-progress heartbeats going meanwhile.
        return await asyncio.to_thread(
            _render_blocking, mirror, app=app, spec=spec, revision=revision, app_path=app_path
        )
    except RenderError as exc:
        return RenderFailed(
            commit=revision.commit, error=str(exc), file=exc.file, line=exc.line, renderer="yaml"
        )


def _render_blocking(
    mirror: Mirror, *, app: str, spec: AppSpec, revision: RevisionDetected, app_path: RepoPath
) -> Rendered:
    app_files = read_app_files(mirror.commit(revision.commit), app_path)
    renderer = selection.choose(spec.renderer, app_path=app_path, top_level=app_files.top_level)
    resources = render(app_files.files, namespace=spec.namespace)
    bundle = Bundle(
        app=app,
        repo_url=revision.repo_url,
        commit=revision.commit,
        path=str(app_path),
        renderer=renderer,
        resources=[item.resource for item in resources],
    )
    return Rendered(renderer=renderer, data=encode_bundle(bundle), resources=resources)
