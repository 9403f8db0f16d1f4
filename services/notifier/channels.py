"""The chat channels of a notify file, made with their credentials (read here, once)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

import aiohttp

from services.notifier.channel import ChatChannel
from services.notifier.chatops import ChatOps
from services.notifier.discord import DiscordChannel
from services.notifier.journeys import Threads
from services.notifier.matrix import MatrixClient
from services.notifier.matrix_channel import MatrixChannel
from services.notifier.mattermost import MattermostChannel
from services.notifier.notifyconfig import read_credential
from services.notifier.notifyfile import ChannelSpec
from services.notifier.slack import SlackChannel
from services.notifier.teams import TeamsChannel

CHAT_TYPES = ("matrix", "slack", "discord", "mattermost", "teams")


@dataclass
class ChatChannels:
    every: list[ChatChannel] = field(default_factory=list)
    slack: list[SlackChannel] = field(default_factory=list)
    discord: list[DiscordChannel] = field(default_factory=list)
    mattermost: list[MattermostChannel] = field(default_factory=list)


def make_channels(
    specs: Iterable[ChannelSpec],
    session: aiohttp.ClientSession,
    *,
    threads: Threads,
    chatops: ChatOps | None,
    stop: asyncio.Event,
) -> ChatChannels:
    """A channel for each chat spec; NotifyConfigError if a credential cannot be read."""
    made = ChatChannels()
    for spec in specs:
        secret = {what: read_credential(where) for what, where in spec.credentials.items()}
        if spec.type == "matrix":
            client = MatrixClient(
                session,
                homeserver=spec.options["homeserver"],
                user_id=spec.options["user_id"],
                token=secret["access_token"],
                stop=stop,
            )
            made.every.append(
                MatrixChannel(spec, client, threads=threads, chatops=chatops, stop=stop)
            )
        elif spec.type == "slack":
            slack = SlackChannel(
                spec,
                session,
                token=secret["bot_token"],
                signing_secret=secret.get("signing_secret", ""),
                threads=threads,
                chatops=chatops,
                stop=stop,
            )
            made.every.append(slack)
            made.slack.append(slack)
        elif spec.type == "discord":
            discord = DiscordChannel(
                spec,
                session,
                webhook_url=secret["webhook_url"],
                threads=threads,
                chatops=chatops,
                stop=stop,
            )
            made.every.append(discord)
            made.discord.append(discord)
        elif spec.type == "mattermost":
            mattermost = MattermostChannel(
                spec,
                session,
                bot_token=secret["bot_token"],
                action_token=secret.get("action_token", ""),
                slash_token=secret.get("slash_token", ""),
                threads=threads,
                chatops=chatops,
                stop=stop,
            )
            made.every.append(mattermost)
            made.mattermost.append(mattermost)
        elif spec.type == "teams":
            made.every.append(
                TeamsChannel(spec, session, webhook_url=secret["webhook_url"], stop=stop)
            )
    return made
