"""Walk two commits of a sample repository through a real, local Wake.

Everything is real but the cluster: NATS JetStream and PostgreSQL from their
wheels, each service in its own process, git repositories on disk, webhooks
over HTTP; the cluster is the sandbox (a Kubernetes API emulator).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from events import new_event
from events.envelope import Envelope
from events.payloads import (
    ApplicationRegistered,
    ApplyFailed,
    ApplySucceeded,
    AppSpec,
    NotificationSent,
    RenderFailed,
    RevisionDetected,
    RollbackRequested,
    SyncRequested,
)
from services.catalog.describe import describe
from services.demo.sample import APP_PATH, NAMESPACE, SampleRepo, first_commit, second_commit
from services.wiring.credentials import load_connect_kwargs
from services.wiring.eventlog import EventLog
from services.wiring.signing import KeySigner, Trust, load_key_file
from services.wiring.supervision import start_wake

APP = "demo"
WEBHOOK_SECRET = "wake-demo-secret"
FINAL_TYPES = {ApplySucceeded.event_type, ApplyFailed.event_type, RenderFailed.event_type}


class DemoFailed(RuntimeError):
    pass


class WebhookReceiver:
    """A local HTTP endpoint that checks X-Wake-Signature, standing in for a chat webhook."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/wake", self._receive)
        # Like every HTTP server of Wake: 10 s for a request head, 30 s for a body.
        self._runner = web.AppRunner(app, keepalive_timeout=10.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/wake"

    async def _receive(self, request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(30.0):
                body = await request.read()
        except TimeoutError:
            return web.Response(status=408)
        expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("X-Wake-Signature", "")):
            return web.Response(status=401)
        self.received.append(request.headers.get("X-Wake-Event", ""))
        return web.Response(status=204)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def wait_for_journey(
    log: EventLog,
    app: str,
    commit: str,
    *,
    after_seq: int,
    timeout: float,
    notified: bool,
    started_by: str | None = None,
) -> list[tuple[int, Envelope]]:
    """The events of the journey of `commit`, once it has ended (and been notified).

    The journey starts with the RevisionDetected of `commit`, or with the
    event `started_by` (a command such as a rollback) when given.
    """
    journey: list[tuple[int, Envelope]] = []
    correlation: str | None = None
    final: Envelope | None = None
    try:
        async with asyncio.timeout(timeout):
            async for stored in log.read(
                subjects=[f"wake.evt.{app}.>"], from_seq=after_seq + 1, follow=True
            ):
                event = stored.event
                payload = event.payload
                if event.event_id == started_by or (
                    started_by is None
                    and isinstance(payload, RevisionDetected)
                    and payload.commit == commit
                ):
                    correlation = event.event_id
                if correlation is None or event.correlation_id != correlation:
                    continue
                journey.append((stored.seq, event))
                if event.type in FINAL_TYPES:
                    final = event
                if final is not None and (
                    not notified
                    or (
                        isinstance(payload, NotificationSent)
                        and payload.about_event_id == final.event_id
                    )
                ):
                    return journey
    except TimeoutError:
        seen = ", ".join(e.type for _, e in journey) or "nothing"
        raise DemoFailed(
            f"commit {commit[:7]} did not finish its journey in {timeout:.0f}s (seen: {seen})"
        ) from None
    raise DemoFailed("the log ended while following it")


def timeline(journey: list[tuple[int, Envelope]], committed_at: datetime) -> list[str]:
    lines = []
    for _, event in journey:
        elapsed = (event.occurred_at - committed_at).total_seconds()
        service = event.actor.removeprefix("service:")
        lines.append(f"  {elapsed:+7.3f}s  {event.type:<18} {service:<12} {describe(event)}")
    return lines


async def run_demo(
    workdir: Path,
    *,
    echo: Callable[[str], None] = print,
    timeout: float = 120.0,
    log_dir: Path | None = None,
) -> None:
    """Run the whole demo in `workdir`; raise DemoFailed if a journey does not end in an apply.

    The processes' logs go to `log_dir` (default `workdir/logs`).
    """
    log_dir = log_dir or workdir / "logs"
    echo("Wake demo: one application, two commits, from Git to a sandbox cluster.")
    echo("(The cluster is Wake's sandbox, a Kubernetes API emulator, not a real cluster.)")
    receiver = WebhookReceiver()
    await receiver.start()
    echo(f"Starting NATS JetStream, PostgreSQL, the sandbox and five services in {workdir} ...")
    running = await start_wake(
        workdir / "data",
        sandbox=True,
        sandbox_ready_workloads=True,
        log_dir=log_dir,
        extra_env={
            "WAKE_NOTIFY_URL": receiver.url,
            "WAKE_NOTIFY_SECRET": WEBHOOK_SECRET,
            "WAKE_NOTIFY_EVENTS": "ApplySucceeded,ApplyFailed,RenderFailed",
        },
    )
    log = await EventLog.connect(
        running.endpoints.nats_url,
        name="wake-demo",
        credentials=load_connect_kwargs(running.endpoints.nats_operator),
    )
    # The demo acts as the person who runs it: it signs with their key, as `wake` would.
    log.trust = Trust.from_text(running.endpoints.admin_public_key, source="endpoints.json")
    log.signer = KeySigner(load_key_file(running.endpoints.signing_key))
    try:
        sample = SampleRepo.create(workdir / "repo")
        for number, make_commit, trigger in (
            (1, first_commit, _register),
            (2, second_commit, _sync),
        ):
            after = (await log.js.stream_info("WAKE_EVENTS")).state.last_seq
            committed_at = datetime.now(UTC)
            commit = make_commit(sample)
            message = sample.repo[commit].message.strip()
            echo("")
            echo(f"Commit {number}: {commit[:7]} {message!r}")
            await trigger(log, sample)
            journey = await wait_for_journey(
                log, APP, commit, after_seq=after, timeout=timeout, notified=True
            )
            for line in timeline(journey, committed_at):
                echo(line)
            final = next(e for _, e in journey if e.type in FINAL_TYPES)
            if not isinstance(final.payload, ApplySucceeded):
                raise DemoFailed(f"commit {commit[:7]} was not applied: {describe(final)}")
        rollback_to = sample.repo.revparse_single("main~1").id
        echo("")
        echo(f"Rollback to commit 1 ({str(rollback_to)[:7]}), from its stored bundle:")
        after = (await log.js.stream_info("WAKE_EVENTS")).state.last_seq
        requested_at = datetime.now(UTC)
        request = await _rollback(log, str(rollback_to))
        journey = await wait_for_journey(
            log,
            APP,
            str(rollback_to),
            after_seq=after,
            timeout=timeout,
            notified=True,
            started_by=request.event_id,
        )
        for line in timeline(journey, requested_at):
            echo(line)
        final = next(e for _, e in journey if e.type in FINAL_TYPES)
        if not isinstance(final.payload, ApplySucceeded) or not final.payload.rollback_of:
            raise DemoFailed(f"the rollback was not applied: {describe(final)}")
        echo(f"{APP} now stays on {str(rollback_to)[:7]} until a new commit or "
             f"`wake sync {APP} --resume`.")  # fmt: skip
        echo("")
        echo(f"The webhook received {len(receiver.received)} signed notifications.")
        echo(f"Logs of every process are in {log_dir}.")
    finally:
        await log.close()
        await running.stop()
        await receiver.stop()


async def _register(log: EventLog, sample: SampleRepo) -> None:
    spec = AppSpec(repo_url=sample.url, path=APP_PATH, ref="main", namespace=NAMESPACE)
    await log.append(new_event(ApplicationRegistered(spec=spec), app=APP, actor=log.actor))


async def _rollback(log: EventLog, commit: str) -> Envelope:
    """What `wake rollback demo --to COMMIT` appends: the apply of COMMIT, resolved."""
    applied = [
        stored.event.payload
        async for stored in log.read(subjects=[f"wake.evt.{APP}.ApplySucceeded"])
        if isinstance(stored.event.payload, ApplySucceeded)
        and stored.event.payload.commit == commit
    ]
    target = applied[-1]
    request = new_event(
        RollbackRequested(
            target=commit,
            reason="wake demo: back to commit 1",
            apply_id=target.apply_id,
            commit=target.commit,
            bundle_digest=target.bundle_digest,
        ),
        app=APP,
        actor=log.actor,
    )
    await log.append(request)
    return request


async def _sync(log: EventLog, sample: SampleRepo) -> None:
    await log.append(
        new_event(SyncRequested(reason="wake demo: commit 2"), app=APP, actor=log.actor)
    )
