"""One Wake for the chat tests, with a channel on each platform: Matrix on a real Synapse,
Slack's Web API played by a local recording server (`slack_api`)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from nacl.signing import SigningKey

from services.wiring.ports import free_port
from tests.chat.discord_api import DiscordWebhook
from tests.chat.mattermost_api import MattermostApi
from tests.chat.slack_api import SlackApi
from tests.chat.synapse import SERVER_NAME, Person, running_synapse
from tests.chat.teams_api import TeamsWorkflow
from tests.e2e.harness import WakeUnderTest, running_wake
from tests.waiting import eventually

ANA = f"matrix:@ana:{SERVER_NAME}"
BOB = f"matrix:@bob:{SERVER_NAME}"
SLACK_ANA = "slack:U0ANA"

SIGNING_ENV = "WAKE_TEST_SLACK_SIGNING_SECRET"
MM_ACTION_ENV = "WAKE_TEST_MATTERMOST_ACTION_TOKEN"

NOTIFY_FILE = """\
channels:
  team:
    type: matrix
    homeserver: {url}
    user_id: "@wake:{server}"
    access_token_file: {token_file}
    room: "{room}"
  ops-slack:
    type: slack
    bot_token_file: {slack_token_file}
    signing_secret_env: {signing_env}
    channel: {slack_channel}
    api_url: {slack_api}
  ops-discord:
    type: discord
    webhook_url_file: {discord_webhook_file}
    public_key: "{discord_public_key}"
  ops-mattermost:
    type: mattermost
    url: {mm_url}
    channel_id: {mm_channel}
    actions_url: {chat_url}/mattermost
    bot_token_file: {mm_token_file}
    action_token_env: {mm_action_env}
    slash_token_file: {mm_slash_file}
  ops-teams:
    type: teams
    webhook_url_file: {teams_webhook_file}
groups:
  release-managers: ["{ana}", "{slack_ana}"]
routes:
  - apps: ["chat-*"]
    events: [RevisionDetected, PlanCreated, ApprovalRequested, PlanApproved, ApprovalAccepted,
             ApprovalRefused, ApplySucceeded, ApplyFailed, RollbackRequested]
    channels: [team]
  - apps: ["slack-*"]
    events: [RevisionDetected, PlanCreated, ApprovalRequested, PlanApproved, ApprovalAccepted,
             ApplySucceeded]
    channels: [ops-slack]
  - apps: ["discord-*"]
    events: [RevisionDetected, PlanCreated, ApprovalRequested, ApplySucceeded]
    channels: [ops-discord]
  - apps: ["mm-*"]
    events: [RevisionDetected, PlanCreated, ApprovalRequested, PlanApproved, ApprovalAccepted,
             ApplySucceeded]
    channels: [ops-mattermost]
  - apps: ["teams-*"]
    events: [RevisionDetected, ApplySucceeded]
    channels: [ops-teams]
"""


@dataclass
class Chat:
    wake: WakeUnderTest
    room: str
    ana: Person
    bob: Person
    bot: str
    slack: SlackApi
    slack_signing_secret: str
    discord: DiscordWebhook
    discord_key: SigningKey
    teams: TeamsWorkflow
    mattermost: MattermostApi
    mattermost_action_token: str
    mattermost_slash_token: str
    secrets: list[str]
    env: dict[str, str]
    """What Wake's processes were given: the notify file and the Slack signing secret."""

    @property
    def chat_url(self) -> str:
        return self.wake.running.endpoints.chat_url

    async def said_by_wake(self) -> list[dict[str, Any]]:
        return [m for m in await self.ana.messages(self.room) if m["sender"] == self.bot]

    async def in_thread(self, root: str) -> list[dict[str, Any]]:
        return [m for m in await self.said_by_wake() if thread_of(m) == root]

    async def wake_says(self, root: str | None, *words: str) -> dict[str, Any]:
        """The first message of Wake in thread `root` (None: anywhere) containing all of `words`."""
        found: list[dict[str, Any]] = []

        async def said() -> bool:
            where = await (self.said_by_wake() if root is None else self.in_thread(root))
            found[:] = [m for m in where if all(w in m["content"].get("body", "") for w in words)]
            return bool(found)

        await eventually(said, timeout=30)
        return found[0]


