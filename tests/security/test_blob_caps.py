"""Issue 10 item 8: a blob over the input cap is refused from its header, never loaded."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pygit2
import pytest

from services.renderer.checkout import InputTooLarge, RepoTree
from services.renderer.manifests import RenderError
from services.renderer.sources import read_app_files
from services.wiring.git import RepoPath

BIG = 200 * 1024 * 1024  # zeros: a few hundred KB in git, 200 MB once inflated
CAP = 1024 * 1024


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def hostile_repo(tmp_path_factory: pytest.TempPathFactory) -> pygit2.Repository:
    root = tmp_path_factory.mktemp("hostile")
    git(root, "init", "-q")
    (root / "deploy").mkdir()
    with open(root / "deploy" / "huge.yaml", "wb") as handle:
        handle.truncate(BIG)
    (root / "deploy" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    (root / "small").mkdir()
    (root / "small" / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\n")
    git(root, "add", ".")
    git(root, "commit", "-qm", "a 200 MB manifest")
    (root / "deploy" / "huge.yaml").unlink()
    return pygit2.Repository(str(root))


def reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM (the peak resident size) to now.
    Path("/proc/self/clear_refs").write_text("5")


def peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def test_a_huge_blob_is_refused_before_it_is_loaded(hostile_repo: pygit2.Repository) -> None:
    commit = hostile_repo.head.peel(pygit2.Commit)
    reset_peak()
    before = peak()

    tree = RepoTree(commit, max_bytes=CAP, odb=hostile_repo.odb)
    with pytest.raises(InputTooLarge, match="input cap"):
        tree.read(RepoPath("deploy/huge.yaml"), via="test")
    with pytest.raises(RenderError, match="over the input cap"):
        read_app_files(commit, RepoPath("deploy"), max_bytes=CAP, odb=hostile_repo.odb)

    # Nothing near the blob's 200 MB was ever held in memory
    assert peak() - before < 50 * 1024 * 1024

    # And a normal read within the cap still works
    files = read_app_files(commit, RepoPath("small"), max_bytes=CAP, odb=hostile_repo.odb)
    assert list(files.files) == [RepoPath("small/cm.yaml")]
    fresh = RepoTree(commit, max_bytes=CAP, odb=hostile_repo.odb)
    assert b"ConfigMap" in fresh.read(RepoPath("deploy/cm.yaml"), via="test")
