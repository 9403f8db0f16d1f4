"""Issue 10 item 8: a render whose event exceeds the server's message limit fails at once, clearly.

A NATS server of this test's own runs with a small max_payload (64 KiB), so a
few hundred resources are enough to exceed it; the check reads the limit the
server announces, whatever it is (8 MB for `wake up`'s).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events.payloads import AppSpec, ManifestsRendered, RenderFailed
from services.renderer.service import main as renderer_main
from services.wiring.embedded_nats import nats_server_binary
from services.wiring.eventlog import EventLog, provision
from services.wiring.ports import free_port
from tests.git_watcher.repos import GitRepo, configmap
from tests.renderer.test_renderer import detect, outcome_of, register, running
from tests.signing import trusting
from tests.waiting import eventually

SMALL_PAYLOAD = 64 * 1024


@pytest.fixture
async def small_payload_log(tmp_path: Path) -> AsyncIterator[EventLog]:
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        f"listen: 127.0.0.1:{port}\nmax_payload: {SMALL_PAYLOAD}\n"
        f'jetstream {{\n  store_dir: "{tmp_path / "js"}"\n}}\n'
    )
    server = subprocess.Popen(
        [nats_server_binary(), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        connected: list[EventLog] = []

        async def up() -> bool:
            try:
                connected.append(trusting(await EventLog.connect(f"nats://127.0.0.1:{port}")))
            except Exception:
                return False
            return True

        await eventually(up, what="the small-payload NATS server")
        log = connected[0]
        await provision(log.nc)
        try:
            yield log
        finally:
            await log.close()
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 10)


async def test_a_render_over_the_message_limit_fails_naming_size_and_limit(
    small_payload_log: EventLog, tmp_path: Path
) -> None:
    log = small_payload_log
    assert log.message_limit() < SMALL_PAYLOAD
    repo = GitRepo(tmp_path / "shop")
    many = "".join("---\n" + configmap(f"cm-{index:04d}") for index in range(800))
    huge = repo.commit("800 ConfigMaps", {"deploy/all.yaml": many})
    await register(log, AppSpec(repo_url=repo.url, path="deploy", namespace="shop"))

    async with running(log, tmp_path / "wake", "renderer", renderer_main):
        # When a revision renders into an event larger than the server takes
        failed = await outcome_of(log, await detect(log, repo, huge))
        # Then the render fails at once, naming the size and the limit
        assert isinstance(failed.payload, RenderFailed), failed.payload
        assert "800 resources" in failed.payload.error
        assert f"message limit of {log.message_limit()} bytes" in failed.payload.error

        # And the next, smaller commit renders
        small = repo.commit("fewer", {"deploy/all.yaml": configmap("only")})
        rendered = await outcome_of(log, await detect(log, repo, small))
    assert isinstance(rendered.payload, ManifestsRendered), rendered.payload
    assert await log.get_bundle(rendered.payload.bundle_digest)
