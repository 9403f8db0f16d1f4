"""Is an app synced? One rule for `wake app show`/`app list` and the projector. Pure.

Synced means the applied revision is the latest desired one and its bundle is
the one applied -- nothing less (DESIGN §2), whatever event came last:

- the desired revision is the app's latest RevisionDetected (detection order),
  or, while the app is rolled back and nothing was detected since, the
  rollback's revision;
- once that revision is rendered, its bundle must be the applied one, or the
  renderer found it unchanged from the applied revision (`unchanged_from`);
- before it is rendered, only the applied commit itself is synced (a
  re-detection of what is applied).

Anything else is out of sync, with why: "applied abc1234, desired def5678
(plan awaiting approval)".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Desired:
    """The latest desired revision; `bundle` once rendered (`unchanged_from`: as which)."""

    commit: str
    bundle: str | None = None
    unchanged_from: str | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    commit: str
    bundle: str


@dataclass(frozen=True, slots=True)
class Verdict:
    synced: bool
    why: str = ""

    def __str__(self) -> str:
        return "synced" if self.synced else f"out of sync: {self.why}"


def verdict(desired: Desired | None, applied: Applied | None, *, pending: str = "") -> Verdict:
    """Whether the app is synced (see the module docstring).

    `pending` says what the app waits for ("plan awaiting approval", "apply failed", ...)
    and is added to why it is out of sync.
    """
    suffix = f" ({pending})" if pending else ""
    if applied is None:
        wanted = f", desired {desired.commit[:7]}" if desired is not None else ""
        return Verdict(False, f"nothing applied yet{wanted}{suffix}")
    if desired is None:
        return Verdict(True)  # nothing was ever detected: what is applied is all that was asked
    if desired.bundle is None:
        if desired.commit == applied.commit:
            return Verdict(True)
        return Verdict(
            False,
            f"applied {applied.commit[:7]}, desired {desired.commit[:7]} (not rendered yet)"
            f"{suffix}",
        )
    if desired.unchanged_from is not None and desired.unchanged_from == applied.commit:
        return Verdict(True)
    if desired.bundle == applied.bundle:
        return Verdict(True)
    if desired.commit == applied.commit:
        return Verdict(
            False,
            f"applied bundle {applied.bundle[:12]} of {applied.commit[:7]}, desired bundle "
            f"{desired.bundle[:12]}{suffix}",
        )
    return Verdict(False, f"applied {applied.commit[:7]}, desired {desired.commit[:7]}{suffix}")
