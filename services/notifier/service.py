"""The notifier service: every event in, webhook POSTs and chat messages out, each one
recorded; commands from chat in, carried out or refused on the record.

Channels are WAKE_NOTIFY_URL's webhook and the notify file's (WAKE_NOTIFY_CONFIG:
webhooks, Matrix, Slack, Discord). On a chat channel each journey is a thread
(`journeys`), continued after a restart from the records' `thread_id`; commands
arrive through Matrix's /sync (`matrix_channel`) or at `<chat_url>/slack|discord`
(`chatserver`) and are carried out by `chatops`.

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
An event of a type no channel receives is acknowledged unread (`wants`): not
decoded, not verified. The projector, which reads every event, is the one that
records a forged or unreadable one (an EventRejected).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aiohttp
import nats.js.api as api

from events import names
from events.envelope import derived_event_id
from events.payloads import NotificationFailed, NotificationSent
from services.notifier.attempts import RECORD_TYPES, record_of
from services.notifier.channel import ChannelError, ChatChannel
from services.notifier.channels import CHAT_TYPES, make_channels
from services.notifier.chatops import ChatOps
from services.notifier.chatserver import ChatServer
from services.notifier.delivery import deliver
from services.notifier.journeys import Threads
from services.notifier.notifyconfig import load_notify_config, read_credential
from services.notifier.notifyfile import NotifyConfig, NotifyConfigError
from services.notifier.routing import (
    WEBHOOK,
    Message,
    Routes,
    file_webhooks,
    never_routed,
    route,
    routes_from_settings,
)
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
    """Notify until `ctx.stop`; raise InvalidRoutes (or NotifyConfigError) at once if the
    settings or the notify file cannot work."""
    config = load_notify_config(ctx.settings)
    for warning in config.warnings:
        log.warning("%s", warning)
    routes = routes_from_settings(ctx.settings)
    for warning in routes.warnings:
        log.warning("%s", warning)
    if routes.channels and WEBHOOK in config.channels:
        raise NotifyConfigError(
            f"{config.source}: channels.{WEBHOOK}: the name is taken by WAKE_NOTIFY_URL's "
            "channel; choose another"
        )
    secrets = {
        spec.name: read_credential(spec.credentials["secret"])
        for spec in config.channels.values()
        if spec.type == "webhook" and "secret" in spec.credentials
    }
    routes = Routes(
        channels=(*routes.channels, *file_webhooks(config, secrets)), warnings=routes.warnings
    )
    for channel in routes.channels:
        log.info(
            "channel %s: %s receives %s",
            channel.name,
            channel.where,
            "the notify file's routes"
            if channel.routes
            else ", ".join(sorted(channel.event_types)) or "nothing",
        )
    chat_specs = [s for s in config.channels.values() if s.type in CHAT_TYPES]
    if not routes.channels and not chat_specs:
        log.info(
            "no notification channel configured (WAKE_NOTIFY_URL and WAKE_NOTIFY_CONFIG are "
            "empty): routing nothing"
        )
    # One replica takes commands (`wake up --replicas`: the first; WAKE_CHAT_PORT is its).
    takes_commands = ctx.settings.replica_slot in (-1, 0)
    async with aiohttp.ClientSession(headers={"User-Agent": USER_AGENT}) as session:
        threads = Threads()
        chatops = ChatOps(
            ctx.log, config, system_namespace=ctx.settings.system_namespace, refuser=ctx.actor
        )
        made = make_channels(chat_specs, session, threads=threads, chatops=chatops, stop=ctx.stop)
        chats = made.every
        for chat in chats:
            log.info("channel %s: %s", chat.name, chat.where)
        if chats:
            await _fold_threads(ctx, threads)
        server = ChatServer(slack=made.slack, discord=made.discord, mattermost=made.mattermost)
        if ctx.settings.chat_port and takes_commands:
            await server.start(ctx.settings.chat_host, ctx.settings.chat_port)
        notifier = Notifier(ctx, routes, session, config=config, chats=chats)
        listeners = [
            asyncio.create_task(chat.listen(), name=chat.name) for chat in chats if takes_commands
        ]
        try:
            await serve_consumer(ctx, CONSUMER, notifier.handle, wants=notifier.wants)
        finally:
            for listener in listeners:
                listener.cancel()
            await asyncio.gather(*listeners, return_exceptions=True)
            await server.stop()
            for channel in made.slack:
                await channel.close()


async def _fold_threads(ctx: ServiceContext, threads: Threads) -> None:
    """Each journey's thread, from the NotificationSent records (a restart continues them)."""
    subjects = [names.type_subjects(NotificationSent.event_type)]
    async for stored in ctx.log.read(subjects=subjects):
        threads.remember(stored.event)
    log.info("%d journey threads known", len(threads.by_journey))


