"""The webhook core (webhooks.py) with literals: signatures, payloads, matching. No server."""

from __future__ import annotations

import json

import pytest

from services.git_watcher.webhooks import (
    Candidate,
    Notice,
    Secret,
    WebhookError,
    hmac_sha256_hex,
    parse,
    ref_matches,
    repo_key,
    triage,
    verify,
)

GLOBAL = Secret("global", b"global-secret")
TEAM = Secret("app pay", b"team-secret")
BODY = b'{"ref": "refs/heads/main"}'


def signed(secret: bytes, body: bytes = BODY) -> str:
    return "sha256=" + hmac_sha256_hex(secret, body)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Org/Shop.git",
        "https://github.com/org/shop",
        "https://github.com/org/shop/",
        "HTTPS://GitHub.com/org/shop.git/",
        "git@github.com:org/shop.git",
        "ssh://git@github.com:22/org/shop.git",
        "git://github.com/org/shop.git",
        "https://bot:token@github.com/org/shop.git",
    ],
)
def test_every_spelling_of_a_repository_has_one_key(url: str):
    assert repo_key(url) == "github.com/org/shop"


def test_different_repositories_and_local_paths_keep_apart():
    assert repo_key("https://github.com/org/shop") != repo_key("https://github.com/org/shop2")
    assert repo_key("https://github.com/org/shop") != repo_key("https://gitlab.com/org/shop")
    assert repo_key("/srv/git/shop.git") == repo_key("file:///srv/git/shop") == "/srv/git/shop"


@pytest.mark.parametrize(
    ("provider", "header", "value"),
    [
        ("github", "X-Hub-Signature-256", signed(b"global-secret")),
        ("bitbucket", "X-Hub-Signature", signed(b"global-secret")),
        ("generic", "X-Wake-Signature", signed(b"global-secret")),
        ("gitea", "X-Gitea-Signature", hmac_sha256_hex(b"global-secret", BODY)),
        ("gitea", "X-Forgejo-Signature", hmac_sha256_hex(b"global-secret", BODY)),
        ("gitlab", "X-Gitlab-Token", "global-secret"),
    ],
)
def test_each_providers_signature_verifies_with_the_right_secret_only(provider, header, value):
    verified = verify(provider, {header: value}, BODY, [GLOBAL, TEAM])
    assert verified is not None and verified.signed_with == {"global"}
    assert verify(provider, {header: value}, BODY, [TEAM]) is None
    assert verify(provider, {}, BODY, [GLOBAL]) is None
    if provider != "gitlab":
        # Same signature, another body: a replayed signature proves nothing.
        assert verify(provider, {header: value}, BODY + b" ", [GLOBAL]) is None


def test_a_signature_without_its_prefix_or_for_another_algorithm_is_refused():
    bare = hmac_sha256_hex(b"global-secret", BODY)
    assert verify("github", {"X-Hub-Signature-256": bare}, BODY, [GLOBAL]) is None
    assert verify("github", {"X-Hub-Signature-256": "sha1=" + bare}, BODY, [GLOBAL]) is None
    assert verify("github", {"X-Hub-Signature-256": "sha256="}, BODY, [GLOBAL]) is None
    assert verify("github", {"X-Hub-Signature-256": signed(b"")}, BODY, [Secret("x", b"")]) is None


def test_a_body_signed_with_an_apps_secret_says_so():
    verified = verify(
        "github", {"x-hub-signature-256": signed(b"team-secret")}, BODY, [GLOBAL, TEAM]
    )
    assert verified is not None and verified.signed_with == {"app pay"}
    assert "team-secret" not in repr(TEAM)


def github_push(ref: str = "refs/heads/main") -> bytes:
    return json.dumps(
        {
            "ref": ref,
            "after": "f" * 40,
            "repository": {
                "clone_url": "https://github.com/org/shop.git",
                "html_url": "https://github.com/org/shop",
                "ssh_url": "git@github.com:org/shop.git",
                "git_url": "git://github.com/org/shop.git",
            },
        }
    ).encode()


def test_github_push_ping_and_other_events():
    notice = parse("github", {"X-GitHub-Event": "push"}, github_push())
    assert notice.kind == "push" and notice.refs == ("refs/heads/main",)
    assert notice.repo_keys == {"github.com/org/shop"}
    assert len(notice.repo_urls) == 4
    assert parse("github", {"X-GitHub-Event": "ping"}, b'{"zen": "x"}').kind == "ping"
    assert parse("github", {"X-GitHub-Event": "issues"}, b"{}").kind == "other"


def test_github_form_encoded_payload():
    from urllib.parse import urlencode

    body = urlencode({"payload": github_push().decode()}).encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/x-www-form-urlencoded"}
    assert parse("github", headers, body).refs == ("refs/heads/main",)


