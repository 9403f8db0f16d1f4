"""Finding applied revisions and comparing their bundles: pure functions over literals."""

from __future__ import annotations

import pytest

from events import new_event
from events.bundle import Bundle
from events.payloads import ApplySucceeded
from services.catalog.revisions import (
    RevisionNotApplied,
    applied_revisions,
    changed_pointers,
    diff_bundles,
    find_applied,
)

A, B = "a" * 40, "ab" + "c" * 38


def applied(seq: int, commit: str, apply_id: str):
    payload = ApplySucceeded(
        apply_id=apply_id, plan_id="p", commit=commit, bundle_digest="0" * 64, inventory=[]
    )
    return seq, new_event(payload, app="shop", actor="service:applier")


HISTORY = applied_revisions(
    [applied(3, A, "apply-1"), applied(9, B, "apply-2"), applied(12, A, "apply-3")]
)


def test_a_commit_names_its_latest_apply_and_an_apply_id_names_itself():
    assert find_applied("shop", HISTORY, A).apply.apply_id == "apply-3"
    assert find_applied("shop", HISTORY, "apply-1").apply.apply_id == "apply-1"
    assert find_applied("shop", HISTORY, "abcc").apply.apply_id == "apply-2"


@pytest.mark.parametrize(
    ("target", "message"),
    [("f" * 40, "never applied to shop"), ("a", "too short"), ("aaaa", None)],
)
def test_a_revision_never_applied_is_a_clear_error(target, message):
    if message is None:
        assert find_applied("shop", HISTORY, target).apply.commit == A
        return
    with pytest.raises(RevisionNotApplied, match=message):
        find_applied("shop", HISTORY, target)


def test_an_ambiguous_prefix_is_refused():
    history = applied_revisions(
        [applied(1, "abcd" + "1" * 36, "x"), applied(2, "abcd" + "2" * 36, "y")]
    )
    with pytest.raises(RevisionNotApplied, match="several applied commits"):
        find_applied("shop", history, "abcd")


def test_a_unique_prefix_of_an_apply_id_names_that_apply():
    first, second = "0193c0de-7a1b-5c2d-8e3f-000000000001", "0193c0de-99aa-5c2d-8e3f-000000000002"
    history = applied_revisions([applied(1, A, first), applied(2, B, second)])
    assert find_applied("shop", history, "0193c0de-7a").apply.apply_id == first
    assert find_applied("shop", history, "0193C0DE-99").apply.apply_id == second
    with pytest.raises(RevisionNotApplied, match=f"apply {first}, apply {second}"):
        find_applied("shop", history, "0193c0de")
    # A prefix that is both an apply id's and an applied commit's is ambiguous too.
    clash = applied_revisions([applied(1, "0193" + "e" * 36, "x"), applied(2, B, "0193ff-1")])
    with pytest.raises(RevisionNotApplied, match="apply 0193ff-1, commit 0193eeeeeeee"):
        find_applied("shop", clash, "0193")


def bundle(*resources) -> Bundle:
    return Bundle(
        app="shop", repo_url="r", commit=A, path=".", renderer="yaml", resources=list(resources)
    )


def cm(name: str, **data) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "shop"},
        "data": data,
    }


def test_bundles_differ_by_resource_and_by_field_with_secrets_redacted():
    secret_old = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "shop"},
        "data": {"password": "b2xk"},
    }
    secret_new = {**secret_old, "data": {"password": "bmV3"}}
    result = diff_bundles(
        bundle(cm("kept", a="1"), cm("gone"), cm("edited", a="1", b="2"), secret_old),
        bundle(cm("kept", a="1"), cm("new"), cm("edited", a="1", b="3", c="4"), secret_new),
    )
    assert [r.name for r in result.added] == ["new"]
    assert [r.name for r in result.removed] == ["gone"]
    changed = {c.ref.name: c for c in result.changed}
    assert changed["edited"].fields == ["/data/b", "/data/c"]
    assert changed["s"].fields == ["/data/password"]
    assert "b2xk" not in changed["s"].text and "bmV3" not in changed["s"].text
    assert "redacted hmac-sha256:" in changed["s"].text
    assert result.unchanged == 1


def test_changed_pointers_escape_and_index():
    assert changed_pointers({"a/b": [1, 2]}, {"a/b": [1, 3, 4]}) == ["/a~1b/1", "/a~1b/2"]
