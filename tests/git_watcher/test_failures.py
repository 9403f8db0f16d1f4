"""When a source failure is news, and when it ends: the pure decision, over literals."""

from __future__ import annotations

from events import new_event
from events.payloads import SourceFailed, SourceRecovered
from services.git_watcher.failures import failure_due, open_failure, recovery_due

GONE = SourceFailed(repo_url="/r", ref="release", error="ref 'release' not found", stage="ref")


def stored(seq: int, payload):
    return seq, new_event(payload, app="web", actor="service:git-watcher")


def test_a_failure_is_news_once_and_again_only_when_it_changes():
    first = failure_due(app="web", registered_seq=1, standing=None, failure=GONE)
    assert first is not None
    # Two replicas deciding on the same state derive the same id: the log keeps one.
    assert failure_due(app="web", registered_seq=1, standing=None, failure=GONE) == first
    event_id, payload = first
    event = new_event(payload, app="web", actor="w", event_id=event_id)
    standing = open_failure((5, event), None, registered_seq=1)
    assert failure_due(app="web", registered_seq=1, standing=standing, failure=GONE) is None
    revoked = SourceFailed(repo_url="/r", ref="release", error="credential refused")
    again = failure_due(app="web", registered_seq=1, standing=standing, failure=revoked)
    assert again is not None and again[0] != event_id


def test_a_recovery_ends_the_failure_and_a_new_registration_starts_clean():
    failed = stored(5, GONE)
    standing = open_failure(failed, None, registered_seq=1)
    assert standing is not None
    due = recovery_due(app="web", standing=standing, repo_url="/r", ref="release", commit="c" * 40)
    assert due is not None
    assert due[1].failed_event_id == failed[1].event_id
    assert recovery_due(app="web", standing=None, repo_url="/r", ref="x", commit="") is None
    recovered = stored(8, SourceRecovered(repo_url="/r", ref="release"))
    assert open_failure(failed, recovered, registered_seq=1) is None
    # A failure of the app's previous registration does not stand for the new one.
    assert open_failure(failed, None, registered_seq=6) is None
