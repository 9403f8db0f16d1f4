"""Checking apps against their repositories: fetch once per repo, then decide per app.

The shell around `changes.detect`: it fetches each repository once however
many apps live in it (a monorepo), resolves every app's ref in the fresh
mirror, takes the app's last RevisionDetected (and, for a new commit, its last
render: what it read) from the history it follows (`history.py`), hands the
core lookups of both commits' trees, and appends what the core decides. The
apps of one repository are checked side by side (`CONCURRENT_CHECKS`): one
commit changing 1000 apps is 1000 appends, and one at a time they wait on
each other's round trip and fsync.

Before deciding, a check lets the followed history catch up with the log as
it is when the check starts (one direct read per followed type, not per
app), so a render appended just before is seen as a re-read would.

Appends are conditional on the app's last RevisionDetected: two watcher
replicas that resolved different commits cannot both extend the chain; the
loser's next check starts from the winner's event.

A source that cannot be read (the fetch fails, the ref or the path does not
resolve) is a SourceFailed on the app's log, once per distinct failure
(`failures.py` decides), and the next good read appends a SourceRecovered.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import nats.errors
import pygit2

from events import names
from events.envelope import new_event
from events.payloads import AppSpec, RevisionDetected, SourceFailed
from services.catalog.following import Follower
from services.catalog.registry import Application
from services.git_watcher.changes import (
    Detection,
    IdAt,
    LastDetection,
    Revision,
    Trigger,
    detect,
    nothing_new,
    render_inputs,
)
from services.git_watcher.failures import (
    OpenFailure,
    failure_due,
    open_failure,
    recovery_due,
)
from services.git_watcher.history import FOLLOWED_TYPES, AppHistory, fold
from services.projects.rules import Missing, Project, credential_error, source_error
from services.wiring import telemetry
from services.wiring.coalescing import NextRound
from services.wiring.eventlog import Appended, ConcurrencyConflict, EventLog
from services.wiring.git import (
    CommitNotFound,
    InvalidRepoPath,
    Mirror,
    Mirrors,
    RefNotFound,
    RepoPath,
    RepoUnreachable,
    normalize_url,
    redact,
    resolve,
)

log = logging.getLogger(__name__)

# Repositories fetched at once during a poll: enough to hide network latency,
# few enough not to open a connection to every repo of a large fleet at once.
CONCURRENT_FETCHES = 8

# Apps of one repository checked at once: enough to keep the log's appends
# pipelined (each waits on the server's fsync), few enough that a poll of
# 10,000 apps holds no more than this many events in flight.
CONCURRENT_CHECKS = 64


def next_delay(interval: float, rng: random.Random) -> float:
    """`interval` with +-10% jitter, so many watchers do not poll a forge in step."""
    return interval * rng.uniform(0.9, 1.1)


def revision_of(commit: pygit2.Commit, tree_id: str | None) -> Revision:
    """What the core needs to know about `commit` (committer time, with its offset)."""
    offset = timezone(timedelta(minutes=commit.commit_time_offset))
    author = commit.author
    return Revision(
        commit=str(commit.id),
        parent=str(commit.parent_ids[0]) if commit.parent_ids else None,
        tree_id=tree_id or "",
        author=author.name,
        author_email=author.email,
        message=commit.message,
        committed_at=datetime.fromtimestamp(commit.commit_time, UTC).astimezone(offset),
    )


class Snapshot:
    """A fetched mirror as one check of its repository reads it, each lookup made once.

    A monorepo's 1000 apps live side by side under one folder: looked up
    from the commit's root each time, that folder's tree (1000 entries) was
    parsed again for every app, about 1 ms apiece -- most of a poll's CPU.
    Here each (commit, path) is looked up once per check, and each ref
    resolved once. Valid while the mirror does not change: one check.
    """

    def __init__(self, mirror: Mirror, folders: Folders | None = None) -> None:
        self.mirror = mirror
        self._folders = folders if folders is not None else Folders()
        self._commits: dict[str, str | RefNotFound] = {}
        self._objects: dict[tuple[pygit2.Oid, tuple[str, ...]], pygit2.Object | None] = {}
        self._revisions: dict[str, Revision] = {}
        self._commit_objects: dict[str, pygit2.Commit] = {}

    def commit(self, commit_id: str) -> pygit2.Commit:
        """The commit (`Mirror.commit`): CommitNotFound if the mirror lacks it."""
        found = self._commit_objects.get(commit_id)
        if found is None:
            found = self._commit_objects[commit_id] = self.mirror.commit(commit_id)
        return found

    def resolve(self, ref: str) -> str:
        """The commit `ref` names (see `wiring.git.resolve`); RefNotFound if none."""
        found = self._commits.get(ref)
        if found is None:
            try:
                found = resolve(self.mirror, ref)
            except RefNotFound as exc:
                found = exc
            self._commits[ref] = found
        if isinstance(found, RefNotFound):
            raise found
        return found

    def object_at(self, commit: pygit2.Commit, parts: tuple[str, ...]) -> pygit2.Object | None:
        """The blob or tree at `parts` in `commit`, None if none; symlinks not followed."""
        if not parts:
            return commit.tree
        # The folders above are kept (shared by the apps beside each other), not
        # the object itself: 10,000 app folders need not stay parsed all at once.
        parent = self._folder(commit, parts[:-1])
        name = parts[-1]
        return parent[name] if isinstance(parent, pygit2.Tree) and name in parent else None

    def _folder(self, commit: pygit2.Commit, parts: tuple[str, ...]) -> pygit2.Object | None:
        key = (commit.id, parts)
        if key not in self._objects:
            self._objects[key] = self._folders.same(self.object_at(commit, parts))
        return self._objects[key]

    def revision(self, commit: pygit2.Commit, path: RepoPath) -> Revision:
        """`revision_of` the commit, with the id of the tree at `path` ("" if not a tree)."""
        base = self._revisions.get(str(commit.id))
        if base is None:
            base = self._revisions[str(commit.id)] = revision_of(commit, None)
        tree = self.object_at(commit, path.parts)
        tree_id = str(tree.id) if isinstance(tree, pygit2.Tree) else ""
        return dataclasses.replace(base, tree_id=tree_id)

    def ids_at(self, commit_id: str) -> IdAt | None:
        """The lookup path -> object id at `commit_id`; None if the mirror lacks the commit
        (a force-push and a gc took it: the decision is then in doubt and detects)."""
        try:
            commit = self.commit(commit_id)
        except CommitNotFound:
            return None

        def id_at(path: str) -> str:
            try:
                parts = RepoPath.parse(path).parts
            except InvalidRepoPath:
                return ""
            found = self.object_at(commit, parts)
            return str(found.id) if found is not None else ""

        return id_at


class Folders:
    """The folders snapshots looked into, by tree id, kept from one check to the next.

    pygit2 keeps ~60 bytes per entry looked up in a Tree object for as long as
    the process lives, and a fresh Tree object of the same folder costs them
    again: a poll of 10,000 apps under one folder grew the process by 0.6 MB.
    A folder that did not change is the same object poll after poll.
    """

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._trees: OrderedDict[pygit2.Oid, pygit2.Tree] = OrderedDict()

    def same(self, found: pygit2.Object | None) -> pygit2.Object | None:
        """The kept Tree with `found`'s id (kept from now on if new); anything else as is."""
        if not isinstance(found, pygit2.Tree):
            return found
        kept = self._trees.get(found.id)
        if kept is None:
            kept = self._trees[found.id] = found
            while len(self._trees) > self._size:
                self._trees.popitem(last=False)
        else:
            self._trees.move_to_end(found.id)
        return kept


