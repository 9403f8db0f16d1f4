"""The one sync rule (services/catalog/syncing.py) and the conflict backoff. Pure."""

from __future__ import annotations

import random

from services.catalog.syncing import Applied, Desired, verdict
from services.wiring.conflicts import CAP, conflict_delay

A, B = "a" * 40, "b" * 40


def test_synced_only_at_the_latest_desired_revision_with_its_bundle() -> None:
    applied = Applied(A, "x" * 64)
    assert verdict(Desired(A, "x" * 64), applied).synced
    assert verdict(Desired(A), applied).synced  # detected again, not rendered yet
    assert verdict(Desired(B, "y" * 64, unchanged_from=A), applied).synced
    late = verdict(Desired(B, "y" * 64), applied, pending="plan awaiting approval")
    assert str(late) == "out of sync: applied aaaaaaa, desired bbbbbbb (plan awaiting approval)"
    assert not verdict(Desired(A, "z" * 64), applied).synced  # same commit, other bundle
    assert str(verdict(Desired(B), None)) == "out of sync: nothing applied yet, desired bbbbbbb"


def test_conflict_backoff_is_jittered_and_doubles_up_to_a_cap() -> None:
    rng = random.Random(7)
    delays = [[conflict_delay(n, rng=rng) for _ in range(200)] for n in range(10)]
    assert all(0 <= d <= CAP for row in delays for d in row)
    assert max(delays[0]) <= 0.005 < max(delays[3])
    assert len({round(d, 6) for d in delays[5]}) > 100  # spread, not one value
