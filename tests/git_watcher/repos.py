"""Real git repositories for tests, made with the git CLI (symlinks, tags, resets and all)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# No user or system git configuration leaks into the tests' repositories.
GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}


class GitRepo:
    """A repository with a worktree on `main`; `url` is its plain path."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    @property
    def url(self) -> str:
        return str(self.path)

    def git(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            env={**os.environ, **GIT_ENV, **(env or {})},
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def commit(
        self,
        message: str,
        files: dict[str, str | bytes | None] | None = None,
        *,
        links: dict[str, str] | None = None,
        date: str = "2025-03-04T05:06:07+02:00",
    ) -> str:
        """Write files (None deletes), make symlinks {link: target}, commit all; the commit id."""
        for relative, content in (files or {}).items():
            target = self.path / relative
            if content is None:
                target.unlink()
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        for relative, link_to in (links or {}).items():
            link = self.path / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(link_to)
        self.git("add", "-A")
        self.git(
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
            env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date},
        )
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")


def configmap(name: str, value: str = "v") -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: {value}\n"