class Unreadable(Exception):
    """The app's ref or path does not resolve in its (fetched) mirror."""

    def __init__(self, stage: str, error: str) -> None:
        super().__init__(error)
        self.stage = stage


class Watcher:
    """Checks apps for new revisions and appends RevisionDetected events."""

    def __init__(
        self,
        *,
        log: EventLog,
        mirrors: Mirrors,
        actor: str,
        project_of: Callable[[AppSpec], Project | Missing] | None = None,
    ) -> None:
        self.log = log
        self.mirrors = mirrors
        self.actor = actor
        # The project an app is in (None: projects unchecked, as in a test of
        # detection alone): a source or credential outside it is never fetched.
        self.project_of = project_of
        self._app_locks: dict[str, asyncio.Lock] = {}
        self._fetch_slots = asyncio.Semaphore(CONCURRENT_FETCHES)
        self._check_slots = asyncio.Semaphore(CONCURRENT_CHECKS)
        self._folders = Folders()
        self.history: Follower[AppHistory] = Follower(
            log, FOLLOWED_TYPES, new_state=AppHistory, fold=fold, name="git-watcher history"
        )
        # The sequence of the last event this watcher appended per app: a check
        # of the app waits until the history has folded it (a check right after
        # a detection must not decide on the state before it).
        self._appended: dict[str, int] = {}
        # 1000 apps registered at once are 1000 checks asking where the log ends.
        self._followed_position = NextRound(self._read_followed_position)

    async def close(self) -> None:
        """Stop following the log."""
        await self.history.close()

    async def _catch_up(self, apps: Sequence[Application]) -> None:
        """Let the history fold everything of the followed types appended so far."""
        await self.history.at_least(await self._followed_position(), apps[0].name)

    async def _read_followed_position(self) -> int:
        positions = await asyncio.gather(
            *(self.log.position(names.type_subjects(t)) for t in FOLLOWED_TYPES)
        )
        return max(positions)

    async def _state(self, app: str) -> AppHistory:
        return await self.history.at_least(self._appended.get(app, 0), app)

    def _note_appended(self, app: str, seq: int) -> None:
        self._appended[app] = max(self._appended.get(app, 0), seq)

    async def check_apps(
        self, apps: Iterable[Application], trigger: Trigger, *, resume: str = ""
    ) -> list[str]:
        """Check every app, fetching each repository once; the ids of the events appended.

        A repository that cannot be fetched is a SourceFailed for each of its
        apps, and skipped; the others are checked all the same. Apps of one
        repository that name different credentials are fetched once per
        credential (one of them may see what another may not). `resume` is
        the id of a SyncRequested(resume=True): see `changes.detect`.
        """
        by_repo: dict[tuple[str, str], list[Application]] = defaultdict(list)
        outside: list[tuple[Application, str]] = []
        for app in apps:
            error = self._outside_project(app.spec)
            if error:
                outside.append((app, error))
                continue
            by_repo[normalize_url(app.spec.repo_url), app.spec.git_credential].append(app)
        if outside:
            await self._catch_up([app for app, _ in outside])
            for app, error in outside:
                await self._source_failed(app, "fetch", error)
        if not by_repo:
            return []
        await self._catch_up([app for group in by_repo.values() for app in group])
        results = await asyncio.gather(
            *(self._check_repo(group, trigger, resume) for group in by_repo.values())
        )
        return [event_id for appended in results for event_id in appended]

    def _outside_project(self, spec: AppSpec) -> str:
        """Why the app's source or credential is outside its project ("" if inside)."""
        if self.project_of is None:
            return ""
        project = self.project_of(spec)
        return source_error(
            redact(spec.repo_url), project, normalized=normalize_url(spec.repo_url)
        ) or credential_error(spec.git_credential, project)

    async def _check_repo(
        self, apps: Sequence[Application], trigger: Trigger, resume: str
    ) -> list[str]:
        url = apps[0].spec.repo_url
        credential = apps[0].spec.git_credential
        try:
            async with self._fetch_slots:
                mirror = await self.mirrors.fetch(url, credential=credential)
        except RepoUnreachable as exc:
            for app in apps:
                try:
                    await self._source_failed(app, "fetch", str(exc))
                except Exception:
                    log.exception("app %s: recording its source failure failed", app.name)
            return []
        snapshot = Snapshot(mirror, self._folders)
        # A few workers taking apps in turn, not a task per app: a poll of 10,000
        # apps would otherwise hold 10,000 suspended tasks at once.
        todo = iter(enumerate(apps))
        appended: dict[int, str] = {}

        async def work() -> None:
            for index, app in todo:
                event_id = await self._check_one(app, snapshot, trigger, resume)
                if event_id is not None:
                    appended[index] = event_id

        await asyncio.gather(*(work() for _ in range(min(CONCURRENT_CHECKS, len(apps)))))
        return [appended[index] for index in sorted(appended)]

    async def _check_one(
        self, app: Application, snapshot: Snapshot, trigger: Trigger, resume: str
    ) -> str | None:
        async with self._check_slots:
            try:
                return await self.check_app(app, snapshot, trigger, resume=resume)
            except (nats.errors.Error, TimeoutError) as exc:
                # The log briefly unavailable (a node died, a leader election): expected
                # and temporary, so one line, not a traceback.
                log.warning(
                    "app %s: check failed, the log did not answer (%r); trying again at the "
                    "next one",
                    app.name,
                    exc,
                )
                return None
            except Exception:
                # One app's trouble (a commit this code chokes on) must not keep its
                # neighbours unchecked.
                log.exception("app %s: check failed; trying again at the next one", app.name)
                return None

    async def check_app(
        self, app: Application, snapshot: Snapshot, trigger: Trigger, *, resume: str = ""
    ) -> str | None:
        """Decide on one app against a fetched mirror; the id of the event appended, if any."""
        lock = self._app_locks.setdefault(app.name, asyncio.Lock())
        async with lock:
            try:
                commit, path = self._resolve(app, snapshot)
            except Unreadable as exc:
                await self._source_failed(app, exc.stage, str(exc))
                return None
            await self._source_readable(app, str(commit.id))
            history = await self._state(app.name)
            previous = history.detection_since(app.registered_seq)
            if nothing_new(
                spec=app.spec,
                last=previous,
                commit=str(commit.id),
                resume=resume,
                updated_seq=app.updated_seq,
            ):
                # The common case of a poll: not worth reading the commit's trees.
                return None
            revision = snapshot.revision(commit, path)
            inputs = self._render_inputs(history, previous, revision)
            detection = detect(
                app=app.name,
                spec=app.spec,
                registered_seq=app.registered_seq,
                updated_seq=app.updated_seq,
                last=previous,
                revision=revision,
                trigger=trigger,
                resume=resume,
                inputs=inputs,
                before=snapshot.ids_at(previous.commit) if previous and inputs else None,
                after=snapshot.ids_at(revision.commit),
            )
            if detection is None:
                return None
            # Conditional on the last detection of any registration (not only
            # the current one): the subject's position, whoever appended there.
            last_seq = history.detection.seq if history.detection is not None else 0
            appended = await self._append(app.name, detection, last_seq)
            return appended.event_id if appended is not None else None

    @staticmethod
    def _render_inputs(
        history: AppHistory, previous: LastDetection | None, revision: Revision
    ) -> tuple[str, ...] | None:
        """What the app's last render read, if it rendered `previous` (see `render_inputs`)."""
        if previous is None or previous.commit == revision.commit:
            return None  # a first detection, or the same commit: no comparison to make
        return render_inputs(previous, history.last_render())

    def _resolve(self, app: Application, snapshot: Snapshot) -> tuple[pygit2.Commit, RepoPath]:
        """The commit the app's ref names in the mirror, and its path; Unreadable if its
        path or ref do not resolve."""
        try:
            path = RepoPath.parse(app.spec.path)
        except InvalidRepoPath as exc:
            raise Unreadable("path", str(exc)) from None
        try:
            commit = snapshot.commit(snapshot.resolve(app.spec.ref))
        except (RefNotFound, CommitNotFound) as exc:
            raise Unreadable("ref", str(exc)) from None
        return commit, path

    async def _standing_failure(self, app: Application) -> OpenFailure | None:
        history = await self._state(app.name)
        if history.failed is None:
            return None
        return open_failure(history.failed, history.recovered, registered_seq=app.registered_seq)

    async def _source_failed(self, app: Application, stage: str, error: str) -> None:
        """Append a SourceFailed for the app, unless this very failure is already recorded."""
        failure = SourceFailed(
            repo_url=redact(app.spec.repo_url),
            ref=app.spec.ref,
            error=error,
            stage=stage,
            path=app.spec.path,
        )
        due = failure_due(
            app=app.name,
            registered_seq=app.registered_seq,
            standing=await self._standing_failure(app),
            failure=failure,
        )
        if due is None:
            return
        event_id, payload = due
        appended = await self.log.append(
            new_event(payload, app=app.name, actor=self.actor, event_id=event_id)
        )
        self._note_appended(app.name, appended.seq)
        if not appended.duplicate:
            log.error("app %s: source unreadable (%s): %s", app.name, stage, error)

    async def _source_readable(self, app: Application, commit: str) -> None:
        """End the app's standing SourceFailed, if there is one."""
        due = recovery_due(
            app=app.name,
            standing=await self._standing_failure(app),
            repo_url=redact(app.spec.repo_url),
            ref=app.spec.ref,
            commit=commit,
        )
        if due is None:
            return
        event_id, payload = due
        appended = await self.log.append(
            new_event(payload, app=app.name, actor=self.actor, event_id=event_id)
        )
        self._note_appended(app.name, appended.seq)
        if not appended.duplicate:
            log.info(
                "app %s: source %s ref %s readable again",
                app.name,
                payload.repo_url,
                payload.ref,
            )

    async def _append(self, app: str, detection: Detection, last_seq: int) -> Appended | None:
        payload = detection.payload
        subject = names.subject(app, RevisionDetected.event_type)
        with telemetry.root_span(
            "detect revision", **{"wake.app": app, "wake.commit": payload.commit}
        ):
            event = new_event(
                payload,
                app=app,
                actor=self.actor,
                event_id=detection.event_id,
                correlation_id=detection.event_id,
                traceparent=telemetry.traceparent(),
            )
            try:
                appended = await self.log.append(
                    event, expected_last_seq=last_seq, on_subjects=subject
                )
            except ConcurrencyConflict:
                # Another replica appended a detection since we read the last
                # one; ours was decided on stale ground. The next check starts
                # from theirs.
                log.info("app %s: another watcher detected a revision first", app)
                return None
        self._note_appended(app, appended.seq)
        if not appended.duplicate:
            log.info(
                "app %s: revision %s detected (%s, tree %s, previous %s)",
                app,
                payload.commit[:12],
                payload.trigger,
                payload.tree_id[:12] or "missing",
                (payload.previous_commit or "none")[:12],
            )
        return appended


async def poll_forever(
    watcher: Watcher,
    apps: Callable[[], Iterable[Application]],
    *,
    interval: float,
    stop: asyncio.Event,
    rng: random.Random | None = None,
) -> None:
    """Check every registered app now, then every `interval` seconds (+-10%), until `stop`."""
    rng = rng or random.Random()
    while not stop.is_set():
        try:
            current = list(apps())
            detected = await watcher.check_apps(current, "poll")
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "poll done: %d apps in %d repositories, %d revisions detected",
                    len(current),
                    len({normalize_url(app.spec.repo_url) for app in current}),
                    len(detected),
                )
        except Exception:
            # NATS unavailable, a bug on one app...: the next poll tries again.
            log.exception("poll failed; trying again at the next interval")
        try:
            await asyncio.wait_for(stop.wait(), timeout=next_delay(interval, rng))
        except TimeoutError:
            pass
