"""Debian's Chromium as the browser tests and bench/console.py launch it through Playwright.

Playwright's own browser download is not reachable here; `.ci/run` installs the
`chromium` package. Without the background-networking flags Chromium keeps
trying hosts this machine's closed network refuses.
"""

from __future__ import annotations

from typing import Any

EXECUTABLE = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


async def launch(playwright: Any) -> Any:
    """A headless Chromium browser of `playwright` (an async_playwright() context)."""
    return await playwright.chromium.launch(executable_path=EXECUTABLE, args=ARGS)
