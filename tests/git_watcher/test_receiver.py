"""Webhooks end to end inside git-watcher: real HTTP over sockets, real git, real JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from events.payloads import AppSpec
from services.git_watcher.service import main
from services.git_watcher.webhooks import MAX_BODY_BYTES, hmac_sha256_hex
from services.wiring.eventlog import EventLog
from services.wiring.ports import free_port
from services.wiring.runtime import ServiceContext
from services.wiring.settings import Settings
from tests.git_watcher.repos import GitRepo, configmap
from tests.git_watcher.test_watcher import detections, register
from tests.waiting import eventually

SECRET = "global-webhook-secret"


@contextlib.asynccontextmanager
async def watcher_with_webhooks(
    log: EventLog, data_dir: Path, **settings: object
) -> AsyncIterator[str]:
    """git-watcher running with its receiver; yields the receiver's base URL."""
    port = free_port()
    ready = data_dir / "ready"
    options = {"webhook_secret": SECRET, **settings}
    ctx = ServiceContext(
        name="git-watcher",
        settings=Settings(
            data_dir=str(data_dir), poll_interval=3600.0, webhook_port=port, **options
        ),
        log=log,
        ready_file=ready,
    )
    task = asyncio.create_task(main(ctx))
    try:
        await eventually(lambda: ready.exists() or task.done(), what="git-watcher ready")
        assert not task.done(), task.exception()
        yield f"http://127.0.0.1:{port}"
    finally:
        ctx.stop.set()
        await asyncio.wait_for(task, timeout=10)


def push_request(
    provider: str, repo_url: str, ref: str, secret: str = SECRET
) -> tuple[dict[str, str], bytes]:
    """A push as each forge sends it: headers (signature included) and body."""
    branch = ref.removeprefix("refs/heads/")
    if provider == "github":
        body = {
            "ref": ref,
            "after": "0" * 40,
            "repository": {"clone_url": repo_url, "html_url": repo_url.removesuffix(".git")},
        }
        headers = {"X-GitHub-Event": "push"}
    elif provider == "gitlab":
        body = {"object_kind": "push", "ref": ref, "project": {"git_http_url": repo_url}}
        headers = {"X-Gitlab-Event": "Push Hook"}
    elif provider == "gitea":
        body = {"ref": ref, "repository": {"clone_url": repo_url}}
        headers = {"X-Gitea-Event": "push"}
    elif provider == "bitbucket":
        body = {
            "repository": {"links": {"html": {"href": repo_url}}},
            "push": {"changes": [{"new": {"type": "branch", "name": branch}}]},
        }
        headers = {"X-Event-Key": "repo:push"}
    else:
        body = {"repo_url": repo_url, "ref": ref}
        headers = {}
    raw = json.dumps(body).encode()
    return {**headers, **sign(provider, raw, secret)}, raw


def sign(provider: str, body: bytes, secret: str) -> dict[str, str]:
    digest = hmac_sha256_hex(secret.encode(), body)
    return {
        "github": {"X-Hub-Signature-256": f"sha256={digest}"},
        "gitlab": {"X-Gitlab-Token": secret},
        "gitea": {"X-Gitea-Signature": digest},
        "bitbucket": {"X-Hub-Signature": f"sha256={digest}"},
        "generic": {"X-Wake-Signature": f"sha256={digest}"},
    }[provider]


async def post(url: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            url, data=body, headers={"Content-Type": "application/json", **headers}
        ) as response:
            return response.status, await response.read()


async def count(log: EventLog, app: str = "*") -> int:
    return len(await detections(log, app))


async def all_events(log: EventLog) -> list[str]:
    return [stored.event.event_id async for stored in log.read()]


