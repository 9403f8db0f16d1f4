"""What the notifier asks of a chat channel, whatever its platform."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from events.envelope import Envelope
from services.notifier.journeys import ChatText


class ChannelError(RuntimeError):
    """A platform refused a message or never answered; the message names the call, never a
    credential."""


@dataclass(frozen=True, slots=True)
class Posted:
    """A message sent: the platform's id of it and of its thread's first message."""

    message_id: str
    thread_id: str


class ChatChannel(Protocol):
    name: str
    where: str
    """What logs show of where it posts (a homeserver, an API's host): never a credential."""

    async def notify(self, event: Envelope, *, txn: str) -> Posted:
        """Post `event` in its journey's thread; ChannelError if the platform refuses."""
        ...

    async def send_test(self, text: ChatText) -> str:
        """Post `text` on its own (`wake notify test`); what the platform answered, as JSON."""
        ...

    async def listen(self) -> None:
        """Read commands from the platform until stop (return at once if it pushes them)."""
        ...
