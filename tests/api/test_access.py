"""The console's pure cores: tokens, roles, the failed-login limit, diffs, the OpenAPI document."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from services.api import access, diffs, openapi


def test_a_token_is_random_and_only_its_digest_identifies_it():
    token = access.new_token()
    assert access.well_formed(token) and token != access.new_token()
    stored = access.digest(token)
    assert token not in stored and len(stored) == 64
    assert access.matches(token, stored)
    assert not access.matches(access.new_token(), stored)
    assert not access.well_formed("wake_short") and not access.well_formed("")


@pytest.mark.parametrize("name", ["", "Ana", "-x", "a b", "a:b", "x" * 64, "console"])
def test_a_token_name_that_is_no_actor_name_is_refused(name):
    with pytest.raises(access.InvalidTokenName, match="token name"):
        access.token_name(name)


def test_roles_rank_and_an_approver_acts_only_on_its_apps():
    viewer = access.Principal(name="v", role="viewer")
    approver = access.Principal(name="a", role="approver", apps="shop-*")
    admin = access.Principal(name="root", role="admin", apps="shop-*")
    assert viewer.may("viewer", "anything") and not viewer.may("approver", "shop-web")
    assert approver.may("approver", "shop-web") and not approver.may("approver", "billing")
    assert approver.may("viewer", "billing") and not approver.may("admin")
    assert admin.may("admin", "billing") and admin.may("approver", "billing")
    assert approver.actor == "token:a"


def test_failed_logins_are_limited_per_client_until_they_age_out():
    now = [1000.0]
    limiter = access.LoginLimiter(clock=lambda: now[0], limit=3, window=60)
    for _ in range(3):
        assert limiter.blocked("10.0.0.1") == 0
        limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1") == pytest.approx(60)
    assert limiter.blocked("10.0.0.2") == 0
    now[0] += 61
    assert limiter.blocked("10.0.0.1") == 0


def test_live_tokens_fold_creations_and_revocations():
    events = [("TokenCreated", "a"), ("TokenCreated", "b"), ("TokenRevoked", "a")]
    assert access.live_tokens(events) == {"b"}
    assert access.live_tokens([*events, ("TokenCreated", "a")]) == {"a", "b"}


def test_a_unified_diff_is_shown_side_by_side():
    diff = (
        "--- live\n+++ planned\n@@ -1,3 +1,3 @@\n"
        " kind: Deployment\n-replicas: 2\n+replicas: 3\n+x: 1\n"
    )
    rows = diffs.side_by_side(diff)
    assert [(r.kind, r.left, r.right) for r in rows if r.kind != "file"] == [
        ("hunk", "@@ -1,3 +1,3 @@", "@@ -1,3 +1,3 @@"),
        ("context", "kind: Deployment", "kind: Deployment"),
        ("change", "replicas: 2", "replicas: 3"),
        ("change", None, "x: 1"),
    ]


def test_the_openapi_document_is_valid_openapi_3_1():
    document = openapi.document()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert ("GET", "/api/v1/apps") in openapi.paths()
    assert ("POST", "/api/v1/plans/{plan_id}/approve") in openapi.paths()
