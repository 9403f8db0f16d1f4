"""kubernetes_asyncio loaded without its generated models, and whole when asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_talking_to_a_cluster_loads_no_generated_model_or_api_class():
    out = _run(
        "import sys, services.wiring.kube\n"
        "loaded = [m for m in sys.modules if m.startswith('kubernetes_asyncio.client.')]\n"
        "print(sorted(m for m in loaded if '.models.' in m or '.api.' in m))"
    )
    assert out == "[]"


def test_the_whole_library_is_there_for_whoever_asks_for_it():
    out = _run(
        "import services.wiring.kube\n"
        "from kubernetes_asyncio import client, watch\n"
        "from kubernetes_asyncio.dynamic import DynamicClient\n"
        "import kubernetes_asyncio\n"
        "print(client.CoreV1Api.__name__, client.models.V1Pod.__name__, watch.Watch.__name__,"
        " DynamicClient.__name__, kubernetes_asyncio.__version__.count('.'))"
    )
    assert out == "CoreV1Api V1Pod Watch DynamicClient 2"
