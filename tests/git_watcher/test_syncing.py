"""Which syncs detect an unchanged commit again, pure."""

from __future__ import annotations

from events.payloads import SyncRequested
from services.git_watcher.syncing import detects_unchanged, last_apply_failed


def test_the_last_apply_outcome_decides_by_sequence():
    assert last_apply_failed(None, None) is False
    assert last_apply_failed(None, 7) is True
    assert last_apply_failed(9, 7) is False
    assert last_apply_failed(5, 7) is True


def test_a_failed_app_or_a_resume_is_detected_again_a_synced_one_only_if_changed():
    assert detects_unchanged(SyncRequested(), apply_failed=True) is True
    assert detects_unchanged(SyncRequested(resume=True), apply_failed=False) is True
    assert detects_unchanged(SyncRequested(), apply_failed=False) is False
