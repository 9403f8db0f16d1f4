"""git-watcher: the shell. Registry from the log, three reasons to check, one decision.

- an app registered (or updated): checked at once, trigger "register";
- a SyncRequested: checked at once, trigger "sync" (durable consumer
  `git-watcher-sync`, so a request made while the watcher is down is served
  when it is back);
- every `poll_interval` seconds (+-10%): every app, trigger "poll", each
  repository fetched once;
- a verified webhook push (`receiver.py`, when `webhook_port` is set and a
  webhook secret configured): the apps of the pushed repository and ref,
  trigger "webhook".

A SyncRequested with `resume`, and any SyncRequested of an app whose last
apply failed, detects the ref's commit even if unchanged (`syncing`).
git-watcher announces itself ready only once its webhook receiver listens.

Nothing is kept that the log cannot rebuild: the registry is replayed at
start, and the last detection, last render (what it read, `changes.py`) and
last source failure of each app are folded from the log once and then
followed (`history.py`), never re-read per check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import nats.js.api as api

from events import names
from events.payloads import (
    ApplicationRegistered,
    ApplicationUpdated,
    ApplyFailed,
    ApplySucceeded,
    SyncRequested,
)
from services.catalog.lookup import app_spec, follow_registry, load_registry
from services.catalog.registry import Application, Registry
from services.git_watcher import syncing
from services.git_watcher.changes import Trigger
from services.git_watcher.polling import Watcher, poll_forever
from services.git_watcher.receiver import Receiver, RegisteredApp, SecretUnavailable, global_secret
from services.projects.rules import project_of
from services.wiring.consumers import (
    ConsumerSettings,
    partition_of,
    placement_of,
    serve_consumer,
)
from services.wiring.eventlog import StoredEvent
from services.wiring.git import GitCredentials, Mirrors
from services.wiring.leases import Leases
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

SERVICE = "git-watcher"
SYNC_CONSUMER = "git-watcher-sync"


def sync_consumer() -> ConsumerSettings:
    # NEW, not ALL: on its first start the watcher checks every app anyway,
    # so the SyncRequested events of the past need no replay.
    return ConsumerSettings(
        name=SYNC_CONSUMER,
        subjects=[names.type_subjects(SyncRequested.event_type)],
        deliver_policy=api.DeliverPolicy.NEW,
    )


async def main(ctx: ServiceContext) -> None:
    """Watch every registered app's repository until `ctx.stop`."""
    mirrors = Mirrors(
        ctx.settings.data_path / SERVICE / "mirrors",
        credentials=GitCredentials.from_settings(ctx.settings),
    )
    registry, registry_seq = await load_registry(ctx.log)
    watcher = Watcher(
        log=ctx.log,
        mirrors=mirrors,
        actor=ctx.actor,
        # The registry follows the projects too: each check sees the current rules.
        project_of=lambda spec: project_of(
            spec, registry.projects.specs, system_namespace=ctx.settings.system_namespace
        ),
    )
    settings = sync_consumer()
    checks: set[asyncio.Task] = set()
    # With several replicas, each app is polled (and checked when registered)
    # by the one replica holding its partition's lease.
    placement = placement_of(ctx)

    def owned(apps: list[Application]) -> list[Application]:
        return [a for a in apps if leases.holds(partition_of(a.name, placement.partitions))]

    def taken_over(partition: int) -> None:
        # A partition taken from a replica that died: its apps are checked now,
        # not a poll interval later.
        apps = [
            a
            for a in registry.apps.values()
            if partition_of(a.name, placement.partitions) == partition
        ]
        if apps:
            check_soon(apps, "poll")

    leases = Leases(
        ctx.log, "git-watcher-poll", placement, holder=ctx.log.instance, on_acquired=taken_over
    )
    await leases.start()

    def check_soon(apps: list[Application], trigger: Trigger) -> None:
        apps = owned(apps)
        if not apps:
            return
        task = asyncio.create_task(_check(watcher, apps, trigger))
        checks.add(task)
        task.add_done_callback(checks.discard)

    async def handle_sync(stored: StoredEvent) -> None:
        application = await _registered(ctx, stored.event.app)
        if application is None:
            log.warning(
                "SyncRequested %s for app %s, which is not registered: ignored",
                stored.event.event_id,
                stored.event.app,
            )
            return
        payload = stored.event.payload
        if not isinstance(payload, SyncRequested):
            return
        app = stored.event.app
        succeeded, failed = await asyncio.gather(
            ctx.log.last_event(app, ApplySucceeded.event_type),
            ctx.log.last_event(app, ApplyFailed.event_type),
        )
        apply_failed = syncing.last_apply_failed(
            succeeded.seq if succeeded is not None else None,
            failed.seq if failed is not None else None,
        )
        again = syncing.detects_unchanged(payload, apply_failed=apply_failed)
        # Keyed by the request: a redelivered request finds its detection and adds none.
        resume = stored.event.event_id if again else ""
        await watcher.check_apps([application], "sync", resume=resume)

    # Pushes coalesce per app: one arriving while the app's webhook check runs
    # marks it for one more check after it (that check may have fetched just
    # before the push landed); ten arriving meanwhile still cost one more.
    webhook_running: set[str] = set()
    webhook_again: set[str] = set()

    def check_pushed(app_names: list[str]) -> None:
        webhook_again.update(n for n in app_names if n in webhook_running)
        fresh = [n for n in app_names if n not in webhook_running and n in registry.apps]
        if not fresh:
            return
        webhook_running.update(fresh)

        async def run() -> None:
            todo = fresh
            try:
                while todo:
                    current = [registry.apps[n] for n in todo if n in registry.apps]
                    await _check(watcher, current, "webhook")
                    todo = [n for n in fresh if n in webhook_again]
                    webhook_again.difference_update(todo)
            finally:
                webhook_running.difference_update(fresh)

        task = asyncio.create_task(run())
        checks.add(task)
        task.add_done_callback(checks.discard)

    receiver = await _start_receiver(ctx, registry, check_pushed)
    consuming = asyncio.Event()

    # Registrations coalesce too: apps registered while a register check runs
    # are checked together after it, in one check (one fetch, one read of the
    # mirror) -- 1000 apps registered at once are a few checks, not 1000.
    registered: dict[str, None] = {}
    registering: list[asyncio.Task] = []

    def check_registered(app: str) -> None:
        registered[app] = None
        if registering and not registering[0].done():
            return

        async def run() -> None:
            while registered:
                todo = owned([registry.apps[n] for n in registered if n in registry.apps])
                registered.clear()
                if todo:
                    await _check(watcher, todo, "register")

        registering[:] = [asyncio.create_task(run())]
        checks.add(registering[0])
        registering[0].add_done_callback(checks.discard)

    tasks = [
        asyncio.create_task(
            _follow(ctx, registry, registry_seq, check_registered), name="registry"
        ),
        asyncio.create_task(
            serve_consumer(ctx, settings, handle_sync, ready=consuming.set), name="sync-consumer"
        ),
        asyncio.create_task(
            poll_forever(
                watcher,
                lambda: owned(list(registry.apps.values())),
                interval=ctx.settings.poll_interval,
                stop=ctx.stop,
            ),
            name="poll",
        ),
        asyncio.create_task(leases.run(ctx.stop), name="leases"),
    ]
    # Ready once the sync consumer exists: no SyncRequested from now on is missed.
    waiting = asyncio.create_task(consuming.wait())
    await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    ctx.ready()
    log.info(
        "watching %d apps, polling every %.0fs%s",
        len(registry.apps),
        ctx.settings.poll_interval,
        f", webhooks at {receiver.url}" if receiver is not None else "",
    )
    stopping = asyncio.create_task(ctx.stop.wait())
    try:
        # Returns at stop, or when a task dies (the log gone for good): then
        # its error ends the process and the supervisor restarts it.
        done, _ = await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopping and not task.cancelled() and task.exception() is not None:
                raise task.exception()
    finally:
        ctx.stop.set()
        if receiver is not None:
            await receiver.stop()
        await watcher.close()
        # The registry follower reads forever and in-flight checks may be mid-fetch;
        # the consumer and the poll loop return by themselves once stop is set.
        for task in [stopping, tasks[0], *checks]:
            task.cancel()
        await asyncio.gather(*tasks, *checks, stopping, return_exceptions=True)


