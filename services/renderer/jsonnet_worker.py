"""One jsonnet evaluation, in a process of its own: `python -m services.renderer.jsonnet_worker`.

The renderer runs jsonnet here, not in its own process, so that an
evaluation that outlives the render timeout can be killed (the C++ evaluator
cannot be interrupted from Python). The request comes as JSON on stdin:

    {"repo": <bare repository path>, "commit": <id>, "main": <repo path>,
     "ext_vars": {...}, "tla": {...}, "ext_code": {...}, "tla_code": {...},
     "libs": [<repo path>, ...], "max_bytes": <input cap>}

and the answer on stdout is `ok` on a line, then a line with the JSON list of
the repository paths read (for git-watcher's change detection), then jsonnet's JSON text,
or `error` on a line followed by {"error": <message>, "file": <repo path>,
"line": <int or null>}.

Files are read from the commit's tree, never from a filesystem: an import is
resolved against the importing file's directory in the repository, then
against each of the app's library folders, the first given first (the option
`libs`: Argo CD's `libs`, jsonnet's `-J`); an absolute import, one that climbs above the
repository root, or a symlink out of it is refused. Every byte read counts
against the input cap.
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

# Where jsonnet places code given as an argument: "tla:replicas:1:4" for a
# top-level argument, "<extvar:env>:1:1-5" for an ext var, first in the message
# (a static error) or first in the trace (a runtime error).
_ARGUMENT = re.compile(
    r"(?:^STATIC ERROR: |^\s+)(?:tla:(?P<tla>[^\s:]+)|<extvar:(?P<ext>[^\s>]+)>):\d+", re.M
)


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


# The location at the front of a static error's message, which RenderFailed
# already gives as its file and line (or names as the argument).
_STATIC_LOCATION = re.compile(
    r"^STATIC ERROR: (?:tla:[^\s:]+|<extvar:[^\s>]+>|[^\s:]+):[\d:()\-]+: "
)


def first_line(message: str) -> str:
    """The first line of jsonnet's error, without the location it starts with."""
    first = message.splitlines()[0] if message else "jsonnet failed"
    return _STATIC_LOCATION.sub("STATIC ERROR: ", first, count=1)


def argument_at_fault(message: str) -> str | None:
    """The code argument jsonnet's error is in, as the option that gave it, or None.

    Only a failure whose first location is the argument's code is blamed on
    it; one that merely passes through it on the way is the file's.
    """
    first = _LOCATION.search(message)
    blamed = _ARGUMENT.search(message)
    if blamed is None or (first is not None and first.start() < blamed.start()):
        return None
    if blamed["tla"]:
        return f"top-level argument {blamed['tla']} (--tla-code)"
    return f"ext var {blamed['ext']} (--ext-code)"


def evaluate(request: dict[str, Any]) -> dict[str, Any]:
    """Evaluate the request's main file; the answer object (see the module's docstring)."""
    repo = pygit2.Repository(request["repo"])
    tree = RepoTree(repo[request["commit"]], max_bytes=int(request["max_bytes"]), odb=repo.odb)
    main = RepoPath(request["main"])
    libs = [RepoPath(lib) for lib in request.get("libs") or []]

    def is_file(path: RepoPath) -> bool:
        found = tree.find(path)
        return found is not None and isinstance(found[1], pygit2.Blob)

    def read(path: RepoPath) -> bytes:
        found = tree.find(path)
        if found is None or not isinstance(found[1], pygit2.Blob):
            raise ImportRefused(f"{path} does not exist at commit {tree.short}")
        return tree.load(found[1])

    def import_callback(directory: str, relative: str) -> tuple[str, bytes]:
        try:
            path = import_path(directory, relative)
            if libs and not is_file(path):
                in_libs = (import_path(lib, relative) for lib in libs)
                found = [candidate for candidate in in_libs if is_file(candidate)]
                if not found:
                    raise ImportRefused(
                        f"{path} does not exist at commit {tree.short}, nor {relative} in "
                        f"the libs {', '.join(libs)}"
                    )
                path = found[0]
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
            ext_codes=dict(request.get("ext_code") or {}),
            tla_codes=dict(request.get("tla_code") or {}),
            import_callback=import_callback,
            max_stack=MAX_STACK,
        )
    except (ImportRefused, RenderError) as exc:
        return {"error": str(exc), "file": str(main), "line": None}
    except UnicodeDecodeError as exc:
        return {"error": f"not UTF-8 text (byte {exc.start})", "file": str(main), "line": None}
    except RuntimeError as exc:
        message = str(exc).strip()
        first = first_line(message)
        argument = argument_at_fault(message)
        if argument is not None:
            return {"error": f"{argument}: {first}", "file": str(main), "line": None}
        file, line = location(message)
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
