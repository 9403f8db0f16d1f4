"""kubernetes_asyncio without loading its generated API classes and models up front.

Importing `kubernetes_asyncio` runs its package `__init__`s, which import every
generated API class and about 800 models: 61 MiB of a process's memory, of
which Wake uses none (it speaks to the API server through `ApiClient.call_api`
with plain dicts, `kube.py`). `load()` puts the three packages in place empty,
then imports only the modules Wake uses: the configuration, the ApiClient, its
REST client, the exceptions, and the kubeconfig loader. Anything else asked of
those packages (a test's `client.CoreV1Api`) completes the package then, by
running its real `__init__`, so nothing that works with the whole library
breaks.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

ROOT = "kubernetes_asyncio"
_LIGHT = (ROOT, f"{ROOT}.client", f"{ROOT}.client.models")


def load() -> None:
    """Import kubernetes_asyncio's client core and config lightly (once, before anyone else)."""
    if ROOT in sys.modules:
        return
    spec = importlib.util.find_spec(ROOT)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"No module named {ROOT!r}", name=ROOT)
    directory = Path(spec.origin).parent
    # The root's __init__ only imports its subpackages (each importable as such)
    # and names the version: that much, without the imports.
    root = _package(ROOT, directory, lazy=False)
    root.__project__ = ROOT
    root.__version__ = importlib.metadata.version(ROOT)
    client = _package(f"{ROOT}.client", directory / "client")
    models = _package(f"{ROOT}.client.models", directory / "client" / "models")
    root.client = client
    client.models = models
    configuration = importlib.import_module(f"{ROOT}.client.configuration")
    exceptions = importlib.import_module(f"{ROOT}.client.exceptions")
    importlib.import_module(f"{ROOT}.client.rest")
    api_client = importlib.import_module(f"{ROOT}.client.api_client")
    client.Configuration = configuration.Configuration
    client.ApiClient = api_client.ApiClient
    client.ApiException = exceptions.ApiException
    # kubernetes_asyncio.config's own __init__ is light: it needs only the above.
    root.config = importlib.import_module(f"{ROOT}.config")


def _package(name: str, directory: Path, *, lazy: bool = True) -> types.ModuleType:
    init = directory / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(directory)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if not lazy:
        return module
    completed = False

    def complete(attribute: str) -> object:
        nonlocal completed
        submodule = (directory / f"{attribute}.py").exists() or (directory / attribute).is_dir()
        # A submodule is imported as such (`from package import submodule` asks
        # first); only what the real __init__ defines completes the package.
        if not completed and not submodule:
            completed = True
            spec.loader.exec_module(module)
            if attribute in module.__dict__:
                return module.__dict__[attribute]
        raise AttributeError(f"module {name!r} has no attribute {attribute!r}")

    module.__getattr__ = complete  # type: ignore[method-assign]
    return module


load()

from kubernetes_asyncio import client, config  # noqa: E402
from kubernetes_asyncio.client.exceptions import ApiException  # noqa: E402
from kubernetes_asyncio.config.config_exception import ConfigException  # noqa: E402

__all__ = ["ApiException", "ConfigException", "client", "config", "load"]
