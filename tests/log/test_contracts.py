"""The event contracts, without servers: pure functions over Structs."""

from __future__ import annotations

import json
import subprocess
import sys

import msgspec
import pytest

from events import (
    PAYLOAD_TYPES,
    InvalidEvent,
    InvalidName,
    UnknownPayload,
    app_name,
    decode,
    derived_event_id,
    encode,
    new_event,
    subject,
)
from events.payloads import PlanApproved, RevisionDetected, SyncRequested
from events.samples import COMMIT, sample_payloads
from events.schema import json_schema


@pytest.mark.parametrize("payload", sample_payloads(), ids=lambda p: p.event_type)
def test_every_type_round_trips(payload):
    event = new_event(payload, app="shop", actor="user:ada")
    decoded = decode(encode(event))
    assert decoded == event
    assert type(decoded.payload) is type(payload)


def test_a_derived_event_gets_a_deterministic_id_and_inherits_the_journey():
    cause = new_event(SyncRequested(), app="shop", actor="user:ada", traceparent="00-abc-def-01")
    first = new_event(PlanApproved(plan_id="p1"), app="shop", actor="policy", cause=cause)
    again = new_event(PlanApproved(plan_id="p1"), app="shop", actor="policy", cause=cause)
    assert first.event_id == again.event_id == derived_event_id(cause.event_id, "PlanApproved")
    assert first.causation_id == cause.event_id
    assert first.correlation_id == cause.correlation_id == cause.event_id
    assert first.traceparent == cause.traceparent
    assert derived_event_id(cause.event_id, "PlanApproved", "a") != first.event_id


def test_fields_a_reader_does_not_know_are_ignored():
    event = new_event(SyncRequested(reason="x"), app="shop", actor="user:ada")
    wire = json.loads(encode(event))
    wire["added_in_a_later_version"] = {"nested": [1, 2]}
    wire["payload"]["also_new"] = "ignored"
    decoded = decode(json.dumps(wire).encode())
    assert decoded == event


def test_an_event_written_before_a_field_existed_still_decodes():
    # What a first-version writer put on the log for RevisionDetected: only
    # the required fields; every later field has a default.
    old = {
        "event_id": "01a2164a-0000-7000-8000-000000000001",
        "type": "RevisionDetected",
        "app": "shop",
        "occurred_at": "2026-01-01T00:00:00Z",
        "correlation_id": "01a2164a-0000-7000-8000-000000000001",
        "payload": {
            "repo_url": "https://git.example.com/a.git",
            "ref": "main",
            "commit": COMMIT,
            "committed_at": "2026-01-01T00:00:00Z",
        },
    }
    decoded = decode(json.dumps(old).encode())
    assert isinstance(decoded.payload, RevisionDetected)
    assert decoded.payload.parent is None and decoded.payload.trigger == "poll"


def test_an_unknown_type_from_a_newer_writer_decodes_as_unknown():
    event = new_event(SyncRequested(), app="shop", actor="a")
    wire = json.loads(encode(event))
    wire["type"] = "SomethingNew"
    wire["payload"] = {"anything": 1}
    decoded = decode(json.dumps(wire).encode())
    assert decoded.payload == UnknownPayload(raw={"anything": 1})


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda w: w.pop("app"), "$"),
        (lambda w: w.update(app="Not A Token"), "$.app"),
        (lambda w: w.update(event_id="42"), "$.event_id"),
        (lambda w: w.update(occurred_at="2026-01-01T00:00:00"), "$.occurred_at"),
        (lambda w: w["payload"].update(resume="yes"), "$.payload.resume"),
    ],
)
def test_an_invalid_event_names_the_field_at_fault(mutate, field):
    wire = json.loads(encode(new_event(SyncRequested(), app="shop", actor="a")))
    mutate(wire)
    with pytest.raises(InvalidEvent) as caught:
        decode(json.dumps(wire).encode())
    assert caught.value.field == field
    assert field.rsplit(".", 1)[-1].strip("$") in str(caught.value)


def test_garbage_is_an_invalid_event():
    with pytest.raises(InvalidEvent, match="not a JSON event"):
        decode(b"\x00\xffnot json")


@pytest.mark.parametrize("bad", ["", "Shop", "a.b", "a*", "-a", "a-", "x" * 64, "a_b"])
def test_app_names_must_be_subject_tokens_and_dns_labels(bad):
    with pytest.raises(InvalidName, match="invalid application name"):
        app_name(bad)
    with pytest.raises((InvalidName, msgspec.ValidationError)):
        subject(bad, "SyncRequested")


def test_subjects():
    assert subject("shop", "PlanCreated") == "wake.evt.shop.PlanCreated"


def test_the_schema_covers_every_type():
    schema = json_schema()
    names = {ref["$ref"].rsplit("/", 1)[1] for ref in schema["oneOf"]}
    assert names == {f"{cls.event_type}Event" for cls in PAYLOAD_TYPES}
    for cls in PAYLOAD_TYPES:
        variant = schema["$defs"][f"{cls.event_type}Event"]
        assert variant["properties"]["type"] == {"const": cls.event_type}
        assert cls.event_type in schema["$defs"]


def test_wake_events_schema_prints_the_document():
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "events", "schema"],
        capture_output=True,
        check=True,
        text=True,
    )
    assert json.loads(out.stdout) == json_schema()


def test_the_contracts_import_no_io_library():
    code = (
        "import sys, events, events.schema, events.samples; "
        "bad = {'nats', 'asyncpg', 'aiohttp', 'kubernetes_asyncio', 'pygit2'} & set(sys.modules); "
        "print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, text=True)
    assert out.stdout.strip() == "[]"
