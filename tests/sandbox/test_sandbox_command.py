"""`wake sandbox` runs the emulator in the foreground until SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import yaml

from services.wiring.ports import free_port


async def test_wake_sandbox_serves_writes_a_kubeconfig_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    kubeconfig = tmp_path / "kubeconfig"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from services.cli.main import cli; cli()",
        "sandbox",
        "--port",
        str(port),
        "--kubeconfig",
        str(kubeconfig),
        "--latency-ms",
        "1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 20)
        assert b"Wake sandbox (Kubernetes API emulator" in first
        assert f"listening on http://127.0.0.1:{port}".encode() in first
        second = await asyncio.wait_for(process.stdout.readline(), 5)
        assert str(kubeconfig).encode() in second

        config = yaml.safe_load(kubeconfig.read_text())
        assert config["current-context"] == "wake-sandbox"
        assert config["clusters"][0]["cluster"]["server"] == f"http://127.0.0.1:{port}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/version") as response,
        ):
            assert (await response.json())["gitVersion"].endswith("-wake-emulator")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        rest, errors = await asyncio.wait_for(process.communicate(), 20)

    assert process.returncode == 0, errors.decode()
    assert b"Wake sandbox stopped." in rest
