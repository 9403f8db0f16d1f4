"""The git-watcher's decision (changes.py), with literals: no git, no NATS."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from events import new_event
from events.envelope import derived_event_id
from events.payloads import AppSpec, RevisionDetected, SyncRequested
from services.git_watcher.changes import (
    MAX_MESSAGE_CHARS,
    LastDetection,
    Revision,
    capped,
    detect,
    last_detection,
)

SPEC = AppSpec(repo_url="https://git.example/shop.git", path="apps/web", namespace="web")
C1, C2, C3 = "1" * 40, "2" * 40, "3" * 40
T1, T2 = "a" * 40, "b" * 40
WHEN = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))


def revision(commit: str, tree_id: str, parent: str | None = None) -> Revision:
    return Revision(
        commit=commit,
        parent=parent,
        tree_id=tree_id,
        author="Ada",
        author_email="ada@example.com",
        message="change things\n\nbecause",
        committed_at=WHEN,
    )


def last(event_id: str, commit: str, tree_id: str, **changes: str) -> LastDetection:
    fields = {"repo_url": SPEC.repo_url, "ref": SPEC.ref, **changes}
    return LastDetection(event_id=event_id, commit=commit, tree_id=tree_id, **fields)


def test_the_first_revision_of_an_app_is_detected_with_everything_known_about_it():
    detection = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=None,
        revision=revision(C1, T1, parent=C3),
        trigger="register",
    )
    assert detection is not None
    assert detection.payload == RevisionDetected(
        repo_url=SPEC.repo_url,
        ref="main",
        commit=C1,
        parent=C3,
        previous_commit=None,
        author="Ada",
        author_email="ada@example.com",
        message="change things\n\nbecause",
        committed_at=WHEN,
        tree_id=T1,
        trigger="register",
    )
    assert detection.event_id == derived_event_id(f"web/registered@7/{C1}", "RevisionDetected")


def test_a_commit_that_leaves_the_app_path_alone_is_not_a_revision_of_the_app():
    assert (
        detect(
            app="web",
            spec=SPEC,
            registered_seq=7,
            last=last("e1", C1, T1),
            revision=revision(C2, T1, parent=C1),
            trigger="poll",
        )
        is None
    )


def test_a_changed_tree_is_detected_after_the_previous_one():
    detection = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=last("e1", C1, T1),
        revision=revision(C2, T2, parent=C1),
        trigger="sync",
    )
    assert detection is not None
    assert detection.payload.previous_commit == C1
    assert detection.payload.trigger == "sync"
    assert detection.event_id == derived_event_id(f"web/e1/{C2}", "RevisionDetected")


def test_two_deciders_on_the_same_ground_derive_the_same_event_id():
    args = dict(app="web", spec=SPEC, registered_seq=7, last=last("e1", C1, T1))
    one = detect(**args, revision=revision(C2, T2), trigger="poll")
    other = detect(**args, revision=revision(C2, T2), trigger="sync")
    assert one is not None and other is not None
    assert one.event_id == other.event_id


def test_a_branch_reset_back_and_forth_detects_each_return_under_a_new_id():
    first_b = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=last("e1", C1, T1),
        revision=revision(C2, T2),
        trigger="poll",
    )
    again_b = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=last("e3", C1, T1),  # A, B, A again: another previous event
        revision=revision(C2, T2),
        trigger="poll",
    )
    assert first_b is not None and again_b is not None
    assert first_b.event_id != again_b.event_id


def test_a_new_source_for_the_app_is_a_revision_even_with_the_same_tree():
    moved = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=last("e1", C1, T1, repo_url="https://old.example/shop.git"),
        revision=revision(C1, T1),
        trigger="register",
    )
    assert moved is not None and moved.payload.repo_url == SPEC.repo_url
    other_ref = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=last("e1", C1, T1, ref="release"),
        revision=revision(C1, T1),
        trigger="register",
    )
    assert other_ref is not None


def test_a_missing_app_path_is_detected_once_with_an_empty_tree_id():
    gone = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=last("e1", C1, T1),
        revision=revision(C2, ""),
        trigger="poll",
    )
    assert gone is not None and gone.payload.tree_id == ""
    still_gone = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=last("e2", C2, ""),
        revision=revision(C3, ""),
        trigger="poll",
    )
    assert still_gone is None


def test_the_last_detection_counts_only_since_the_app_was_registered():
    event = new_event(
        RevisionDetected(
            repo_url=SPEC.repo_url, ref="main", commit=C1, committed_at=WHEN, tree_id=T1
        ),
        app="web",
        actor="service:git-watcher",
    )
    found = last_detection((12, event), registered_seq=10)
    assert found == LastDetection(
        event_id=event.event_id, commit=C1, tree_id=T1, repo_url=SPEC.repo_url, ref="main"
    )
    assert last_detection((12, event), registered_seq=20) is None
    assert last_detection(None, registered_seq=1) is None
    other = new_event(SyncRequested(), app="web", actor="t")
    assert last_detection((12, other), registered_seq=1) is None


def test_a_huge_commit_message_is_capped_and_says_so():
    assert capped("short") == "short"
    huge = "x" * (MAX_MESSAGE_CHARS + 5)
    cut = capped(huge)
    assert cut.startswith("x" * MAX_MESSAGE_CHARS)
    assert cut.endswith("[... 5 more characters]")


def test_a_resume_detects_an_unchanged_tree_once_per_request():
    previous = last("e1", C1, T1)
    args = dict(app="web", spec=SPEC, registered_seq=7, revision=revision(C1, T1), trigger="sync")
    assert detect(**args, last=previous) is None
    resumed = detect(**args, last=previous, resume="sync-request-1")
    assert resumed is not None
    assert resumed.event_id == derived_event_id(
        "web/resume/sync-request-1", RevisionDetected.event_type
    )
    assert (resumed.payload.commit, resumed.payload.previous_commit) == (C1, C1)
    assert resumed.payload.trigger == "sync"
    # The same request redelivered finds its own detection last: nothing more.
    after = last(resumed.event_id, C1, T1)
    assert detect(**args, last=after, resume="sync-request-1") is None
    # Another resume request is another detection.
    again = detect(**args, last=after, resume="sync-request-2")
    assert again is not None and again.event_id != resumed.event_id
