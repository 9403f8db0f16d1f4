"""`wake up` as its users run it: a foreground process that Ctrl-C stops cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from tests.waiting import eventually, process_gone

ROOT = Path(__file__).resolve().parents[2]


def wake(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args, "--data-dir", str(data_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_wake_up_serves_until_ctrl_c_then_stops_everything(tmp_path: Path):
    # Given `wake up --sandbox` started in the foreground
    data_dir = tmp_path / "data"
    up = subprocess.Popen(
        [
            sys.executable, "-m", "services.cli", "up", "--sandbox",
            "--data-dir", str(data_dir), "--log-dir", str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    endpoints_file = data_dir / "endpoints.json"
    try:
        # Then endpoints.json appears once every part is ready
        await eventually(endpoints_file.exists, timeout=90, what="endpoints.json written")
        endpoints = json.loads(endpoints_file.read_text())
        assert endpoints["nats_url"].startswith("nats://")
        assert endpoints["database_url"].startswith("postgresql://")
        assert Path(endpoints["kubeconfig"]).is_file()
        pids = [endpoints["nats_pid"], endpoints["postgres_pid"], *endpoints["services"].values()]
        assert set(endpoints["services"]) == {
            "git-watcher", "renderer", "planner", "applier", "notifier", "projector", "api",
        }  # fmt: skip
        assert endpoints["api_url"].startswith("http://127.0.0.1:")
        assert all(psutil.pid_exists(pid) for pid in pids)
        # and other commands find it through the data dir
        listed = wake("app", "list", data_dir=data_dir)
        assert listed.returncode == 0 and "no applications registered" in listed.stdout
        # When it gets Ctrl-C
        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
    finally:
        if up.poll() is None:
            up.kill()
    # Then it exits 0, having stopped every process it started and unpublished its endpoints
    assert up.returncode == 0, output
    assert "Stopped" in output
    # and it had printed the console's address and a one-time admin login link to it
    assert f"console         {endpoints['api_url']}/" in output
    assert f"admin login     {endpoints['api_url']}/login?key=wake_" in output
    assert not endpoints_file.exists()
    await eventually(
        lambda: all(process_gone(pid) for pid in pids),
        timeout=10,
        what="every process of wake up gone",
    )
    # and a command now says clearly that no Wake is running
    gone = wake("app", "list", data_dir=data_dir)
    assert gone.returncode != 0 and "no NATS server" in gone.stderr