class Notifier:
    """The handler of the `notifier` consumer."""

    def __init__(
        self,
        ctx: ServiceContext,
        routes: Routes,
        session: aiohttp.ClientSession,
        *,
        config: NotifyConfig | None = None,
        chats: Sequence[ChatChannel] = (),
    ) -> None:
        self._ctx = ctx
        self._routes = routes
        self._session = session
        self._config = config or NotifyConfig()
        self._chats = chats
        self._wanted: dict[str, bool] = {}

    def wants(self, event_type: str) -> bool:
        """Whether any channel may be sent an event of this type (for some app).

        The consumer reads every event; the others -- most of a fan-out's --
        are acknowledged unread.
        """
        wanted = self._wanted.get(event_type)
        if wanted is None:
            wanted = self._wanted[event_type] = self._routes_type(event_type)
        return wanted

    def _routes_type(self, event_type: str) -> bool:
        if never_routed(event_type):
            return False
        for channel in self._routes.channels:
            if channel.routes:
                if any(
                    channel.name in r.channels and ("*" in r.events or event_type in r.events)
                    for r in channel.routes
                ):
                    return True
            elif event_type in channel.event_types:
                return True
        chats = {chat.name for chat in self._chats}
        return any(
            ("*" in r.events or event_type in r.events) and chats.intersection(r.channels)
            for r in self._config.routes
        )

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
        if never_routed(stored.event.type):
            return
        wanted = self._config.channels_for(stored.event.app, stored.event.type)
        for chat in self._chats:
            if chat.name not in wanted:
                continue
            if await self._recorded(stored, chat.name):
                log.info(
                    "%s: %s %s already recorded; not sent again",
                    chat.name,
                    stored.event.type,
                    stored.event.event_id,
                )
                continue
            await self._chat(stored, chat)

    async def _chat(self, stored: StoredEvent, chat: ChatChannel) -> None:
        event = stored.event
        record: NotificationSent | NotificationFailed
        try:
            # The transaction id is the record's: a retry after a crash is the same message.
            posted = await chat.notify(
                event, txn=derived_event_id(event.event_id, "chat", chat.name)
            )
        except ChannelError as exc:
            record = NotificationFailed(
                channel=chat.name,
                about_event_id=event.event_id,
                about_type=event.type,
                attempts=1,
                error=str(exc),
            )
            log.warning("%s: gave up on %s %s: %s", chat.name, event.type, event.event_id, exc)
        else:
            record = NotificationSent(
                channel=chat.name,
                about_event_id=event.event_id,
                about_type=event.type,
                message_id=posted.message_id,
                thread_id=posted.thread_id,
            )
            log.info(
                "%s: sent %s %s (seq %d) as %s in thread %s",
                chat.name,
                event.type,
                event.event_id,
                stored.seq,
                posted.message_id,
                posted.thread_id,
            )
        await self._ctx.log.append(self._ctx.derive(record, cause=event, key=chat.name))

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
        async for later in self._ctx.log.read(from_seq=stored.seq + 1, subjects=subjects):
            if later.event.event_id in ids:
                return True
        return False
