from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.e2e.harness import WakeUnderTest, running_wake


@pytest.fixture(scope="package")
async def wake(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[WakeUnderTest]:
    """One Wake for the end-to-end tests; each test uses apps and namespaces of its own."""
    async with running_wake(
        tmp_path_factory.mktemp("e2e"),
        # A little latency per request, as a real API server has, so that an
        # apply takes long enough to be interrupted.
        sandbox_latency_ms=20,
        env={"WAKE_NOTIFY_EVENTS": "ApplySucceeded,ApplyFailed,RenderFailed,ApprovalRequested"},
    ) as wake:
        yield wake