def test_gitlab_push_tag_push_system_hook_and_test():
    body = json.dumps(
        {
            "object_kind": "push",
            "ref": "refs/heads/main",
            "project": {
                "git_http_url": "https://gitlab.example/group/shop.git",
                "git_ssh_url": "git@gitlab.example:group/shop.git",
                "web_url": "https://gitlab.example/group/shop",
            },
        }
    ).encode()
    notice = parse("gitlab", {"X-Gitlab-Event": "Push Hook"}, body)
    assert notice.kind == "push" and notice.repo_keys == {"gitlab.example/group/shop"}
    assert parse("gitlab", {"X-Gitlab-Event": "System Hook"}, body).kind == "push"
    assert parse("gitlab", {"X-Gitlab-Event": "System Hook"}, b'{"event_name": "x"}').kind == (
        "ping"
    )
    assert parse("gitlab", {"X-Gitlab-Event": "Issue Hook"}, b"{}").kind == "other"


def test_gitea_and_forgejo_push():
    body = json.dumps(
        {
            "ref": "refs/heads/dev",
            "repository": {
                "clone_url": "https://gitea.example/org/shop.git",
                "ssh_url": "git@gitea.example:org/shop.git",
            },
        }
    ).encode()
    for header in ("X-Gitea-Event", "X-Forgejo-Event"):
        notice = parse("gitea", {header: "push"}, body)
        assert notice.kind == "push" and notice.refs == ("refs/heads/dev",)
    assert parse("gitea", {}, b'{"hook": {"id": 1}}').kind == "ping"


def test_bitbucket_push_names_every_changed_branch_and_tag():
    body = json.dumps(
        {
            "repository": {
                "full_name": "team/shop",
                "links": {"html": {"href": "https://bitbucket.org/team/shop"}},
            },
            "push": {
                "changes": [
                    {"new": {"type": "branch", "name": "main"}},
                    {"new": {"type": "tag", "name": "v1"}},
                    {"new": None, "old": {"type": "branch", "name": "gone"}},
                ]
            },
        }
    ).encode()
    notice = parse("bitbucket", {"X-Event-Key": "repo:push"}, body)
    assert notice.refs == ("refs/heads/main", "refs/tags/v1", "refs/heads/gone")
    assert notice.repo_keys == {"bitbucket.org/team/shop"}
    assert "git@bitbucket.org:team/shop.git" in notice.repo_urls
    assert parse("bitbucket", {"X-Event-Key": "diagnostics:ping"}, b"{}").kind == "ping"


def test_generic_push_with_and_without_a_ref():
    notice = parse("generic", {}, b'{"repo_url": "https://git.example/shop", "ref": "main"}')
    assert notice.refs == ("refs/heads/main",)
    assert parse("generic", {}, b'{"repo_url": "/srv/shop"}').refs == ()
    assert parse("generic", {}, b'{"event": "ping"}').kind == "ping"


@pytest.mark.parametrize(
    ("provider", "headers", "body", "complaint"),
    [
        ("github", {"X-GitHub-Event": "push"}, b"not json", "not JSON"),
        ("github", {"X-GitHub-Event": "push"}, b"[1]", "not a JSON object"),
        ("github", {"X-GitHub-Event": "push"}, b'{"repository": {}}', "no repository URL"),
        ("gitea", {"X-Gitea-Event": "push"}, b'{"repository": {"clone_url": "x"}}', "'ref'"),
        ("generic", {}, b'{"ref": "main"}', "repo_url"),
        ("bitbucket", {"X-Event-Key": "repo:push"}, b'{"push": {}}', "no branch"),
    ],
)
def test_a_payload_missing_what_matters_is_a_clear_error(provider, headers, body, complaint):
    with pytest.raises(WebhookError, match=complaint) as caught:
        parse(provider, headers, body)
    assert provider in str(caught.value)


def test_refs_match_branches_tags_and_never_pinned_commits():
    assert ref_matches("main", ["refs/heads/main"])
    assert ref_matches("refs/heads/main", ["refs/heads/main"])
    assert not ref_matches("main", ["refs/heads/dev"])
    assert ref_matches("v1", ["refs/tags/v1"])
    # HEAD (the default branch, known only to a fetch): a push to any branch may move it.
    assert ref_matches("HEAD", ["refs/heads/trunk"])
    assert not ref_matches("HEAD", ["refs/tags/v1"])
    assert not ref_matches("a" * 40, ["refs/heads/main"])
    assert ref_matches("dev", [])


def test_triage_keeps_apps_of_the_named_repo_on_the_pushed_ref_with_their_secret():
    candidates = [
        Candidate("web", "https://github.com/org/shop.git", "main", "global"),
        Candidate("api", "git@github.com:org/shop.git", "main", "global"),
        Candidate("preview", "https://github.com/org/shop", "dev", "global"),
        Candidate("pay", "https://github.com/org/shop", "main", "app pay"),
        Candidate("elsewhere", "https://github.com/org/other", "main", "global"),
    ]
    notice = Notice(
        kind="push",
        event="push",
        repo_urls=("https://github.com/org/shop.git",),
        refs=("refs/heads/main",),
    )
    by_global = verify("github", {"X-Hub-Signature-256": signed(b"global-secret")}, BODY, [GLOBAL])
    assert by_global is not None
    decided = triage(notice, by_global, candidates)
    assert decided.to_check == ("web", "api")
    assert decided.other_branch == ("preview",)
    assert decided.wrong_secret == ("pay",)
    by_team = verify("github", {"X-Hub-Signature-256": signed(b"team-secret")}, BODY, [TEAM])
    assert by_team is not None
    assert triage(notice, by_team, candidates).to_check == ("pay",)
