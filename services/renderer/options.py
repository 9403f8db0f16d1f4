"""The renderer options an app may set (`wake app add --option KEY=VALUE`). Pure.

Light on purpose: the CLI lists them in its help and refuses any other.
"""

from __future__ import annotations

from collections.abc import Mapping

# Every option and what it does; `selection` reads them.
RENDERER_OPTIONS = {
    "main": "the jsonnet entry file, relative to the app path; without it, main.jsonnet "
    "if there is one, else every top-level .jsonnet file",
    "libs": "comma-separated folders, relative to the repository root, where jsonnet "
    "looks for an import not found beside the importing file (e.g. vendor)",
}


def unknown_options(options: Mapping[str, str]) -> str | None:
    """Why `options` cannot be used (a message listing the known ones), or None."""
    unknown = sorted(set(options) - set(RENDERER_OPTIONS))
    if not unknown:
        return None
    known = ", ".join(sorted(RENDERER_OPTIONS))
    return f"unknown renderer option {', '.join(map(repr, unknown))}: the known ones are {known}"
