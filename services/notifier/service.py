"""The notifier service: every event in, webhook POSTs out, each one recorded.

For each event a channel receives, the notifier POSTs it, then appends
NotificationSent or NotificationFailed, derived from the event with the
channel as key: one record per (event, channel), however often the event is
delivered to us.

Delivery to a receiver is at least once, not exactly once. The notifier may
stop after a receiver took a POST but before the record is appended; the
event then comes again and is POSTed again. Receivers drop such duplicates by
`X-Wake-Delivery` (the event's id). What cannot happen is the reverse race:
if the record was appended but the event not acked, the redelivered event
finds its record in the log and is not POSTed again.

The consumer starts at the events appended after it was first created
(DeliverPolicy.NEW): a notifier switched on for an old log tells of what
happens from then on, not of its whole history. From then on it is durable
and misses nothing, across restarts.

Events are handled one at a time, in log order, so a receiver sees them in
the order they happened; a slow receiver delays the notifications behind it.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import nats.js.api as api

from events import names
from events.envelope import InvalidEvent, derived_event_id
from services.notifier.attempts import RECORD_TYPES, record_of
from services.notifier.delivery import deliver
from services.notifier.routing import Message, Routes, route, routes_from_settings
from services.wiring import telemetry
from services.wiring.consumers import ConsumerSettings, serve_consumer
from services.wiring.eventlog import StoredEvent
from services.wiring.runtime import ServiceContext

log = logging.getLogger(__name__)

CONSUMER = ConsumerSettings(
    name="notifier",
    subjects=[names.ALL_SUBJECTS],
    deliver_policy=api.DeliverPolicy.NEW,
)

USER_AGENT = "wake-notifier"


async def main(ctx: ServiceContext) -> None:
    """Notify until `ctx.stop`; raise InvalidRoutes at once if the settings cannot work."""
    routes = routes_from_settings(ctx.settings)
    for warning in routes.warnings:
        log.warning("%s", warning)
    if routes.channels:
        for channel in routes.channels:
            log.info(
                "channel %s: %s receives %s",
                channel.name,
                channel.where,
                ", ".join(sorted(channel.event_types)) or "nothing",
            )
    else:
        log.info("no notification channel configured (WAKE_NOTIFY_URL is empty): routing nothing")
    async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
        notifier = Notifier(ctx, routes, session)
        await serve_consumer(ctx, CONSUMER, notifier.handle)


class Notifier:
    """The handler of the `notifier` consumer."""

    def __init__(self, ctx: ServiceContext, routes: Routes, session: aiohttp.ClientSession) -> None:
        self._ctx = ctx
        self._routes = routes
        self._session = session

    async def handle(self, stored: StoredEvent) -> None:
        """Deliver and record every message `stored` is routed as, unless already recorded.

        Raises only if the log cannot be read or appended to (the consumer
        then redelivers), or DeliveryInterrupted on stop.
        """
        for message in route(stored.event, seq=stored.seq, routes=self._routes):
            if await self._recorded(stored, message.channel):
                log.info(
                    "%s: %s %s already recorded; not sent again",
                    message.channel,
                    message.about_type,
                    message.about_event_id,
                )
                continue
            await self._notify(stored, message)

    async def _notify(self, stored: StoredEvent, message: Message) -> None:
        settings = self._ctx.settings
        trace = telemetry.traceparent()
        outcome = await deliver(
            self._session,
            message,
            attempts=settings.notify_retries,
            backoff=settings.notify_backoff,
            stop=self._ctx.stop,
            extra_headers={names.TRACEPARENT_HEADER: trace} if trace else None,
        )
        record = self._ctx.derive(
            record_of(message, outcome), cause=stored.event, key=message.channel
        )
        await self._ctx.log.append(record)
        if outcome.sent:
            log.info(
                "%s (%s): sent %s %s (seq %d) in %d attempt(s), HTTP %s",
                message.channel,
                message.where,
                message.about_type,
                message.about_event_id,
                stored.seq,
                outcome.attempts,
                outcome.status_code,
            )
        else:
            log.warning(
                "%s (%s): gave up on %s %s (seq %d) after %d attempt(s): %s",
                message.channel,
                message.where,
                message.about_type,
                message.about_event_id,
                stored.seq,
                outcome.attempts,
                outcome.error,
            )

    async def _recorded(self, stored: StoredEvent, channel: str) -> bool:
        """Whether this event's notification on `channel` is already in the log.

        A record comes after the event it is about, so only records of the
        event's app stored after `stored.seq` can be it; in the usual case
        (first delivery, no backlog) there are none, and two direct reads of
        the last record of each kind show it.
        """
        event = stored.event
        ids = {derived_event_id(event.event_id, t, channel) for t in RECORD_TYPES}
        subjects = [names.subject(event.app, t) for t in RECORD_TYPES]
        positions = await asyncio.gather(*(self._ctx.log.position(s) for s in subjects))
        if max(positions) <= stored.seq:
            return False
        async for seq, subject, data in self._ctx.log.read_raw(
            from_seq=stored.seq + 1, subjects=subjects
        ):
            try:
                opened = await self._ctx.log.open(data, seq=seq, subject=subject)
                if opened.event_id in ids:
                    return True
            except InvalidEvent:
                # Not one of ours (ours decode); the consumer records it as rejected
                # when it reaches it.
                log.debug("skipping undecodable record at seq %d", seq)
        return False
