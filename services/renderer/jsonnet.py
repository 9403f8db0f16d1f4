"""The jsonnet renderer: the app's main file evaluated in a worker process, its output as resources.

The evaluation runs in `jsonnet_worker` (a subprocess, killed at the render
timeout), with the app's ext vars and top-level arguments, reading files from
the commit's tree with imports confined to the repository. Its output may be
a resource, a `kind: List`, an array of them, or an object whose fields hold
them at any depth (as Tanka and kubecfg lay out an environment); fields are
read in key order so the result does not depend on how jsonnet prints.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from services.renderer.manifests import RenderError, SourcedResource, render_values
from services.renderer.processes import Limits, run_tool
from services.wiring.git import RepoPath

# The worker imports Wake from where this file is, whatever the cwd.
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


def documents_of(value: Any, *, entry: str, at: str = "$") -> list[Any]:
    """The resources (or Lists) in jsonnet's output `value`, in a stable order.

    Raises RenderError naming `entry` and the JSON path of a value that is
    neither a resource, an array nor an object.
    """
    if isinstance(value, list):
        out: list[Any] = []
        for index, item in enumerate(value):
            out.extend(documents_of(item, entry=entry, at=f"{at}[{index}]"))
        return out
    if isinstance(value, dict):
        if "kind" in value or "apiVersion" in value:
            return [value]
        out = []
        for key in sorted(value):
            out.extend(documents_of(value[key], entry=entry, at=f"{at}.{key}"))
        return out
    raise RenderError(
        entry,
        None,
        f"jsonnet output at {at} is a {type(value).__name__}: expected a resource, "
        "an array or an object of resources",
    )


def render_jsonnet(
    *,
    repo: Path,
    commit: str,
    main: RepoPath,
    ext_vars: Mapping[str, str],
    tla: Mapping[str, str],
    namespace: str,
    limits: Limits,
    scratch: Path,
    reads: set[RepoPath] | None = None,
) -> list[SourcedResource]:
    """The resources `main` evaluates to at `commit` of the bare repository `repo`, canonical.

    `reads`, if given, receives every repository path the evaluation read
    (`main`, each import and importstr, the symlinks on the way).
    """
    request = {
        "repo": str(repo),
        "commit": commit,
        "main": str(main),
        "ext_vars": dict(ext_vars),
        "tla": dict(tla),
        "max_bytes": limits.max_bytes,
    }
    finished = run_tool(
        [sys.executable, "-m", "services.renderer.jsonnet_worker"],
        what="jsonnet evaluation",
        file=main,
        limits=limits,
        cwd=scratch,
        stdin=json.dumps(request).encode(),
        env={"PYTHONPATH": str(_PROJECT_ROOT)},
    )
    status, _, body = finished.stdout.partition(b"\n")
    if finished.returncode != 0 or status not in (b"ok", b"error"):
        detail = finished.stderr.splitlines()[-1] if finished.stderr else "no message"
        raise RenderError(
            main, None, f"the jsonnet worker failed (exit {finished.returncode}): {detail}"
        )
    if status == b"error":
        error = json.loads(body)
        raise RenderError(error["file"] or main, error["line"], error["error"])
    read_line, _, body = body.partition(b"\n")
    if reads is not None:
        reads.update(RepoPath(path) for path in json.loads(read_line))
    value = json.loads(body)
    return render_values(documents_of(value, entry=main), entry=main, namespace=namespace)
