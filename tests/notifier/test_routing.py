"""Routes from settings, and the messages an event is sent as (pure)."""

from __future__ import annotations

import json

import msgspec
import pytest

from events import decode, encode, new_event
from events.envelope import UnknownPayload
from events.payloads import BY_TYPE, ApplyFailed, NotificationFailed, NotificationSent
from events.samples import sample_payloads
from services.notifier.routing import (
    WEBHOOK,
    InvalidRoutes,
    Routes,
    route,
    routes_from_settings,
    summary_of,
)
from services.notifier.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    verify,
)
from services.wiring.settings import Settings, SettingsError

SECRET = "s3cr3t-do-not-leak"
URL = "https://hooks.example.com/services/T000/B000/tokenpart?x=1"
SAMPLES = {type(p).event_type: p for p in sample_payloads()}


def settings(**overrides) -> Settings:
    base = {
        "notify_url": URL,
        "notify_secret": SECRET,
        "notify_events": "ApplySucceeded,ApplyFailed",
    }
    return Settings(**{**base, **overrides})


def event(event_type: str, app: str = "shop"):
    return new_event(SAMPLES[event_type], app=app, actor="service:applier")


def test_no_url_means_no_channel_and_nothing_routed():
    routes = routes_from_settings(Settings())
    assert routes == Routes()
    assert route(event("ApplySucceeded"), seq=1, routes=routes) == []


def test_a_chosen_type_becomes_one_signed_message_on_the_webhook():
    applied = event("ApplySucceeded")
    [message] = route(applied, seq=42, routes=routes_from_settings(settings()))
    assert (message.channel, message.url, message.where) == (
        WEBHOOK,
        URL,
        "https://hooks.example.com",
    )
    assert (message.about_event_id, message.about_type) == (applied.event_id, "ApplySucceeded")
    assert message.headers[EVENT_HEADER] == "ApplySucceeded"
    assert message.headers[DELIVERY_HEADER] == applied.event_id
    assert message.headers["Content-Type"] == "application/json"
    assert verify(message.body, message.headers[SIGNATURE_HEADER], SECRET)


def test_the_body_is_the_envelope_as_on_the_log_with_seq_and_summary():
    applied = event("ApplySucceeded")
    [message] = route(applied, seq=42, routes=routes_from_settings(settings()))
    body = json.loads(message.body)
    assert set(body) == {"event", "seq", "summary"}
    assert body["event"] == json.loads(encode(applied))
    assert decode(json.dumps(body["event"]).encode()) == applied
    assert body["seq"] == 42
    assert body["summary"] == "shop: applied 3f1e9a4: 3 resources"


def test_an_unchosen_type_is_not_routed():
    routes = routes_from_settings(settings())
    assert route(event("RevisionDetected"), seq=1, routes=routes) == []


def test_notification_events_are_never_routed_even_when_chosen():
    routes = routes_from_settings(
        settings(notify_events="ApplySucceeded,NotificationSent,NotificationFailed")
    )
    assert routes.channels[0].event_types == {"ApplySucceeded"}
    assert any("NotificationSent is never notified" in w for w in routes.warnings)
    for payload_type in (NotificationSent, NotificationFailed):
        assert route(event(payload_type.event_type), seq=1, routes=routes) == []


def test_an_unknown_type_is_kept_but_warned_about():
    routes = routes_from_settings(settings(notify_events="ApplySucceded"))
    assert routes.channels[0].event_types == {"ApplySucceded"}
    assert any("'ApplySucceded' is not an event type" in w for w in routes.warnings)


def test_an_empty_secret_is_warned_about_and_leaves_the_body_unsigned():
    routes = routes_from_settings(settings(notify_secret=""))
    assert any("WAKE_NOTIFY_SECRET is empty" in w for w in routes.warnings)
    [message] = route(event("ApplySucceeded"), seq=1, routes=routes)
    assert SIGNATURE_HEADER not in message.headers


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("ftp://hooks.example.com/x", "must be an http:// or https:// URL"),
        ("hooks.example.com/x", "must be an http:// or https:// URL"),
        ("https:///x", "names no host"),
        ("https://hooks.example.com:port/x", "is not a valid URL"),
    ],
)
def test_a_bad_url_is_an_error_naming_the_variable(url, complaint):
    with pytest.raises(InvalidRoutes) as raised:
        routes_from_settings(settings(notify_url=url))
    assert isinstance(raised.value, SettingsError)
    assert "WAKE_NOTIFY_URL" in str(raised.value) and complaint in str(raised.value)


def test_neither_secret_nor_url_path_shows_in_reprs_or_warnings():
    routes = routes_from_settings(settings(notify_secret=SECRET, notify_events="Typo"))
    [message] = route(event("ApplySucceeded"), seq=1, routes=routes_from_settings(settings()))
    shown = repr(routes) + repr(message) + " ".join(routes.warnings)
    assert SECRET not in shown
    assert "tokenpart" not in shown
    assert SECRET.encode() not in message.body


def test_an_event_of_an_unknown_type_is_passed_on_as_written():
    written = {
        "event_id": "0190c0de-0000-7000-8000-0000000000f1",
        "type": "CanaryPromoted",
        "app": "shop",
        "occurred_at": "2026-11-26T09:30:00Z",
        "correlation_id": "0190c0de-0000-7000-8000-0000000000f1",
        "payload": {"weight": 50},
    }
    unknown = decode(msgspec.json.encode(written))
    assert isinstance(unknown.payload, UnknownPayload)
    routes = routes_from_settings(settings(notify_events="CanaryPromoted"))
    [message] = route(unknown, seq=7, routes=routes)
    body = json.loads(message.body)
    assert body["event"]["payload"] == {"weight": 50}
    assert body["summary"] == "shop: CanaryPromoted"


def test_every_type_has_a_one_line_summary_starting_with_its_app():
    for event_type in BY_TYPE:
        line = summary_of(event(event_type))
        assert line.startswith("shop: ") and "\n" not in line and len(line) <= 300


def test_a_summary_is_one_line_however_long_the_error():
    failed = new_event(
        ApplyFailed(apply_id="a1", plan_id="p1", error="first line\nsecond line " + "x" * 500),
        app="shop",
        actor="t",
    )
    line = summary_of(failed)
    assert "\n" not in line and len(line) == 300 and line.endswith("\u2026")
    assert line.startswith("shop: apply a1 failed: first line second line")


def test_by_default_a_refused_approval_is_sent_as_an_approval_asked_for_is():
    # Whoever approved learns that the planner refused it, and why
    routes = routes_from_settings(Settings(notify_url=URL, notify_secret=SECRET))
    refused = new_event(SAMPLES["ApprovalRefused"], app="shop", actor="service:planner")
    [message] = route(refused, seq=7, routes=routes)
    assert message.channel == WEBHOOK
    assert route(event("ApprovalRequested"), seq=8, routes=routes)
