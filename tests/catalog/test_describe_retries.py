"""One line per retry and cascade event, as `wake events tail` and timelines print them."""

from __future__ import annotations

from datetime import UTC, datetime

from events import new_event
from events import payloads as p
from services.catalog.describe import describe

REF = p.ResourceRef(api_version="v1", kind="ConfigMap", name="a", namespace="shop")


def line(payload: p.Payload) -> str:
    return describe(new_event(payload, app="shop", actor="service:applier"))


def test_tries_and_deletions_read_as_sentences():
    due = datetime(2026, 11, 29, 16, 0, 5, tzinfo=UTC)
    assert (
        line(
            p.ApplyRetryScheduled(
                plan_id="0123456789",
                after_apply_id="abcdefghij",
                attempt=3,
                due_at=due,
                delay_seconds=10.0,
            )
        )
        == "try 3 of plan 01234567 due at 16:00:05 (in 10s, after apply abcdefgh failed)"
    )
    assert (
        line(
            p.ApplyFailed(
                apply_id="abcdefghij", plan_id="x", error="quota", resource=REF, attempt=2
            )
        )
        == "apply abcdefgh failed at ConfigMap shop/a (try 2): quota"
    )
    assert line(p.ResourceDeleted(removal_id="r", ref=REF)) == (
        "deleted ConfigMap shop/a (app removed with --cascade)"
    )
    assert (
        line(p.ResourceDeleted(removal_id="r", ref=REF, action="kept", reason="already gone"))
        == "kept ConfigMap shop/a (app removed with --cascade): already gone"
    )
