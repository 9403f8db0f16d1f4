from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.chat.world import Chat, running_chat


@pytest.fixture(scope="package")
async def chat(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chat]:
    """One Synapse, one Slack Web API stand-in and one Wake for every chat test."""
    async with running_chat(tmp_path_factory.mktemp("chat")) as chat:
        yield chat
