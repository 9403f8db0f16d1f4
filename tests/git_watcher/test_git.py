"""The shared git plumbing (services/wiring/git.py) on real repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.wiring.git import (
    CommitNotFound,
    InvalidRepoPath,
    Mirrors,
    RefNotFound,
    RepoPath,
    RepoUnreachable,
    check_reachable,
    check_ref,
    default_branch,
    mirror_name,
    normalize_url,
    redact,
    resolve,
    tree_id_of,
)
from tests.git_watcher.repos import GitRepo, configmap


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (".", "."),
        ("", "."),
        ("apps/web", "apps/web"),
        ("./apps/./web", "apps/web"),
        ("deploy", "deploy"),
    ],
)
def test_a_repo_path_is_normalized(value: str, expected: str):
    path = RepoPath.parse(value)
    assert path == expected
    assert isinstance(path, RepoPath)


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("/etc/passwd", "absolute"),
        ("../other", "'..'"),
        ("apps/../../x", "'..'"),
        ("apps//web", "empty segment"),
        ("apps/web/", "empty segment"),
        ("a\x00b", "NUL"),
    ],
)
def test_a_repo_path_refuses_escapes_and_empty_segments(value: str, complaint: str):
    with pytest.raises(InvalidRepoPath, match=complaint) as caught:
        RepoPath(value)
    assert repr(value) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_repo_path_parts_and_containment():
    app = RepoPath("apps/web")
    assert app.parts == ("apps", "web")
    assert RepoPath(".").parts == ()
    assert app.joinpath("base", "x.yaml") == "apps/web/base/x.yaml"
    assert RepoPath("apps/web/x.yaml").is_within(app)
    assert app.is_within(app)
    assert not RepoPath("apps/webshop/x.yaml").is_within(app)
    assert RepoPath("anything").is_within(RepoPath("."))
    assert RepoPath("apps/web/x.yaml").parent == app
    assert RepoPath("x.yaml").parent == "."


def test_urls_are_normalized_to_one_mirror_per_repository(tmp_path: Path):
    local = tmp_path / "repo"
    assert normalize_url(str(local)) == f"file://{local}"
    assert normalize_url(f"file://{local}/") == f"file://{local}"
    assert mirror_name(str(local)) == mirror_name(f"file://{local}")
    assert normalize_url("HTTPS://Example.COM/org/repo.git/") == "https://example.com/org/repo.git"
    assert normalize_url("https://user:token@example.com/r") == "https://example.com/r"
    assert normalize_url("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    assert mirror_name("https://a.example/r") != mirror_name("https://b.example/r")


def test_a_relative_path_is_normalized_from_the_directory_it_is_given_in(tmp_path, monkeypatch):
    # normalize_url remembers its answers: a relative path's depends on where it is asked.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert normalize_url("repo") == f"file://{tmp_path}/a/repo"
    monkeypatch.chdir(tmp_path / "b")
    assert normalize_url("repo") == f"file://{tmp_path}/b/repo"


def test_credentials_never_reach_a_message():
    assert redact("https://bot:s3cret@example.com/r.git") == "https://bot:***@example.com/r.git"
    assert redact("https://token@example.com/r.git") == "https://***@example.com/r.git"
    assert redact("/plain/path") == "/plain/path"
    exc = RepoUnreachable("https://bot:s3cret@example.com/r.git", "connection refused")
    assert "s3cret" not in str(exc)


async def test_fetch_resolves_branches_tags_and_commits(tmp_path: Path):
    repo = GitRepo(tmp_path / "src")
    first = repo.commit("one", {"apps/web/cm.yaml": configmap("web")})
    repo.git("tag", "v1")
    repo.git("tag", "-a", "v1-annotated", "-m", "release")
    second = repo.commit("two", {"apps/web/cm.yaml": configmap("web", "2")})
    repo.git("branch", "stable", first)

    mirrors = Mirrors(tmp_path / "mirrors")
    mirror = await mirrors.fetch(repo.url)
    assert mirror.path == tmp_path / "mirrors" / mirror_name(repo.url)
    assert resolve(mirror, "main") == second
    assert resolve(mirror, "stable") == first
    assert resolve(mirror, "v1") == first
    assert resolve(mirror, "v1-annotated") == first  # peeled to its commit
    assert resolve(mirror, "refs/heads/main") == second
    assert resolve(mirror, first) == first

    with pytest.raises(RefNotFound, match=r"ref 'nope' not found in repository .*src"):
        resolve(mirror, "nope")
    with pytest.raises(RefNotFound, match="no such commit"):
        resolve(mirror, "0" * 40)


async def test_a_file_url_and_a_plain_path_share_a_mirror_and_prune_follows_the_origin(
    tmp_path: Path,
):
    repo = GitRepo(tmp_path / "src")
    repo.commit("one", {"a.yaml": configmap("a")})
    repo.git("branch", "feature")
    mirrors = Mirrors(tmp_path / "mirrors")
    mirror = await mirrors.fetch(f"file://{repo.path}")
    assert resolve(mirror, "feature") == repo.head()

    repo.git("branch", "-D", "feature")
    mirror = await mirrors.fetch(repo.url)
    assert len(list((tmp_path / "mirrors").iterdir())) == 1
    with pytest.raises(RefNotFound):
        resolve(mirror, "feature")
    assert mirrors.fetches[normalize_url(repo.url)] == 2


async def test_tree_id_of_names_the_app_directory_or_none(tmp_path: Path):
    repo = GitRepo(tmp_path / "src")
    repo.commit("one", {"apps/web/cm.yaml": configmap("web"), "README.md": "hi\n"})
    mirror = await Mirrors(tmp_path / "mirrors").fetch(repo.url)
    commit = mirror.commit(resolve(mirror, "main"))
    assert tree_id_of(commit, RepoPath("apps/web")) == repo.git("rev-parse", "HEAD:apps/web")
    assert tree_id_of(commit, RepoPath(".")) == str(commit.tree.id)
    assert tree_id_of(commit, RepoPath("apps/api")) is None
    assert tree_id_of(commit, RepoPath("README.md")) is None  # a file, not a directory


async def test_a_missing_commit_is_fetched_once_then_reported(tmp_path: Path):
    repo = GitRepo(tmp_path / "src")
    repo.commit("one", {"a.yaml": configmap("a")})
    mirrors = Mirrors(tmp_path / "mirrors")
    await mirrors.fetch(repo.url)
    second = repo.commit("two", {"a.yaml": configmap("a", "2")})
    mirror = await mirrors.with_commit(repo.url, second)
    assert mirror.has(second)
    assert mirrors.fetches[normalize_url(repo.url)] == 2
    await mirrors.with_commit(repo.url, second)  # present: no fetch
    assert mirrors.fetches[normalize_url(repo.url)] == 2
    with pytest.raises(CommitNotFound, match="f" * 40):
        await mirrors.with_commit(repo.url, "f" * 40)


async def test_check_reachable_lists_refs_or_says_why_not(tmp_path: Path):
    repo = GitRepo(tmp_path / "src")
    head = repo.commit("one", {"a.yaml": configmap("a")})
    refs = await check_reachable(repo.url)
    assert refs["refs/heads/main"] == head

    missing = tmp_path / "nowhere"
    with pytest.raises(RepoUnreachable) as caught:
        await check_reachable(str(missing))
    message = str(caught.value)
    assert message.startswith(f"cannot reach repository {missing}: ")
    assert "\n" not in message and "nowhere" in caught.value.reason

    (tmp_path / "plain").mkdir()
    with pytest.raises(RepoUnreachable, match="plain"):
        await check_reachable(str(tmp_path / "plain"))

    with pytest.raises(RepoUnreachable, match=r"127\.0\.0\.1"):
        await check_reachable("http://127.0.0.1:9/repo.git")


async def test_an_unreachable_repository_fails_its_fetch_clearly(tmp_path: Path):
    mirrors = Mirrors(tmp_path / "mirrors")
    with pytest.raises(RepoUnreachable, match=r"cannot reach repository .*gone"):
        await mirrors.fetch(str(tmp_path / "gone"))


async def test_head_follows_the_remote_default_branch_and_refs_are_checked_remotely(
    tmp_path: Path,
):
    repo = GitRepo(tmp_path / "src")
    first = repo.commit("one", {"apps/web/cm.yaml": configmap("web")})
    repo.git("tag", "v1")
    repo.git("branch", "-m", "main", "trunk")
    second = repo.commit("two", {"apps/web/cm.yaml": configmap("web", "2")})
    repo.commit("three", {"apps/web/cm.yaml": configmap("web", "3")})

    mirror = await Mirrors(tmp_path / "mirrors").fetch(repo.url)
    assert default_branch(mirror) == "trunk"
    assert resolve(mirror, "HEAD") == repo.head()

    # The default branch changes upstream: the next fetch follows it.
    repo.git("checkout", "-q", "-b", "next", first)
    mirror = await Mirrors(tmp_path / "mirrors").fetch(repo.url)
    assert (default_branch(mirror), resolve(mirror, "HEAD")) == ("next", first)

    assert await check_ref(repo.url, "HEAD") == first
    assert await check_ref(repo.url, "trunk") != first
    assert await check_ref(repo.url, "v1") == first
    assert await check_ref(repo.url, second) == second  # no tip: found by a fetch
    with pytest.raises(RefNotFound, match="its branches: next, trunk"):
        await check_ref(repo.url, "nope")
    with pytest.raises(RefNotFound, match="no such commit on any branch or tag"):
        await check_ref(repo.url, "f" * 40)
