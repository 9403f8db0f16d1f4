"""A Matrix channel of the notify file: journeys posted as threads, commands read and answered."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

from events.envelope import Envelope
from events.payloads import ApprovalRequested
from services.notifier import commands
from services.notifier.channel import Posted
from services.notifier.chatops import ChatOps, Reply, Request
from services.notifier.journeys import (
    ChatText,
    Threads,
    commit_of,
    event_text,
    reply_text,
    root_text,
)
from services.notifier.matrix import Incoming, MatrixClient, MatrixError, edit, message
from services.notifier.notifyfile import ChannelSpec

log = logging.getLogger(__name__)

PLATFORM = "matrix"

# Seconds between two tries at following the room after /sync failed.
LISTEN_BACKOFF = 2.0


class MatrixChannel:
    def __init__(
        self,
        spec: ChannelSpec,
        client: MatrixClient,
        *,
        threads: Threads,
        chatops: ChatOps | None,
        stop: asyncio.Event,
    ) -> None:
        self.name = spec.name
        self.where = spec.options["homeserver"]
        self.room = spec.options["room"]
        self._client = client
        self._threads = threads
        self._chatops = chatops
        self._stop = stop
        self.room_id = ""

    async def joined(self) -> str:
        """The room's id, joining it first if the bot has not yet (accepting the invite that
        waits for it); MatrixError if the homeserver refuses."""
        if not self.room_id:
            self.room_id = await self._client.join(self.room)
            log.info("%s: %s joined %s", self.name, self._client.user_id, self.room_id)
        return self.room_id

    async def notify(self, event: Envelope, *, txn: str) -> Posted:
        """Post `event` in its journey's thread (opening it with the journey's first message),
        then bring the first message up to date. MatrixError if the post fails."""
        thread = self._threads.get(self.name, event.correlation_id)
        if thread is None:
            root = await self._client.send(self.room_id, message(root_text(event, None)), txn=txn)
            self._threads.opened(self.name, event, root)
            return Posted(message_id=root, thread_id=root)
        if not thread.commit:
            # A thread folded from the log after a restart learns its commit again.
            thread.commit = commit_of(event)
        hint = ""
        if isinstance(event.payload, ApprovalRequested):
            hint = f"{commands.PREFIX} approve {event.payload.plan_id[:8]}"
        sent = await self._client.send(
            self.room_id,
            message(event_text(event, approve_hint=hint), thread_root=thread.root_id),
            txn=txn,
        )
        try:
            await self._client.send(
                self.room_id,
                edit(root_text(event, thread), original=thread.root_id),
                txn=f"{txn}.e",
            )
        except MatrixError as exc:
            # The thread has the news; only the summary on top is stale.
            log.warning("%s: could not update the journey's first message: %s", self.name, exc)
        return Posted(message_id=sent, thread_id=thread.root_id)

    async def send_test(self, text: ChatText) -> str:
        room_id = await self.joined()
        sent = await self._client.send(room_id, message(text), txn=f"test.{uuid.uuid4().hex}")
        return json.dumps({"room_id": room_id, "event_id": sent})

    async def listen(self) -> None:
        """Answer the room's `!wake` commands until stop; a homeserver away is waited for."""
        if self._chatops is None:
            return
        while not self._stop.is_set():
            try:
                async for batch in self._client.messages(await self.joined()):
                    for said in batch:
                        if commands.is_command(said.body):
                            await self._answer_logged(said)
            except MatrixError as exc:
                log.warning("%s: following the room failed: %s", self.name, exc)
                if await _stopped_within(self._stop, LISTEN_BACKOFF):
                    return

    async def _answer_logged(self, said: Incoming) -> None:
        # One command that cannot be carried out now (the log away, a bug) must not
        # end the following of the room: it is logged, the next one is read.
        try:
            await self._answer(said)
        except Exception:
            log.exception("%s: command %s from %s failed", self.name, said.event_id, said.sender)

    async def _answer(self, said: Incoming) -> None:
        if self._chatops is None:
            return
        journey = (
            self._threads.journey_of_root(self.name, said.thread_root) if said.thread_root else None
        )
        request = Request(
            channel=self.name,
            requester=f"{PLATFORM}:{said.sender}",
            text=said.body,
            message_ref=said.event_id,
            display_name=await self._client.display_name(said.sender),
            thread_app=journey[1].app if journey else "",
        )
        reply = await self._chatops.handle(request)
        root = said.thread_root or self._thread_of(reply)
        content = message(reply_text(reply.text, done=reply.done), thread_root=root)
        if not root:
            content["m.relates_to"] = {"m.in_reply_to": {"event_id": said.event_id}}
        try:
            await self._client.send(self.room_id, content, txn=f"reply.{said.event_id}")
        except MatrixError as exc:
            log.warning("%s: could not answer %s: %s", self.name, said.event_id, exc)

    def _thread_of(self, reply: Reply) -> str:
        if reply.about is None:
            return ""
        thread = self._threads.get(self.name, reply.about.correlation_id)
        return thread.root_id if thread is not None else ""


async def _stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
