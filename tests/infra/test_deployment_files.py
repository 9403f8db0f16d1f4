"""docker-compose.yml and the NATS config it mounts: the files exist and do what they say."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import nats
import nats.errors
import pytest
import yaml

from services.wiring.credentials import load_connect_kwargs
from services.wiring.embedded_nats import free_port, nats_server_binary

REPO = Path(__file__).resolve().parents[2]
NATS_CONFIG = REPO / "infra" / "nats" / "nats-server.conf"


def test_compose_names_files_that_exist() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]

    mounts = [volume.split(":")[0] for volume in services["nats"]["volumes"]]
    assert "./infra/nats/nats-server.conf" in mounts
    assert (REPO / services["wake-infra"]["build"]["dockerfile"]).is_file()
    assert services["wake-infra"]["command"] == ["infra", "provision"]


async def test_nats_config_runs_jetstream_with_fsync_on_every_write(tmp_path: Path) -> None:
    # The same file with the container's addresses and volume swapped for local ones,
    # and the users `wake infra credentials` makes.
    client_port, monitor_port = free_port(), free_port()
    config = (
        NATS_CONFIG.read_text()
        .replace("listen: nats:4222", f"listen: 127.0.0.1:{client_port}")
        .replace("127.0.0.1:8222", f"127.0.0.1:{monitor_port}")
        .replace("store_dir: /data", f'store_dir: "{tmp_path / "data"}"')
    )
    (tmp_path / "nats-server.conf").write_text(config)
    made = subprocess.run(
        [sys.executable, "-m", "services.cli", "infra", "credentials",
         "--dir", str(tmp_path / "auth")],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    server = await asyncio.create_subprocess_exec(
        nats_server_binary(), "-c", str(tmp_path / "nats-server.conf"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as http:
            varz = await _wait_for_json(http, f"http://127.0.0.1:{monitor_port}/varz", within=20)
        jetstream = varz["jetstream"]["config"]
        assert jetstream["sync_always"] is True
        assert jetstream["store_dir"].startswith(str(tmp_path / "data"))
        # and only Wake's identities get in
        url = f"nats://127.0.0.1:{client_port}"
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)
        operator = load_connect_kwargs(tmp_path / "auth" / "operator.json")
        nc = await nats.connect(url, allow_reconnect=False, **operator)
        await nc.close()
    finally:
        server.terminate()
        await server.wait()


def test_compose_binds_no_wildcard_address_and_exposes_no_monitoring_port() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["nats"]["ports"] == ["127.0.0.1:4222:4222"]
    assert "0.0.0.0" not in NATS_CONFIG.read_text()
    # and each Wake container gets its own NATS identity, the provisioning the admin's
    assert services["wake-infra"]["environment"]["WAKE_NATS_CREDENTIALS"] == (
        "/run/secrets/nats-admin"
    )
    for name in ("git-watcher", "renderer", "planner", "applier", "notifier", "projector"):
        # (its only NATS identity; the keys and database password are the others)
        nats_secrets = [s for s in services[name]["secrets"] if s.startswith("nats-")]
        assert nats_secrets == [f"nats-{name}"]
        assert services[name]["environment"]["WAKE_NATS_CREDENTIALS"] == (
            f"/run/secrets/nats-{name}"
        )
        assert compose["secrets"][f"nats-{name}"]["file"] == f"./secrets/nats/{name}.json"


async def _wait_for_json(http: aiohttp.ClientSession, url: str, *, within: float) -> dict:
    deadline = time.monotonic() + within
    while True:
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as response:
                return await response.json()
        except (aiohttp.ClientError, TimeoutError):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {within}s") from None
            await asyncio.sleep(0.05)


def test_every_wake_command_compose_names_exists() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    commands = [
        service["command"]
        for service in compose["services"].values()
        if service.get("image") == "wake:local"
    ]
    assert ["run", "applier"] in commands and len(commands) >= 6
    for command in commands:
        result = subprocess.run(
            [sys.executable, "-m", "services.cli", *command, "--help"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert result.returncode == 0, f"wake {' '.join(command)}: {result.stderr}"


def test_every_service_runs_from_the_one_image() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    for name in ("git-watcher", "renderer", "planner", "applier", "notifier", "projector"):
        assert services[name]["command"] == ["run", name]
        assert services[name]["depends_on"]["wake-infra"]["condition"] == (
            "service_completed_successfully"
        )