async def until_count(log: EventLog, app: str, n: int) -> None:
    async def reached() -> bool:
        return await count(log, app) >= n

    await eventually(reached, what=f"{n} detections of {app}")


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea", "bitbucket", "generic"])
async def test_a_signed_push_detects_the_apps_of_that_repository_and_branch_only(
    event_log: EventLog, tmp_path: Path, provider: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="services.git_watcher.receiver")
    shop = GitRepo(tmp_path / "org" / "shop")
    other = GitRepo(tmp_path / "org" / "other")
    shop.commit("one", {"apps/web/cm.yaml": configmap("web"), "apps/dev/cm.yaml": configmap("d")})
    shop.git("branch", "dev")
    other.commit("one", {"deploy/cm.yaml": configmap("other")})
    async with watcher_with_webhooks(event_log, tmp_path / "wake") as base:
        await register(event_log, "web", AppSpec(repo_url=shop.url, path="apps/web"))
        await register(event_log, "preview", AppSpec(repo_url=shop.url, path="apps/dev", ref="dev"))
        await register(event_log, "other", AppSpec(repo_url=other.url, path="deploy"))
        for app in ("web", "preview", "other"):
            await until_count(event_log, app, 1)

        second = shop.commit(
            "both", {"apps/web/cm.yaml": configmap("web", "2"), "apps/dev/cm.yaml": "x: 2\n"}
        )
        shop.git("branch", "-f", "dev", second)
        other.commit("two", {"deploy/cm.yaml": configmap("other", "2")})
        # The payload spells the repository as a forge would: file URL, ".git".
        headers, body = push_request(provider, f"file://{shop.path}.git", "refs/heads/main")
        status, text = await post(f"{base}/{provider}", headers, body)
        assert status == 202, text
        await until_count(event_log, "web", 2)

    latest = (await detections(event_log, "web"))[-1].payload
    assert (latest.commit, latest.trigger) == (second, "webhook")
    # preview follows dev (another branch), other lives in another repository.
    assert await count(event_log, "preview") == 1
    assert await count(event_log, "other") == 1
    assert any("ignored for preview" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("provider", ["github", "gitlab", "gitea", "bitbucket", "generic"])
async def test_wrong_missing_or_replayed_signatures_get_a_bare_401_and_change_nothing(
    event_log: EventLog, tmp_path: Path, provider: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="services.git_watcher.receiver")
    shop = GitRepo(tmp_path / "shop")
    shop.commit("one", {"deploy/cm.yaml": configmap("web")})
    async with watcher_with_webhooks(event_log, tmp_path / "wake") as base:
        await register(event_log, "web", AppSpec(repo_url=shop.url, path="deploy"))
        await until_count(event_log, "web", 1)
        shop.commit("two", {"deploy/cm.yaml": configmap("web", "2")})
        before = await all_events(event_log)

        headers, body = push_request(provider, shop.url, "refs/heads/main", secret="guessed")
        unsigned = {k: v for k, v in headers.items() if not k.lower().startswith("x-")}
        unsigned.update({k: v for k, v in headers.items() if k.endswith("Event") or "Key" in k})
        good_headers, good_body = push_request(provider, shop.url, "refs/heads/ping-me")
        replayed = good_body.replace(b"ping-me", b"main")
        attempts = [(headers, body), (unsigned, body)]
        if provider != "gitlab":  # GitLab signs nothing: its token is the whole proof.
            attempts.append((good_headers, replayed))
        for attempt_headers, attempt_body in attempts:
            status, text = await post(f"{base}/{provider}", attempt_headers, attempt_body)
            assert (status, text) == (401, b"")
        assert await all_events(event_log) == before

    refusals = [r.getMessage() for r in caplog.records if "refused (401)" in r.getMessage()]
    assert len(refusals) == len(attempts)
    assert any("no signature header" in m for m in refusals)
    assert all(SECRET not in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("provider", "headers", "body"),
    [
        ("github", {"X-GitHub-Event": "ping"}, b'{"zen": "Keep it logically awesome."}'),
        ("gitlab", {"X-Gitlab-Event": "System Hook"}, b'{"event_name": "test"}'),
        ("gitea", {"X-Gitea-Event": "ping"}, b'{"hook": {"id": 1}}'),
        ("bitbucket", {"X-Event-Key": "diagnostics:ping"}, b"{}"),
        ("generic", {}, b'{"event": "ping"}'),
    ],
)
async def test_a_signed_ping_answers_200(
    event_log: EventLog, tmp_path: Path, provider: str, headers: dict[str, str], body: bytes
):
    async with watcher_with_webhooks(event_log, tmp_path / "wake") as base:
        status, _ = await post(
            f"{base}/{provider}", {**headers, **sign(provider, body, SECRET)}, body
        )
        assert status == 200
        status, _ = await post(f"{base}/{provider}", headers, body)
        assert status == 401


async def raw_request(base: str, head: str, body_chunks: list[bytes]) -> tuple[bytes, int]:
    """Send `head` then chunks; the status line the server answers with, and bytes sent."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    sent = 0
    try:
        writer.write(head.encode())
        for chunk in body_chunks:
            writer.write(chunk)
            sent += len(chunk)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return status_line, sent


async def test_a_5_mib_body_is_refused_without_being_read(
    event_log: EventLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="services.git_watcher.receiver")
    five_mib = 5 * 1024 * 1024
    async with watcher_with_webhooks(event_log, tmp_path / "wake") as base:
        # Declared length: refused on the headers alone, not one body byte sent.
        head = (
            "POST /github HTTP/1.1\r\nHost: wake\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: push\r\nContent-Length: {five_mib}\r\n\r\n"
        )
        status, sent = await raw_request(base, head, [])
        assert status.startswith(b"HTTP/1.1 413"), status
        assert sent == 0

        # Chunked: no length to judge by; the server stops at the cap and answers
        # while 3.8 of the 5 MiB were never even sent.
        chunk = b"x" * (64 * 1024)
        chunks = []
        for _ in range(MAX_BODY_BYTES // len(chunk) + 4):
            chunks.append(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        head = (
            "POST /generic HTTP/1.1\r\nHost: wake\r\nTransfer-Encoding: chunked\r\n"
            "X-Wake-Signature: sha256=00\r\n\r\n"
        )
        status, sent = await raw_request(base, head, chunks)
        assert status.startswith(b"HTTP/1.1 413"), status
        assert sent < 2 * MAX_BODY_BYTES < five_mib

        # With "Expect: 100-continue" the client is told before it sends anything.
        head = (
            "POST /gitea HTTP/1.1\r\nHost: wake\r\nExpect: 100-continue\r\n"
            f"Content-Length: {five_mib}\r\n\r\n"
        )
        status, sent = await raw_request(base, head, [])
        assert status.startswith(b"HTTP/1.1 413"), status

        # The receiver is still up and serving after all that.
        body = b'{"event": "ping"}'
        assert (await post(f"{base}/generic", sign("generic", body, SECRET), body))[0] == 200
    refused = [r.getMessage() for r in caplog.records if "byte limit" in r.getMessage()]
    assert len(refused) == 3, refused
    assert await count(event_log) == 0


async def test_an_app_with_its_own_secret_is_woken_only_by_it(
    event_log: EventLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="services.git_watcher.receiver")
    team_secret = tmp_path / "pay-webhook-secret"
    team_secret.write_text("team-secret\n")
    pay = GitRepo(tmp_path / "pay")
    pay.commit("one", {"deploy/cm.yaml": configmap("pay")})
    async with watcher_with_webhooks(event_log, tmp_path / "wake") as base:
        await register(
            event_log,
            "pay",
            AppSpec(repo_url=pay.url, path="deploy", webhook_secret_file=str(team_secret)),
        )
        await until_count(event_log, "pay", 1)
        second = pay.commit("two", {"deploy/cm.yaml": configmap("pay", "2")})

        headers, body = push_request("github", pay.url, "refs/heads/main", secret=SECRET)
        status, text = await post(f"{base}/github", headers, body)
        assert (status, text) == (202, b"no app to check\n")
        assert any(
            "not signed with the app's webhook secret" in r.getMessage() for r in caplog.records
        )

        headers, body = push_request("github", pay.url, "refs/heads/main", secret="team-secret")
        status, text = await post(f"{base}/github", headers, body)
        assert (status, text) == (202, b"checking 1 apps\n")
        await until_count(event_log, "pay", 2)
    assert (await detections(event_log, "pay"))[-1].payload.commit == second


async def test_without_a_secret_no_receiver_is_started(
    event_log: EventLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="services.git_watcher.service")
    async with watcher_with_webhooks(event_log, tmp_path / "wake", webhook_secret="") as base:
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(f"{base}/github", {}, b"{}")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("webhook receiver not started: no webhook secret configured" in m for m in errors)


async def test_the_secret_can_come_from_a_file(event_log: EventLog, tmp_path: Path):
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text("from-a-file\n")
    async with watcher_with_webhooks(
        event_log, tmp_path / "wake", webhook_secret="", webhook_secret_file=str(secret_file)
    ) as base:
        body = b'{"event": "ping"}'
        assert (await post(f"{base}/generic", sign("generic", body, "from-a-file"), body))[0] == 200
        assert (await post(f"{base}/generic", sign("generic", body, SECRET), body))[0] == 401