def thread_of(message: dict[str, Any]) -> str:
    relation = message["content"].get("m.relates_to") or {}
    return relation.get("event_id", "") if relation.get("rel_type") == "m.thread" else ""


def _secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@asynccontextmanager
async def running_chat(root: Path) -> AsyncIterator[Chat]:
    slack = SlackApi(token=f"xoxb-{secrets.token_hex(12)}")
    signing_secret = secrets.token_hex(16)
    discord, discord_key = DiscordWebhook(), SigningKey.generate()
    await slack.start()
    await discord.start()
    teams = TeamsWorkflow()
    await teams.start()
    mattermost = MattermostApi()
    await mattermost.start()
    action_token, slash_token = secrets.token_hex(16), secrets.token_hex(13)
    # The chat port is chosen here: Mattermost's buttons name the URL they call back.
    chat_port = free_port()
    try:
        async with running_synapse(root / "synapse") as url, aiohttp.ClientSession() as session:
            bot = await Person.register(session, url, "wake", display_name="Wake")
            ana = await Person.register(session, url, "ana", display_name="Ana")
            bob = await Person.register(session, url, "bob", display_name="Bob")
            # The room exists before Wake: its bot is invited, and accepts when it starts.
            room = await ana.create_room(invite=[bot.user_id, bob.user_id])
            await bob.join(room)
            notify_file = root / "notify.yaml"
            notify_file.write_text(
                NOTIFY_FILE.format(
                    url=url,
                    server=SERVER_NAME,
                    token_file=_secret_file(root / "matrix.token", bot.token),
                    room=room,
                    ana=ANA,
                    slack_ana=SLACK_ANA,
                    slack_token_file=_secret_file(root / "slack.token", slack.token),
                    signing_env=SIGNING_ENV,
                    slack_channel=slack.channel_id,
                    slack_api=slack.url,
                    discord_webhook_file=_secret_file(root / "discord.url", discord.url),
                    discord_public_key=discord_key.verify_key.encode().hex(),
                    teams_webhook_file=_secret_file(root / "teams.url", teams.url),
                    mm_url=mattermost.url,
                    mm_channel=mattermost.channel_id,
                    chat_url=f"http://127.0.0.1:{chat_port}",
                    mm_token_file=_secret_file(root / "mattermost.token", mattermost.token),
                    mm_action_env=MM_ACTION_ENV,
                    mm_slash_file=_secret_file(root / "mattermost.slash", slash_token),
                )
            )
            env = {
                "WAKE_NOTIFY_CONFIG": str(notify_file),
                SIGNING_ENV: signing_secret,
                MM_ACTION_ENV: action_token,
                "WAKE_CHAT_PORT": str(chat_port),
            }
            async with running_wake(root / "wake", env=env) as wake:
                yield Chat(
                    wake,
                    room,
                    ana,
                    bob,
                    bot.user_id,
                    slack=slack,
                    slack_signing_secret=signing_secret,
                    discord=discord,
                    discord_key=discord_key,
                    teams=teams,
                    mattermost=mattermost,
                    mattermost_action_token=action_token,
                    mattermost_slash_token=slash_token,
                    secrets=[
                        bot.token,
                        slack.token,
                        signing_secret,
                        discord.token,
                        teams.signature,
                    ],
                    env=env,
                )
    finally:
        await slack.stop()
        await discord.stop()
        await teams.stop()
        await mattermost.stop()


async def assert_no_secret(chat: Chat, messages: list[Any]) -> None:
    """No token or signing secret in any event, log line or message body sent."""
    logs = [p.read_text(errors="replace") for p in (chat.wake.root / "logs").glob("*.log")]
    events = [data async for _, _, data in chat.wake.log.read_raw(subjects=["wake.evt.>"])]
    assert events and logs and messages
    bodies = json.dumps(messages)
    for secret in chat.secrets:
        assert secret not in bodies
        assert not [text for text in logs if secret in text]
        assert not [data for data in events if secret.encode() in data]
