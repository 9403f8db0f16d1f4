"""`wake notify test CHANNEL`: a test message through a channel, and the platform's answer."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import click

from services.cli.connecting import data_dir_option, settings_for


@click.group()
def notify() -> None:
    """The notification channels (WAKE_NOTIFY_URL, the notify file WAKE_NOTIFY_CONFIG)."""


@notify.command("test")
@data_dir_option
@click.option(
    "--config",
    "config_path",
    default=None,
    help="The notify file [default: WAKE_NOTIFY_CONFIG].",
)
@click.argument("channel")
def test(data_dir: str, config_path: str | None, channel: str) -> None:
    """Send a test message through CHANNEL and print what its platform answered.

    CHANNEL is a channel of the notify file, or `webhook` (WAKE_NOTIFY_URL).
    Nothing is appended to the log.
    """
    import aiohttp

    from services.notifier.channel import ChannelError
    from services.notifier.channels import make_channels
    from services.notifier.journeys import ChatText, Threads
    from services.notifier.notifyconfig import load_notify_config, read_credential
    from services.notifier.notifyfile import NotifyConfigError
    from services.notifier.routing import WEBHOOK, file_webhooks, routes_from_settings
    from services.notifier.signing import signed_headers

    settings = settings_for(data_dir, notify_config=config_path)
    try:
        config = load_notify_config(settings)
    except NotifyConfigError as exc:
        raise click.ClickException(str(exc)) from None
    line = f"Wake test message from {socket.gethostname()}: channel {channel} works"
    text = ChatText(line, f"Wake test message from <b>{socket.gethostname()}</b>: channel "
                    f"<code>{channel}</code> works")  # fmt: skip

    async def send() -> str:
        async with aiohttp.ClientSession(headers={"User-Agent": "wake-notify-test"}) as session:
            spec = config.channels.get(channel)
            if spec is None or spec.type == "webhook":
                hooks = routes_from_settings(settings).channels if channel == WEBHOOK else ()
                if spec is not None:
                    secret = {}
                    if "secret" in spec.credentials:
                        secret[spec.name] = read_credential(spec.credentials["secret"])
                    hooks = tuple(file_webhooks(config, secret))
                hook = next((h for h in hooks if h.name == channel), None)
                if hook is None:
                    known = sorted({*config.channels, *([WEBHOOK] if settings.notify_url else [])})
                    raise click.ClickException(
                        f"no channel {channel!r} (channels: {', '.join(known) or 'none'})"
                    )
                body = json.dumps({"test": True, "summary": line}).encode()
                headers = signed_headers(
                    body, event_type="Test", event_id=str(uuid.uuid4()), secret=hook.secret
                )
                async with session.post(hook.url, data=body, headers=headers) as answer:
                    excerpt = (await answer.content.read(512)).decode("utf-8", "replace")
                    return f"HTTP {answer.status} {excerpt}".strip()
            made = make_channels(
                [spec], session, threads=Threads(), chatops=None, stop=asyncio.Event()
            )
            return await made.every[0].send_test(text)

    try:
        answer = asyncio.run(send())
    except (NotifyConfigError, ChannelError) as exc:
        raise click.ClickException(f"{channel}: {exc}") from None
    except aiohttp.ClientError as exc:
        raise click.ClickException(f"{channel}: {type(exc).__name__}") from None
    kind = config.channels[channel].type if channel in config.channels else "webhook"
    click.echo(f"{channel} ({kind}) answered: {answer}")
