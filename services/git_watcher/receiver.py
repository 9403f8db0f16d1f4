"""The webhook receiver: an aiohttp server at `POST <webhook_url>/<provider>` (shell).

Per request: refuse a body over MAX_BODY_BYTES before reading it (its
Content-Length, or a bounded read of a chunked body), verify the signature
(`webhooks.verify`), then hand the apps the push is for to `check`. A
request that fails verification gets a bare 401; why goes to the log only.
The decisions -- which secret, which apps, which refs -- are in `webhooks.py`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from opentelemetry.trace import SpanKind

from services.git_watcher.webhooks import (
    MAX_BODY_BYTES,
    PROVIDERS,
    Candidate,
    Provider,
    Secret,
    WebhookError,
    named_apps,
    parse,
    signature_header,
    triage,
    verify,
)
from services.wiring import metrics, telemetry

log = logging.getLogger(__name__)

GLOBAL = "global"
READ_CHUNK = 64 * 1024
# A client has this long from connecting to finish sending its request line
# and headers (and an idle kept-alive connection is closed after as long):
# a slowloris that trickles headers holds a connection no longer than this.
# aiohttp's keepalive_timeout starts when the connection is made and ends
# only when a whole request head has arrived, so it is that timeout.
HEADER_TIMEOUT = 10.0
# ... and this long to send the body once its headers are in.
BODY_TIMEOUT = 30.0


class SecretUnavailable(Exception):
    """No usable webhook secret: the receiver must not start."""


def global_secret(secret: str, secret_file: str) -> Secret:
    """The global webhook secret, from the setting or the file it names.

    Raises SecretUnavailable saying why (none set, both set, file unreadable or empty).
    """
    if secret and secret_file:
        raise SecretUnavailable(
            "both WAKE_WEBHOOK_SECRET and WAKE_WEBHOOK_SECRET_FILE are set; set one"
        )
    if secret_file:
        return Secret(GLOBAL, _read_secret_file(Path(secret_file), "WAKE_WEBHOOK_SECRET_FILE"))
    if secret.strip():
        return Secret(GLOBAL, secret.strip().encode())
    raise SecretUnavailable(
        "no webhook secret configured (set WAKE_WEBHOOK_SECRET or WAKE_WEBHOOK_SECRET_FILE): "
        "unsigned webhooks are never accepted"
    )


def _read_secret_file(path: Path, what: str) -> bytes:
    try:
        value = path.read_bytes().strip()
    except OSError as exc:
        raise SecretUnavailable(
            f"{what}: cannot read {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    if not value:
        raise SecretUnavailable(f"{what}: {path} is empty")
    return value


@dataclass(frozen=True, slots=True)
class RegisteredApp:
    """What the receiver needs to know of a registered app."""

    name: str
    repo_url: str
    ref: str
    webhook_secret_file: str


def app_secret_owner(app: RegisteredApp) -> str:
    return f"app {app.name}" if app.webhook_secret_file else GLOBAL


async def read_capped(request: web.Request, cap: int) -> bytes | None:
    """The body, or None as soon as it proves longer than `cap` (never more than cap+1 read)."""
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = await request.content.read(min(READ_CHUNK, cap + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > cap:
            return None
        chunks.append(chunk)


class Receiver:
    """Serves the five webhook routes; `check(app names)` is called for each verified push."""

    def __init__(
        self,
        *,
        secret: Secret,
        apps: Callable[[], Iterable[RegisteredApp]],
        check: Callable[[list[str]], None],
        max_body_bytes: int = MAX_BODY_BYTES,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        self.secret = secret
        self.apps = apps
        self.check = check
        self.max_body_bytes = max_body_bytes
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self._runner: web.AppRunner | None = None
        self.url = ""

    def application(self) -> web.Application:
        app = web.Application()
        for provider in PROVIDERS:
            app.router.add_post(
                f"/{provider}", self._handler(provider), expect_handler=self._expect
            )
        return app

    async def start(self, host: str, port: int) -> str:
        """Listen on host:port; the base URL of the receiver (its routes are below it).

        Raises OSError naming the address if it cannot listen there.
        """
        # lingering_time=0: after refusing a body, close the connection
        # instead of reading (and dropping) the rest of it for 10 s.
        runner = web.AppRunner(
            self.application(),
            access_log=None,
            lingering_time=0,
            keepalive_timeout=self.header_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise OSError(
                exc.errno, f"webhook receiver cannot listen on {host}:{port}: {exc.strerror}"
            ) from None
        self._runner = runner
        sockname = runner.addresses[0]  # the real port when port=0
        shown = f"[{sockname[0]}]" if ":" in sockname[0] else sockname[0]
        self.url = f"http://{shown}:{sockname[1]}"
        log.info("webhook receiver listening on %s/{%s}", self.url, ",".join(PROVIDERS))
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _expect(self, request: web.Request) -> None:
        # "Expect: 100-continue": refuse an oversized body before the client sends it.
        if (request.content_length or 0) > self.max_body_bytes:
            raise self._too_large(request, f"Content-Length {request.content_length}")
        if request.version >= (1, 1):
            request.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _too_large(self, request: web.Request, what: str) -> web.HTTPRequestEntityTooLarge:
        log.warning(
            "webhook %s from %s refused: %s over the %d-byte limit",
            request.path,
            request.remote,
            what,
            self.max_body_bytes,
        )
        return web.HTTPRequestEntityTooLarge(
            max_size=self.max_body_bytes, actual_size=request.content_length or 0
        )

    def _handler(self, provider: Provider):
        async def handle(request: web.Request) -> web.StreamResponse:
            name = str(provider)
            with telemetry.child_span(
                f"POST /{name}",
                {"http.request.method": "POST", "url.path": request.path},
                kind=SpanKind.SERVER,
            ) as span:
                try:
                    response = await self._handle(provider, request)
                except web.HTTPException as refused:
                    metrics.WEBHOOK_REQUESTS.labels(name, str(refused.status)).inc()
                    telemetry.record_status(span, refused.status)
                    raise
                metrics.WEBHOOK_REQUESTS.labels(name, str(response.status)).inc()
                telemetry.record_status(span, response.status)
                return response

        return handle

    async def _handle(self, provider: Provider, request: web.Request) -> web.StreamResponse:
        if (request.content_length or 0) > self.max_body_bytes:
            raise self._too_large(request, f"Content-Length {request.content_length}")
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await read_capped(request, self.max_body_bytes)
        except TimeoutError:
            log.warning(
                "webhook %s from %s refused (408): body not received within %.0fs",
                request.path,
                request.remote,
                self.body_timeout,
            )
            return web.Response(status=408, headers={"Connection": "close"})
        if body is None:
            raise self._too_large(request, "a chunked body")
        headers = dict(request.headers)
        registered = list(self.apps())
        verified = verify(
            provider, headers, body, self._secrets(provider, headers, body, registered)
        )
        if verified is None:
            why = (
                "no signature header"
                if signature_header(provider, headers) is None
                else "signature matches no secret"
            )
            log.warning("webhook /%s from %s refused (401): %s", provider, request.remote, why)
            return web.Response(status=401)
        try:
            notice = parse(provider, headers, verified)
        except WebhookError as exc:
            log.warning("webhook /%s from %s: %s", provider, request.remote, exc)
            return web.Response(status=400, text=f"{exc}\n")
        if notice.kind == "ping":
            log.info("webhook /%s: %s answered", provider, notice.event)
            return web.Response(status=200, text="pong\n")
        if notice.kind == "other":
            log.info("webhook /%s: event %r ignored", provider, notice.event)
            return web.Response(status=202, text=f"event {notice.event!r} ignored\n")
        decided = triage(notice, verified, (_candidate(app) for app in registered))
        for app in decided.wrong_secret:
            log.warning(
                "webhook /%s for app %s ignored: not signed with the app's webhook secret",
                provider,
                app,
            )
        if decided.other_branch:
            log.info(
                "webhook /%s: push of %s ignored for %s (they follow another ref)",
                provider,
                ", ".join(notice.refs),
                ", ".join(decided.other_branch),
            )
        if not decided.to_check:
            log.info(
                "webhook /%s: push of %s to %s: no app to check",
                provider,
                ", ".join(notice.refs) or "any ref",
                ", ".join(notice.repo_urls),
            )
            return web.Response(status=202, text="no app to check\n")
        log.info(
            "webhook /%s: push of %s: checking %s",
            provider,
            ", ".join(notice.refs) or "any ref",
            ", ".join(decided.to_check),
        )
        self.check(list(decided.to_check))
        return web.Response(status=202, text=f"checking {len(decided.to_check)} apps\n")

    def _secrets(
        self,
        provider: Provider,
        headers: dict[str, str],
        body: bytes,
        registered: list[RegisteredApp],
    ) -> list[Secret]:
        """The global secret, and those of the apps with their own that the body names.

        The body is read (not believed) to choose them: only apps of the
        repository it claims to be about are tried, however many are registered.
        """
        secrets = [self.secret]
        own = [app for app in registered if app.webhook_secret_file]
        if not own:
            return secrets
        # A body the global secret signs is taken as signed by it alone, and
        # nothing unverified is parsed (an app whose own secret is the global
        # one is then not told apart: give it another). Only a body the global
        # secret does not sign is read, depth-limited, to find the apps to try.
        if verify(provider, headers, body, secrets) is not None:
            return secrets
        try:
            claimed = parse(provider, headers, body)
        except WebhookError:
            return secrets
        named = {c.app for c in named_apps(claimed, (_candidate(app) for app in own))}
        for app in own:
            if app.name not in named:
                continue
            try:
                value = _read_secret_file(Path(app.webhook_secret_file), f"app {app.name}")
            except SecretUnavailable as exc:
                # Never fall back to the global secret: the app asked for its own.
                log.error("webhook secret of %s unusable: %s", app.name, exc)
                continue
            secrets.append(Secret(app_secret_owner(app), value))
        return secrets


def _candidate(app: RegisteredApp) -> Candidate:
    return Candidate(
        app=app.name, repo_url=app.repo_url, ref=app.ref, secret_owner=app_secret_owner(app)
    )
