"""`wake demo` as a new user runs it: the log folder it prints is still there afterwards."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_keeps_the_logs_it_points_to_and_removes_the_rest(tmp_path: Path):
    # Given a fresh machine's temporary directory
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    # When the demo runs to its end
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Then the log folder it names exists, with a log of each process in it
    (logs,) = re.findall(r"Logs of every process are in (\S+)\.$", result.stdout, re.M)
    logs = Path(logs)
    assert logs.is_dir(), result.stdout
    assert any(path.stat().st_size > 0 for path in logs.iterdir())
    # and the rest of the demo (data, sample repository) is gone
    (workdir,) = re.findall(r"five services in (\S+) \.\.\.$", result.stdout, re.M)
    assert not Path(workdir).exists()
    assert not logs.is_relative_to(workdir)
