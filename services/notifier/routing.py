"""Which channels hear of which events, and the message each one is sent. Pure.

A webhook channel is a name, a URL, a key and what it receives. `webhook`
is configured by WAKE_NOTIFY_URL, WAKE_NOTIFY_SECRET and WAKE_NOTIFY_EVENTS
(the event types it receives, of every app); the notify file
(WAKE_NOTIFY_CONFIG) may add more of `type: webhook`, which receive what its
routes send them (apps by glob, event types). Chat channels are `journeys`'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import msgspec

from events.envelope import Envelope, UnknownPayload, encode
from events.payloads import BY_TYPE
from services.catalog.describe import describe
from services.notifier.notifyfile import NotifyConfig, RouteSpec
from services.notifier.signing import Secret, signed_headers
from services.wiring.settings import Settings, SettingsError, env_name

WEBHOOK = "webhook"

# A summary is one line a chat message or a pager shows; the full event is in
# the body beside it.
SUMMARY_LIMIT = 300

_WHITESPACE = re.compile(r"\s+")


class InvalidRoutes(SettingsError):
    """Notification settings that cannot work; the message names the variable at fault."""


@dataclass(frozen=True, slots=True)
class Channel:
    """Where messages go, signed with what, for which event types."""

    name: str
    url: str = field(repr=False)
    secret: Secret
    event_types: frozenset[str]
    # The notify file's routes, for its channels: they, not `event_types`, say what it hears.
    routes: tuple[RouteSpec, ...] = ()

    def receives(self, event: Envelope) -> bool:
        if self.routes:
            return any(
                self.name in r.channels and r.selects(event.app, event.type) for r in self.routes
            )
        return event.type in self.event_types

    @property
    def where(self) -> str:
        """The URL's scheme, host and port: what logs show, since a webhook's path
        and query are often a credential themselves (Slack, Mattermost)."""
        return _where(self.url)


@dataclass(frozen=True, slots=True)
class Routes:
    """Every channel; `warnings` are what an operator should hear about the settings."""

    channels: tuple[Channel, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """One POST to one channel about one event."""

    channel: str
    url: str = field(repr=False)
    where: str
    about_event_id: str
    about_type: str
    body: bytes
    headers: dict[str, str]


def never_routed(event_type: str) -> bool:
    """Notification events are never notified: a notice of a notice would loop."""
    return event_type.startswith("Notification")


def routes_from_settings(settings: Settings) -> Routes:
    """The routes `settings` describe, or InvalidRoutes naming the variable at fault.

    No URL: no channel, the notifier routes nothing. Event types this Wake
    does not write are kept (a newer writer may) but warned about, since a
    typo would otherwise silence a channel without a word.
    """
    if not settings.notify_url.strip():
        return Routes()
    url = settings.notify_url.strip()
    _check_url(url)
    warnings: list[str] = []
    types: set[str] = set()
    for event_type in settings.notify_event_types():
        if never_routed(event_type):
            warnings.append(
                f"{env_name('notify_events')}: {event_type} is never notified "
                "(a notification about a notification would loop); ignored"
            )
        elif event_type not in BY_TYPE:
            warnings.append(
                f"{env_name('notify_events')}: {event_type!r} is not an event type this "
                f"Wake writes (known: {', '.join(sorted(BY_TYPE))})"
            )
            types.add(event_type)
        else:
            types.add(event_type)
    if not types:
        warnings.append(
            f"{env_name('notify_events')} names no event type: the webhook channel receives nothing"
        )
    secret = Secret(settings.notify_secret)
    if not secret:
        warnings.append(
            f"{env_name('notify_secret')} is empty: webhook deliveries are not signed, "
            "a receiver cannot tell them from forgeries"
        )
    channel = Channel(name=WEBHOOK, url=url, secret=secret, event_types=frozenset(types))
    return Routes(channels=(channel,), warnings=tuple(warnings))


def file_webhooks(config: NotifyConfig, secrets: dict[str, str]) -> list[Channel]:
    """The notify file's `type: webhook` channels (`secrets`: each one's key, read by the shell)."""
    return [
        Channel(
            name=spec.name,
            url=spec.options["url"],
            secret=Secret(secrets.get(spec.name, "")),
            event_types=frozenset(),
            routes=config.routes,
        )
        for spec in config.channels.values()
        if spec.type == "webhook"
    ]


def route(event: Envelope, *, seq: int, routes: Routes) -> list[Message]:
    """The messages `event` (stored at `seq`) is sent as: one per channel that receives its type."""
    if never_routed(event.type):
        return []
    channels = [c for c in routes.channels if c.receives(event)]
    if not channels:
        return []
    body = body_of(event, seq=seq)
    return [
        Message(
            channel=channel.name,
            url=channel.url,
            where=channel.where,
            about_event_id=event.event_id,
            about_type=event.type,
            body=body,
            headers=signed_headers(
                body, event_type=event.type, event_id=event.event_id, secret=channel.secret
            ),
        )
        for channel in channels
    ]


def body_of(event: Envelope, *, seq: int) -> bytes:
    """`{"event": <the envelope as on the log>, "seq": <its stream sequence>, "summary": "..."}`."""
    if isinstance(event.payload, UnknownPayload):
        # Written by a newer Wake: pass its payload on as it was, not wrapped
        # in the `raw` field this reader keeps it in.
        event = msgspec.structs.replace(
            event, payload=msgspec.Raw(msgspec.json.encode(event.payload.raw))
        )
    return msgspec.json.encode(
        {"event": msgspec.Raw(encode(event)), "seq": seq, "summary": summary_of(event)}
    )


def summary_of(event: Envelope) -> str:
    """One line a person reads, e.g. 'shop: applied 3f1e9a4: 4 resources'."""
    line = _WHITESPACE.sub(" ", f"{event.app}: {describe(event)}").strip()
    if len(line) > SUMMARY_LIMIT:
        line = line[: SUMMARY_LIMIT - 1] + "\u2026"
    return line


def _check_url(url: str) -> None:
    variable = env_name("notify_url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError on a port that is not a number
    except ValueError as exc:
        raise InvalidRoutes(f"{variable} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRoutes(
            f"{variable} must be an http:// or https:// URL, not {parts.scheme or 'no'} scheme"
        )
    if not parts.hostname:
        raise InvalidRoutes(f"{variable} names no host")


def _where(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"
