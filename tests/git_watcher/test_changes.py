"""The git-watcher's decision (changes.py), with literals: no git, no NATS."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from events import new_event
from events.envelope import derived_event_id
from events.payloads import (
    AppSpec,
    ManifestsRendered,
    RenderFailed,
    RevisionDetected,
    SyncRequested,
)
from services.git_watcher.changes import (
    MAX_MESSAGE_CHARS,
    LastDetection,
    LastRender,
    Revision,
    capped,
    detect,
    inputs_changed,
    last_detection,
    last_render,
    nothing_new,
    render_inputs,
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


# podinfo's deploy/: each overlay reads its own folder and the bases it names.
OVERLAY_INPUTS = ("deploy/bases/backend", "deploy/bases/frontend", "deploy/overlays/dev")


def ids(objects: dict[str, str] | None = None):
    """A commit as the decision sees it: path -> object id ("" where nothing is)."""
    table = objects or {}
    return lambda path: table.get(path, "")


BEFORE = ids(
    {
        "deploy/bases/backend": "b1",
        "deploy/bases/frontend": "f1",
        "deploy/overlays/dev": "d1",
        "README.md": "r1",
    }
)


def test_a_commit_that_changes_none_of_the_last_renders_inputs_is_not_a_revision_of_the_app():
    assert (
        detect(
            app="web",
            spec=SPEC,
            registered_seq=7,
            last=last("e1", C1, T1),
            revision=revision(C2, T1, parent=C1),
            trigger="poll",
            inputs=OVERLAY_INPUTS,
            before=BEFORE,
            after=ids(
                {
                    "deploy/bases/backend": "b1",
                    "deploy/bases/frontend": "f1",
                    "deploy/overlays/dev": "d1",
                    "README.md": "r2",
                }
            ),
        )
        is None
    )


def test_a_commit_changing_only_a_base_outside_the_overlays_folder_is_a_revision_of_it():
    detection = detect(
        app="dev",
        spec=SPEC,
        registered_seq=7,
        last=last("e1", C1, T1),
        # The overlay's own folder is untouched: the same tree id.
        revision=revision(C2, T1, parent=C1),
        trigger="webhook",
        inputs=OVERLAY_INPUTS,
        before=BEFORE,
        after=ids(
            {
                "deploy/bases/backend": "b2",
                "deploy/bases/frontend": "f1",
                "deploy/overlays/dev": "d1",
            }
        ),
    )
    assert detection is not None
    assert (detection.payload.commit, detection.payload.previous_commit) == (C2, C1)
    assert detection.event_id == derived_event_id(f"dev/e1/{C2}", "RevisionDetected")


def test_an_input_that_appears_disappears_or_changes_below_a_folder_is_a_change():
    folder = ("deploy/bases/backend",)
    same = ids({"deploy/bases/backend": "t1"})
    assert not inputs_changed(folder, before=same, after=same)
    # A file below the folder changed: git gives the folder another tree id.
    assert inputs_changed(folder, before=same, after=ids({"deploy/bases/backend": "t2"}))
    assert inputs_changed(folder, before=same, after=ids())
    assert inputs_changed(
        ("deploy/extra.yaml",), before=ids(), after=ids({"deploy/extra.yaml": "x"})
    )
    assert not inputs_changed((), before=same, after=ids())


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


def test_in_doubt_every_new_commit_is_detected_and_the_same_commit_never_again():
    # No inputs known (no render of the last detection yet, or a failed one,
    # e.g. the app path is missing): the renderer decides.
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
    assert still_gone is not None and still_gone.payload.previous_commit == C2
    polled_again = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=last("e3", C3, ""),
        revision=revision(C3, ""),
        trigger="poll",
    )
    assert polled_again is None
    # The previous commit gone from the mirror (a force-push): in doubt too.
    lost = detect(
        app="web",
        spec=SPEC,
        registered_seq=7,
        last=last("e3", C3, T1),
        revision=revision(C1, T1),
        trigger="poll",
        inputs=OVERLAY_INPUTS,
        before=None,
        after=BEFORE,
    )
    assert lost is not None


def test_inputs_count_only_when_the_last_render_is_of_the_last_detection_and_recorded_them():
    previous = last("e2", C2, T1)
    assert render_inputs(previous, LastRender("e2", OVERLAY_INPUTS)) == OVERLAY_INPUTS
    # The render of e2 is still pending: the last one read another commit.
    assert render_inputs(previous, LastRender("e1", OVERLAY_INPUTS)) is None
    # It failed, or came from a renderer that did not record its inputs.
    assert render_inputs(previous, LastRender("e2", ())) is None
    assert render_inputs(previous, None) is None
    assert render_inputs(None, LastRender("e2", OVERLAY_INPUTS)) is None


def test_the_last_render_is_the_later_of_the_last_rendered_and_the_last_failed():
    detected = new_event(
        RevisionDetected(repo_url=SPEC.repo_url, ref="main", commit=C1, committed_at=WHEN),
        app="web",
        actor="service:git-watcher",
    )
    rendered = new_event(
        ManifestsRendered(
            commit=C1,
            bundle_digest="e" * 64,
            bundle_size=10,
            renderer="kustomize",
            resources=[],
            inputs=list(OVERLAY_INPUTS),
        ),
        app="web",
        actor="service:renderer",
        cause=detected,
    )
    failed = new_event(
        RenderFailed(commit=C1, error="boom"),
        app="web",
        actor="service:renderer",
        cause=detected,
    )
    assert last_render((5, rendered), (3, failed)) == LastRender(detected.event_id, OVERLAY_INPUTS)
    assert last_render((5, rendered), (8, failed)) == LastRender(detected.event_id, ())
    assert last_render(None, None) is None


def test_a_changed_spec_is_detected_once_at_the_same_commit():
    args = dict(app="web", spec=SPEC, registered_seq=7, revision=revision(C1, T1))
    before_update = LastDetection("e1", C1, T1, SPEC.repo_url, SPEC.ref, seq=9)
    again = detect(**args, last=before_update, updated_seq=12, trigger="register")
    assert again is not None and again.payload.commit == C1
    assert again.event_id == derived_event_id(f"web/e1/{C1}/updated@12", "RevisionDetected")
    after_update = LastDetection(again.event_id, C1, T1, SPEC.repo_url, SPEC.ref, seq=13)
    assert detect(**args, last=after_update, updated_seq=12, trigger="poll") is None


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
        event_id=event.event_id, commit=C1, tree_id=T1, repo_url=SPEC.repo_url, ref="main", seq=12
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


def test_nothing_new_only_when_detect_would_detect_nothing_whatever_the_trees():
    """The shell skips reading a commit's trees when `nothing_new` says so: that must
    never hide a detection, whatever the tree or the inputs would have been."""
    previous = LastDetection(
        event_id="d1", commit=C1, tree_id=T1, repo_url=SPEC.repo_url, ref=SPEC.ref, seq=10
    )
    moved = AppSpec(repo_url="https://git.example/other.git", path="apps/web")
    cases = [
        dict(spec=SPEC, last=previous, commit=C1),
        dict(spec=SPEC, last=previous, commit=C2),
        dict(spec=SPEC, last=None, commit=C1),
        dict(spec=SPEC, last=previous, commit=C1, resume="sync-1"),
        dict(spec=SPEC, last=previous, commit=C1, updated_seq=11),
        dict(spec=moved, last=previous, commit=C1),
        dict(
            spec=AppSpec(repo_url=SPEC.repo_url, path="apps/web", ref="v2"),
            last=previous,
            commit=C1,
        ),
    ]
    skipped = []
    for case in cases:
        if not nothing_new(**case):
            continue
        skipped.append(case)
        for tree_id in (T1, T2, ""):
            for inputs in (None, ("apps/web",)):
                assert (
                    detect(
                        app="web",
                        spec=case["spec"],
                        registered_seq=1,
                        updated_seq=case.get("updated_seq", 0),
                        last=case["last"],
                        revision=revision(case["commit"], tree_id),
                        trigger="poll",
                        resume=case.get("resume", ""),
                        inputs=inputs,
                        before=lambda path: "x",
                        after=lambda path: "y",
                    )
                    is None
                )
    # Only the plain case: the same commit, source and spec, no resume.
    assert skipped == [cases[0]]
