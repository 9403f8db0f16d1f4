"""A real Synapse homeserver for the tests (the `matrix-synapse` wheel, SQLite, loopback),
and a person's Matrix client over its client-server API (plain HTTP)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from services.wiring.ports import free_port
from tests.waiting import eventually

SERVER_NAME = "wake.test"
API = "/_matrix/client/v3"

# Synapse's own limits would slow a test's burst of messages to one per 5 s.
_OVERRIDES = """\
listeners:
  - port: {port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources: [{{names: [client], compress: false}}]
database: {{name: sqlite3, args: {{database: {directory}/homeserver.db}}}}
enable_registration: true
enable_registration_without_verification: true
trusted_key_servers: []
suppress_key_server_warning: true
rc_message: {{per_second: 1000, burst_count: 1000}}
rc_registration: {{per_second: 1000, burst_count: 1000}}
rc_joins:
  local: {{per_second: 1000, burst_count: 1000}}
  remote: {{per_second: 1000, burst_count: 1000}}
rc_invites:
  per_room: {{per_second: 1000, burst_count: 1000}}
  per_user: {{per_second: 1000, burst_count: 1000}}
  per_issuer: {{per_second: 1000, burst_count: 1000}}
"""


@asynccontextmanager
async def running_synapse(directory: Path) -> AsyncIterator[str]:
    """A Synapse for `SERVER_NAME` on a free loopback port; yields its base URL."""
    directory.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "synapse.app.homeserver"]
    config = directory / "homeserver.yaml"
    await asyncio.to_thread(
        subprocess.run,
        [
            *command,
            "--server-name",
            SERVER_NAME,
            "--config-path",
            str(config),
            "--generate-config",
            "--report-stats=no",
        ],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    port = free_port()
    overrides = directory / "test.yaml"
    overrides.write_text(_OVERRIDES.format(port=port, directory=directory))
    url = f"http://127.0.0.1:{port}"
    with (directory / "synapse.out").open("w") as out:
        process = subprocess.Popen(
            [*command, "-c", str(config), "-c", str(overrides)],
            cwd=directory,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        async with aiohttp.ClientSession() as session:

            async def up() -> bool:
                if process.poll() is not None:
                    raise AssertionError(
                        f"synapse exited {process.returncode}: "
                        + (directory / "synapse.out").read_text()[-2000:]
                    )
                try:
                    async with session.get(f"{url}/_matrix/client/versions") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(up, timeout=60)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)


@dataclass
class Person:
    """Someone on the homeserver, through their own client."""

    session: aiohttp.ClientSession
    url: str
    user_id: str
    token: str = field(repr=False)

    @classmethod
    async def register(
        cls, session: aiohttp.ClientSession, url: str, name: str, *, display_name: str = ""
    ) -> Person:
        body = {
            "username": name,
            "password": f"pw-{uuid.uuid4()}",
            "auth": {"type": "m.login.dummy"},
        }
        async with session.post(f"{url}{API}/register", json=body) as response:
            answer = await response.json()
            assert response.status == 200, answer
        person = cls(session, url, answer["user_id"], answer["access_token"])
        if display_name:
            await person.call(
                "PUT",
                f"/profile/{quote(person.user_id)}/displayname",
                {"displayname": display_name},
            )
        return person

    async def call(self, method: str, path: str, body: Any = None, **params: str) -> Any:
        async with self.session.request(
            method,
            f"{self.url}{API}{path}",
            json=body,
            params=params or None,
            headers={"Authorization": f"Bearer {self.token}"},
        ) as response:
            answer = await response.json()
            assert response.status == 200, (method, path, answer)
            return answer

    async def create_room(self, *, invite: list[str]) -> str:
        answer = await self.call(
            "POST", "/createRoom", {"preset": "private_chat", "invite": invite}
        )
        return answer["room_id"]

    async def join(self, room_id: str) -> None:
        await self.call("POST", f"/join/{quote(room_id)}", {})

    async def say(self, room_id: str, text: str, *, thread_root: str = "") -> str:
        content: dict[str, Any] = {"msgtype": "m.text", "body": text}
        if thread_root:
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": thread_root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": thread_root},
            }
        txn = uuid.uuid4().hex
        answer = await self.call(
            "PUT", f"/rooms/{quote(room_id)}/send/m.room.message/{txn}", content
        )
        return answer["event_id"]

    async def messages(self, room_id: str) -> list[dict[str, Any]]:
        """Every m.room.message of the room, oldest first (as a client pages back)."""
        found: list[dict[str, Any]] = []
        token = None
        while True:
            params = {
                "dir": "b",
                "limit": "100",
                "filter": json.dumps({"types": ["m.room.message"]}),
            }
            if token:
                params["from"] = token
            page = await self.call("GET", f"/rooms/{quote(room_id)}/messages", **params)
            found.extend(page.get("chunk", []))
            token = page.get("end")
            if not token or not page.get("chunk"):
                return list(reversed(found))
