"""Reading an app directory from a commit's tree: recursion, hidden dirs, symlinks (real git)."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from services.renderer.manifests import RenderError
from services.renderer.sources import read_app_files
from services.wiring.git import RepoPath
from tests.git_watcher.repos import GitRepo, configmap


def read(repo: GitRepo, app_path: str) -> dict[str, bytes]:
    commit = pygit2.Repository(str(repo.path)).revparse_single("HEAD")
    return dict(read_app_files(commit, RepoPath(app_path)).files)


def test_the_app_directory_is_read_recursively_manifests_only(tmp_path: Path):
    repo = GitRepo(tmp_path / "r")
    repo.commit(
        "files",
        {
            "apps/web/a.yaml": configmap("a"),
            "apps/web/sub/deeper/b.yml": configmap("b"),
            "apps/web/c.json": '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}',
            "apps/web/README.md": "not a manifest\n",
            "apps/web/.github/workflow.yaml": "on: push\n",
            "apps/web/.hidden.yaml": configmap("hidden-file"),
            "apps/api/x.yaml": configmap("x"),
        },
    )
    assert sorted(read(repo, "apps/web")) == [
        "apps/web/.hidden.yaml",
        "apps/web/a.yaml",
        "apps/web/c.json",
        "apps/web/sub/deeper/b.yml",
    ]
    assert read(repo, "apps/web")["apps/web/a.yaml"] == configmap("a").encode()
    assert len(read(repo, ".")) == 5


def test_symlinks_inside_the_app_path_are_followed_from_the_tree(tmp_path: Path):
    repo = GitRepo(tmp_path / "r")
    repo.commit(
        "links",
        {"apps/web/base/cm.yaml": configmap("base"), "apps/web/base/notes.txt": "x"},
        links={
            "apps/web/overlay/cm.yaml": "../base/cm.yaml",
            "apps/web/shared": "base",
            "apps/web/chain.yaml": "overlay/cm.yaml",
        },
    )
    # The working copy may say anything: only the commit's blobs are read.
    (repo.path / "apps/web/base/cm.yaml").write_text("tampered after commit\n")
    files = read(repo, "apps/web")
    assert sorted(files) == [
        "apps/web/base/cm.yaml",
        "apps/web/chain.yaml",
        "apps/web/overlay/cm.yaml",
        "apps/web/shared/cm.yaml",
    ]
    assert set(files.values()) == {configmap("base").encode()}


@pytest.mark.parametrize(
    ("link", "target", "complaint"),
    [
        ("apps/web/steal.yaml", "../api/secret.yaml", "leaves the app path apps/web"),
        ("apps/web/passwd.yaml", "../../../../etc/passwd", "leaves the repository"),
        ("apps/web/abs.yaml", "/etc/passwd", "absolute target"),
        ("apps/web/everything", "../..", "leaves the app path"),
        ("apps/web/dangling.yaml", "nowhere.yaml", "does not exist"),
        ("apps/web/loop", "..", "leaves the app path"),
        ("apps/web/sub/self", "..", "directory loop"),
    ],
)
def test_a_symlink_that_leaves_the_app_path_or_leads_nowhere_is_refused(
    tmp_path: Path, link: str, target: str, complaint: str
):
    repo = GitRepo(tmp_path / "r")
    repo.commit(
        "bad link",
        {
            "apps/web/ok.yaml": configmap("ok"),
            "apps/web/sub/x.yaml": configmap("x"),
            "apps/api/secret.yaml": configmap("secret"),
        },
        links={link: target},
    )
    with pytest.raises(RenderError) as caught:
        read(repo, "apps/web")
    assert caught.value.file == link
    assert complaint in caught.value.message


def test_a_symlink_through_a_link_out_of_the_app_is_refused(tmp_path: Path):
    repo = GitRepo(tmp_path / "r")
    repo.commit(
        "two hops",
        {"apps/api/secret.yaml": configmap("secret")},
        links={"apps/web/out": "../api", "apps/web/cm.yaml": "out/secret.yaml"},
    )
    with pytest.raises(RenderError, match="leaves the app path"):
        read(repo, "apps/web")


def test_a_missing_or_odd_app_path_is_named(tmp_path: Path):
    repo = GitRepo(tmp_path / "r")
    repo.commit(
        "odd",
        {"apps/web/a.yaml": configmap("a"), "file.yaml": configmap("f")},
        links={"linked": "apps/web"},
    )
    with pytest.raises(RenderError, match="does not exist at commit") as caught:
        read(repo, "apps/gone")
    assert caught.value.file == "apps/gone"
    with pytest.raises(RenderError, match="not a directory"):
        read(repo, "file.yaml")
    with pytest.raises(RenderError, match="through the symlink linked"):
        read(repo, "linked")
