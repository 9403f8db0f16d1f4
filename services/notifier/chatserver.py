"""The notifier's HTTP endpoint for chat platforms' requests: `<chat_url>/slack|discord|mattermost`.

`wake up` picks its port (WAKE_CHAT_PORT) and writes `chat_url` to
endpoints.json. A request is carried out only once its platform's check
passed (signature, freshness, never seen before); anything else gets a bare
401, and the reason goes to the log, never to the requester (STYLE 12).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiohttp import web

from services.notifier.discord import DiscordChannel
from services.notifier.mattermost import MattermostChannel
from services.notifier.slack import SlackChannel

log = logging.getLogger(__name__)

# A chat request is a button click or a short command; anything larger is not one.
MAX_BODY = 64 * 1024


class ChatServer:
    def __init__(
        self,
        *,
        slack: Sequence[SlackChannel],
        discord: Sequence[DiscordChannel] = (),
        mattermost: Sequence[MattermostChannel] = (),
    ) -> None:
        self._mattermost = [c for c in mattermost if c.takes_requests]
        self._slack = [c for c in slack if c.takes_requests]
        self._discord = [c for c in discord if c.takes_requests]
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/slack", self._on_slack)
        app.router.add_post("/discord", self._on_discord)
        app.router.add_post("/mattermost", self._on_mattermost)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = port
        log.info("chat requests served on http://%s:%d (/slack, /discord, /mattermost)", host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _on_slack(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = await _answered(
            self._slack, body, request, "slack: a request seen before (a replay) refused: 401"
        )
        if answer is not None:
            return answer
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        log.warning(
            "slack: request refused (401): no channel's signing secret verifies it, or its "
            "timestamp %r is not within 5 minutes of now",
            stamp[:20],
        )
        return web.Response(status=401)

    async def _on_discord(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = await _answered(
            self._discord,
            body,
            request,
            "discord: an interaction seen before (a replay) refused: 401",
        )
        if answer is not None:
            return answer
        log.warning(
            "discord: interaction refused (401): no channel's public key verifies its "
            "signature, or its timestamp is not within 5 minutes of now"
        )
        return web.Response(status=401)

    async def _on_mattermost(self, request: web.Request) -> web.Response:
        body = await request.read()
        for channel in self._mattermost:
            if channel.verified(body, request.content_type):
                return await channel.answer(body, request.content_type)
        log.warning(
            "mattermost: request refused (401): it carries no channel's action or slash token"
        )
        return web.Response(status=401)


async def _answered(
    channels: Sequence[SlackChannel] | Sequence[DiscordChannel],
    body: bytes,
    request: web.Request,
    replay: str,
) -> web.Response | None:
    """The answer of the first channel whose secret verifies the signed request; a
    401 for a request seen before (logged as `replay`); None if no channel verifies it."""
    for channel in channels:
        if channel.verified(body, request.headers):
            if not channel.first_time(request.headers):
                log.warning(replay)
                await channel.refuse_replay(body)
                return web.Response(status=401)
            return await channel.answer(body)
    return None
