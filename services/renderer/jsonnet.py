"""The jsonnet renderer: entry files evaluated in a worker process, their output as resources.

The entries are the app's main file, or every top-level `.jsonnet` file of a
directory, whose top-level YAML/JSON manifests then join them in one bundle (as
Argo CD's directory source renders them; see `selection`). Each evaluation runs
in `jsonnet_worker` (a subprocess, killed at the render timeout), with the app's
ext vars and top-level arguments (strings and code), reading files from
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

from services.renderer.manifests import RenderError, SourcedResource, render_sources
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
    entries: list[RepoPath],
    files: Mapping[str, bytes] | None = None,
    ext_vars: Mapping[str, str],
    tla: Mapping[str, str],
    ext_code: Mapping[str, str] | None = None,
    tla_code: Mapping[str, str] | None = None,
    libs: list[RepoPath] | None = None,
    namespace: str,
    limits: Limits,
    scratch: Path,
    reads: set[RepoPath] | None = None,
) -> list[SourcedResource]:
    """The resources `entries` evaluate to at `commit` of the bare repository `repo`, with
    the plain manifest `files` beside them, canonical.

    `reads`, if given, receives every repository path the evaluations read
    (each entry, each import and importstr, the symlinks on the way).
    """
    outputs = {
        str(entry): documents_of(
            evaluate_entry(
                repo=repo,
                commit=commit,
                entry=entry,
                arguments={
                    "ext_vars": dict(ext_vars),
                    "tla": dict(tla),
                    "ext_code": dict(ext_code or {}),
                    "tla_code": dict(tla_code or {}),
                    "libs": [str(lib) for lib in libs or []],
                },
                limits=limits,
                scratch=scratch,
                reads=reads,
            ),
            entry=str(entry),
        )
        for entry in entries
    }
    return render_sources(files or {}, outputs, namespace=namespace)


def evaluate_entry(
    *,
    repo: Path,
    commit: str,
    entry: RepoPath,
    arguments: Mapping[str, Any],
    limits: Limits,
    scratch: Path,
    reads: set[RepoPath] | None = None,
) -> Any:
    """jsonnet's output for one entry file, as a JSON value. Raises RenderError.

    `reads`, if given, receives the repository paths the evaluation read.
    """
    request = {
        "repo": str(repo),
        "commit": commit,
        "main": str(entry),
        **arguments,
        "max_bytes": limits.max_bytes,
    }
    finished = run_tool(
        [sys.executable, "-m", "services.renderer.jsonnet_worker"],
        what="jsonnet evaluation",
        file=entry,
        limits=limits,
        cwd=scratch,
        stdin=json.dumps(request).encode(),
        env={"PYTHONPATH": str(_PROJECT_ROOT)},
    )
    status, _, body = finished.stdout.partition(b"\n")
    if finished.returncode != 0 or status not in (b"ok", b"error"):
        detail = finished.stderr.splitlines()[-1] if finished.stderr else "no message"
        raise RenderError(
            entry, None, f"the jsonnet worker failed (exit {finished.returncode}): {detail}"
        )
    if status == b"error":
        error = json.loads(body)
        raise RenderError(error["file"] or entry, error["line"], error["error"])
    read_line, _, body = body.partition(b"\n")
    if reads is not None:
        reads.update(RepoPath(path) for path in json.loads(read_line))
    return json.loads(body)
