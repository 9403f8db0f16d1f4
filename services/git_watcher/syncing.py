"""What `wake sync NAME` asks of the git-watcher. Pure.

A sync checks the app's source now. Two kinds of sync also detect the ref's
commit when nothing changed, so that the revision is rendered, planned and
applied again (through the app's approval policy):

- `--resume`: a rollback pinned the app to an older revision; this moves it on;
- any sync of an app whose last apply failed -- its retries ran out, or are
  still pending: the operator asks for the current revision to be applied
  now, as Argo CD's sync of a failed app does. The new plan is newer than
  the failed one, so its approval cancels any retry still pending.
"""

from __future__ import annotations

from events.payloads import SyncRequested


def last_apply_failed(succeeded_seq: int | None, failed_seq: int | None) -> bool:
    """Whether the app's last apply outcome (by stream sequence) is an ApplyFailed."""
    return failed_seq is not None and (succeeded_seq is None or failed_seq > succeeded_seq)


def detects_unchanged(request: SyncRequested, *, apply_failed: bool) -> bool:
    """Whether this sync detects the ref's commit again even if nothing changed."""
    return request.resume or apply_failed
