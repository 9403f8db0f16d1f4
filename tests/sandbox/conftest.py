"""A sandbox started once per session, and clients configured as Wake's are: from a kubeconfig."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.dynamic import DynamicClient

from services.sandbox import Sandbox


@pytest.fixture(scope="session")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as started:
        yield started


@pytest.fixture(scope="session")
def kubeconfig(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sandbox.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")


@pytest.fixture(scope="session")
async def api_client(kubeconfig: Path) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration=configuration) as api:
        yield api


@pytest.fixture(scope="session")
async def dynamic(
    api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> DynamicClient:
    # A cache file of our own: the default one lives in /tmp keyed by URL and
    # would outlive this session's CRDs.
    cache = tmp_path_factory.mktemp("discovery") / "cache.json"
    return await DynamicClient(api_client, cache_file=str(cache))


@pytest.fixture
async def namespace(api_client: client.ApiClient) -> str:
    name = f"t-{uuid.uuid4().hex[:10]}"
    await client.CoreV1Api(api_client).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name