async def _start_receiver(
    ctx: ServiceContext, registry: Registry, check: Callable[[list[str]], None]
) -> Receiver | None:
    """The webhook receiver, listening; None if none is configured or no secret is.

    Raises OSError naming the address if the port cannot be had (the
    supervisor restarts the process; a webhook URL that silently does not
    answer would be worse).
    """
    settings = ctx.settings
    if not settings.webhook_port:
        log.info("no webhook receiver (WAKE_WEBHOOK_PORT is 0): polling only")
        return None
    try:
        secret = global_secret(settings.webhook_secret, settings.webhook_secret_file)
    except SecretUnavailable as exc:
        log.error("webhook receiver not started: %s", exc)
        return None

    def registered() -> list[RegisteredApp]:
        return [
            RegisteredApp(
                name=app.name,
                repo_url=app.spec.repo_url,
                ref=app.spec.ref,
                webhook_secret_file=app.spec.webhook_secret_file,
            )
            for app in registry.apps.values()
        ]

    receiver = Receiver(secret=secret, apps=registered, check=check)
    await receiver.start(settings.webhook_host, settings.webhook_port)
    return receiver


async def _follow(
    ctx: ServiceContext,
    registry: Registry,
    after_seq: int,
    check_registered: Callable[[str], None],
) -> None:
    """Keep the registry current; check a newly registered or updated app at once."""
    async for app in follow_registry(ctx.log, registry, after_seq):
        if app in registry.apps:
            check_registered(app)


async def _check(watcher: Watcher, apps: list[Application], trigger: Trigger) -> None:
    try:
        await watcher.check_apps(apps, trigger)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception(
            "check (%s) of %s failed; the next poll tries again",
            trigger,
            ", ".join(a.name for a in apps),
        )


async def _registered(ctx: ServiceContext, app: str) -> Application | None:
    """The app as registered now, read from the log (the registry may lag behind it)."""
    spec = await app_spec(ctx.log, app)
    if spec is None:
        return None
    registered = await ctx.log.last_event(app, ApplicationRegistered.event_type)
    updated = await ctx.log.last_event(app, ApplicationUpdated.event_type)
    seq = registered.seq if registered is not None else 0
    # An update before the current registration belongs to an earlier life of the app.
    updated_seq = max(seq, updated.seq) if updated is not None else seq
    return Application(app, spec, seq, updated_seq)
