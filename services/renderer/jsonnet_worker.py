"""One jsonnet evaluation, in a process of its own: `python -m services.renderer.jsonnet_worker`.

The renderer runs jsonnet here, not in its own process, so that an
evaluation that outlives the render timeout can be killed (the C++ evaluator
cannot be interrupted from Python). The request comes as JSON on stdin:

    {"repo": <bare repository path>, "commit": <id>, "main": <repo path>,
     "ext_vars": {...}, "tla": {...}, "max_bytes": <input cap>}

and the answer on stdout is `ok` on a line, then a line with the JSON list of
the repository paths read (for git-watcher's change detection), then jsonnet's JSON text,
or `error` on a line followed by {"error": <message>, "file": <repo path>,
"line": <int or null>}.

Files are read from the commit's tree, never from a filesystem: an import is
resolved against the importing file's directory in the repository, and an
absolute import, one that climbs above the repository root, or a symlink
out of it is refused. Every byte read counts against the input cap.
"""

from __future__ import annotations

import json
import re
import resource
import sys
from typing import Any

import _jsonnet
import pygit2

from services.renderer.checkout import RepoTree
from services.renderer.manifests import RenderError
from services.wiring.git import RepoPath

# jsonnet's default, made explicit: deep recursion is an error, not a crash.
MAX_STACK = 500

# The address space the worker may use: an evaluation that builds a huge
# value fails on its own (bad_alloc, a non-zero exit) instead of pushing the
# machine into swap before the timeout kills it.
MEMORY_LIMIT = 2 * 1024 * 1024 * 1024

# "STATIC ERROR: a/b.jsonnet:3:5: ..." or a trace line "\ta/b.jsonnet:2:5-17\t...".
_LOCATION = re.compile(r"(?:^STATIC ERROR: |^\s+)(?P<file>[^\s:]+):(?P<line>\d+)[:(]", re.M)


class ImportRefused(Exception):
    pass


def import_path(directory: str, relative: str) -> RepoPath:
    """The repository path `relative` names, imported from a file in `directory`.

    Raises ImportRefused for an absolute path or one above the repository root.
    """
    if relative.startswith("/"):
        raise ImportRefused(f"absolute import {relative!r} refused: it leaves the repository")
    parts = [p for p in directory.strip("/").split("/") if p and p != "."]
    for segment in relative.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if not parts:
                raise ImportRefused(f"import {relative!r} leaves the repository")
            parts.pop()
        else:
            parts.append(segment)
    return RepoPath("/".join(parts) or ".")


def location(message: str) -> tuple[str, int | None]:
    """The first file and line jsonnet's error message names, or ("", None)."""
    match = _LOCATION.search(message)
    if match is None:
        return "", None
    return match["file"], int(match["line"])


def evaluate(request: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the request's main file; the answer object (see the module's docstring)."""
    repo = pygit2.Repository(request["repo"])
    tree = RepoTree(repo[request["commit"]], max_bytes=int(request["max_bytes"]))
    main = RepoPath(request["main"])

    def read(path: RepoPath) -> bytes:
        found = tree.find(path)
        if found is None or not isinstance(found[1], pygit2.Blob):
            raise ImportRefused(f"{path} does not exist at commit {tree.short}")
        return tree.count(found[1].data)

    def import_callback(directory: str, relative: str) -> tuple[str, bytes]:
        try:
            path = import_path(directory, relative)
            return str(path), read(path)
        except RenderError as exc:
            raise ImportRefused(str(exc)) from None

    try:
        source = read(main).decode("utf-8")
        output = _jsonnet.evaluate_snippet(
            str(main),
            source,
            ext_vars=dict(request.get("ext_vars") or {}),
            tla_vars=dict(request.get("tla") or {}),
            import_callback=import_callback,
            max_stack=MAX_STACK,
        )
    except (ImportRefused, RenderError) as exc:
        return {"error": str(exc), "file": str(main), "line": None}
    except UnicodeDecodeError as exc:
        return {"error": f"not UTF-8 text (byte {exc.start})", "file": str(main), "line": None}
    except RuntimeError as exc:
        message = str(exc).strip()
        file, line = location(message)
        first = message.splitlines()[0] if message else "jsonnet failed"
        return {"error": first, "file": file or str(main), "line": line}
    return {"output": output, "reads": sorted(tree.reads)}


def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > MEMORY_LIMIT:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    request = json.loads(sys.stdin.buffer.read())
    answer = evaluate(request)
    # The output goes out as it is: wrapping it in JSON would re-escape it all.
    if "output" in answer:
        sys.stdout.write("ok\n" + json.dumps(answer["reads"]) + "\n" + answer["output"])
    else:
        sys.stdout.write("error\n" + json.dumps(answer))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
