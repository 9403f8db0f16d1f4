"""Issue 10 item 8: Wake's HTTP servers refuse hostile JSON and slow clients, then serve on.

Real HTTP over sockets against git-watcher's webhook receiver (`Receiver`), as
forges call it, and against the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from services.git_watcher.receiver import GLOBAL, Receiver, RegisteredApp
from services.git_watcher.webhooks import MAX_JSON_DEPTH, Secret
from services.sandbox.emulator import Sandbox
from tests.git_watcher.test_receiver import post, sign

SECRET = "webhook-secret"
REPO = "https://git.example.com/shop.git"


def push(depth: int = 0) -> bytes:
    nested: object = "x"
    for _ in range(depth):
        nested = [nested]
    body = {"ref": "refs/heads/main", "repository": {"clone_url": REPO}, "extra": nested}
    return json.dumps(body).encode()


def deep_json(levels: int) -> bytes:
    return b'{"ref": "refs/heads/main", "x": ' + b"[" * levels + b"]" * levels + b"}"


@pytest.fixture
async def receiver(tmp_path: Path) -> AsyncIterator[tuple[Receiver, list[list[str]]]]:
    team_secret = tmp_path / "team-secret"
    team_secret.write_text("team\n")
    checked: list[list[str]] = []
    apps = [
        RegisteredApp(name="shop", repo_url=REPO, ref="main", webhook_secret_file=""),
        # An app with its own secret: the receiver then reads the (unverified)
        # body to choose which secrets to try -- that read must be safe too.
        RegisteredApp(
            name="team",
            repo_url="https://git.example.com/team.git",
            ref="main",
            webhook_secret_file=str(team_secret),
        ),
    ]
    receiver = Receiver(
        secret=Secret(GLOBAL, SECRET.encode()),
        apps=lambda: apps,
        check=checked.append,
        header_timeout=0.5,
        body_timeout=0.5,
    )
    await receiver.start("127.0.0.1", 0)
    try:
        yield receiver, checked
    finally:
        await receiver.stop()


async def test_deeply_nested_json_gets_400_signed_or_401_unsigned_never_500(
    receiver: tuple[Receiver, list[list[str]]], caplog: pytest.LogCaptureFixture
) -> None:
    server, checked = receiver
    url = f"{server.url}/github"
    caplog.set_level(logging.ERROR)
    for body in (deep_json(100_000), deep_json(MAX_JSON_DEPTH + 5)):
        # Unsigned: refused for its signature, without a crash while choosing secrets
        status, _ = await post(url, {"X-GitHub-Event": "push"}, body)
        assert status == 401
        # Signed: a clear 400 naming the limit
        headers = {"X-GitHub-Event": "push", **sign("github", body, SECRET)}
        status, text = await post(url, headers, body)
        assert status == 400
        assert f"nested deeper than {MAX_JSON_DEPTH} levels".encode() in text
    assert not [r for r in caplog.records if r.exc_info]  # no traceback logged
    assert checked == []

    # And the next normal push is handled
    body = push(depth=3)
    status, _ = await post(url, {"X-GitHub-Event": "push", **sign("github", body, SECRET)}, body)
    assert status == 202
    assert checked == [["shop"]]


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    while chunk := await reader.read(65536):
        received += chunk
    return received


async def test_a_slow_header_or_body_is_cut_off_and_the_next_request_is_served(
    receiver: tuple[Receiver, list[list[str]]],
) -> None:
    server, checked = receiver
    port = int(server.url.rsplit(":", 1)[1])

    # A client that trickles its headers and never finishes them is disconnected
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /github HTTP/1.1\r\nHost: wake\r\nX-GitHub-Event: pu")
    await writer.drain()
    assert await asyncio.wait_for(read_until_closed(reader), 10) == b""
    writer.close()

    # A client that sends its headers but not the body it announced gets 408
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /github HTTP/1.1\r\nHost: wake\r\nX-GitHub-Event: push\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"ref":'
    )
    await writer.drain()
    answer = await asyncio.wait_for(read_until_closed(reader), 10)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    writer.close()

    # And a normal push is handled
    body = push()
    status, _ = await post(
        f"{server.url}/github", {"X-GitHub-Event": "push", **sign("github", body, SECRET)}, body
    )
    assert status == 202
    assert checked == [["shop"]]


async def test_the_sandbox_cuts_off_slow_clients_and_serves_on() -> None:
    sandbox = Sandbox(header_timeout=0.5, body_timeout=0.5)
    url = await sandbox.start()
    port = int(url.rsplit(":", 1)[1])
    try:
        # A request head that never ends: disconnected
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api HTTP/1.1\r\nHost: sandbox\r\nAcce")
        await writer.drain()
        assert await asyncio.wait_for(read_until_closed(reader), 10) == b""
        writer.close()

        # A body that never comes: 408
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /api/v1/namespaces HTTP/1.1\r\nHost: sandbox\r\n"
            b"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 408"), head
        writer.close()

        # And a normal request is served
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
            assert response.status == 200
    finally:
        await sandbox.stop()
