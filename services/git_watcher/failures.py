"""Is this app's source readable? The git-watcher's decision about failures, pure.

A source that cannot be read (repository gone, credential refused, branch
deleted, path invalid) is recorded as a SourceFailed, once per distinct
failure: the shell reads the app's last SourceFailed and SourceRecovered
from the log at each check, and this module decides whether the failure it
sees now is news. The next successful read ends it with a SourceRecovered.

Ids are derived from the state the decision was made on, so two watcher
replicas (or a retry) that see the same failure append it once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from events.envelope import Envelope, derived_event_id
from events.payloads import SourceFailed, SourceRecovered


@dataclass(frozen=True, slots=True)
class OpenFailure:
    """The app's SourceFailed that no SourceRecovered has ended yet."""

    event_id: str
    payload: SourceFailed


def open_failure(
    failed: tuple[int, Envelope] | None,
    recovered: tuple[int, Envelope] | None,
    *,
    registered_seq: int,
) -> OpenFailure | None:
    """The failure standing for the app's current registration, from (seq, event) of each.

    A failure from before the app was (re-)registered does not count, nor
    one that a later SourceRecovered ended.
    """
    if failed is None:
        return None
    seq, event = failed
    if seq < registered_seq or not isinstance(event.payload, SourceFailed):
        return None
    if recovered is not None and recovered[0] > seq:
        return None
    return OpenFailure(event.event_id, event.payload)


def failure_due(
    *, app: str, registered_seq: int, standing: OpenFailure | None, failure: SourceFailed
) -> tuple[str, SourceFailed] | None:
    """(event id, payload) of the SourceFailed to append; None if `failure` is already recorded.

    A failure is news when none stands, or when it differs from the standing
    one (another error, or the app now follows another repository or ref).
    """
    if standing is not None and _same(standing.payload, failure):
        return None
    after = standing.event_id if standing is not None else f"registered@{registered_seq}"
    digest = hashlib.sha256(
        f"{failure.repo_url}\n{failure.ref}\n{failure.path}\n{failure.error}".encode()
    ).hexdigest()[:16]
    return derived_event_id(f"{app}/{after}", SourceFailed.event_type, digest), failure


def recovery_due(
    *, app: str, standing: OpenFailure | None, repo_url: str, ref: str, commit: str
) -> tuple[str, SourceRecovered] | None:
    """(event id, payload) of the SourceRecovered that ends `standing`; None if none stands."""
    if standing is None:
        return None
    return (
        derived_event_id(standing.event_id, SourceRecovered.event_type),
        SourceRecovered(
            repo_url=repo_url, ref=ref, commit=commit, failed_event_id=standing.event_id
        ),
    )


def _same(a: SourceFailed, b: SourceFailed) -> bool:
    return (a.repo_url, a.ref, a.path, a.stage, a.error) == (
        b.repo_url,
        b.ref,
        b.path,
        b.stage,
        b.error,
    )
