"""`Sandbox`: start and stop the Kubernetes API emulator, and reach into it from tests.

Typical use in a test:

    async with Sandbox(latency_ms=15) as sandbox:
        sandbox.write_kubeconfig(path)  # then kubernetes_asyncio or kubectl
        sandbox.set_status("apps/v1", "Deployment", "web", {...}, namespace="demo")
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from services.sandbox import errors
from services.sandbox.discovery import GIT_VERSION, Catalogue, ResourceType
from services.sandbox.faults import Faults
from services.sandbox.persistence import StateFile
from services.sandbox.selectors import FieldSelector, LabelSelector
from services.sandbox.server import BODY_TIMEOUT, HEADER_TIMEOUT, SandboxServer
from services.sandbox.store import ObjectStore

log = logging.getLogger(__name__)

CONTEXT_NAME = "wake-sandbox"
# Any bearer token is accepted; this one only makes clients send an Authorization header.
DUMMY_TOKEN = "wake-sandbox-emulator-token"


class Sandbox:
    """A Kubernetes API emulator over plain HTTP, labelled as one wherever it shows itself."""

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        ready_workloads: bool = False,
        state_file: Path | None = None,
        header_timeout: float = HEADER_TIMEOUT,
        body_timeout: float = BODY_TIMEOUT,
    ) -> None:
        """`state_file`: keep the objects there across restarts (default: memory only).

        `header_timeout`: seconds a client has from connecting to send a whole
        request head (and an idle connection stays open); `body_timeout`: for
        the body after it (408).
        """
        self.catalogue = Catalogue()
        self.store = ObjectStore(self.catalogue, ready_workloads=ready_workloads)
        self._state = StateFile(state_file, self.store) if state_file is not None else None
        self._server = SandboxServer(self.store, latency_ms=latency_ms, body_timeout=body_timeout)
        self._header_timeout = header_timeout
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def latency_ms(self) -> float:
        return self._server.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self._server.latency_ms = value

    @property
    def faults(self) -> Faults:
        """Test-only fault injection: writes to refuse although their dry run passes."""
        return self._server.faults

    def record_requests(self) -> list[tuple[str, str]]:
        """Test-only: from now on, each request's (method, path) goes in the list returned."""
        self._server.requests = []
        return self._server.requests

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the sandbox is not started")
        return self._url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on `host:port` (0: a free port); returns the URL."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already started")
        if self._state is not None:
            if self._state.load():
                log.info("sandbox objects restored from %s", self._state.path)
            self._state.attach()
        self.store.open_watches()
        # handler_cancellation: a watch whose client hung up is cancelled at
        # once instead of lingering until its next write fails.
        runner = web.AppRunner(
            self._server.make_app(),
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=1.0,
            keepalive_timeout=self._header_timeout,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1] if runner.addresses else port
        self._server.address = f"{host}:{bound_port}"
        self._url = f"http://{host}:{bound_port}"
        log.info(
            "Wake sandbox (Kubernetes API emulator, %s) listening on %s", GIT_VERSION, self._url
        )
        return self._url

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._server.end_watches()
        await self._runner.cleanup()
        if self._state is not None:
            self._state.flush()
        self._runner = None
        self._url = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def kubeconfig(self, *, namespace: str = "default") -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [
                {
                    "name": CONTEXT_NAME,
                    "cluster": {
                        "server": self.url,
                        "extensions": [
                            {
                                "name": "wake-sandbox",
                                "extension": {
                                    "description": "Wake sandbox (Kubernetes API emulator)"
                                },
                            }
                        ],
                    },
                }
            ],
            "users": [{"name": CONTEXT_NAME, "user": {"token": DUMMY_TOKEN}}],
            "contexts": [
                {
                    "name": CONTEXT_NAME,
                    "context": {
                        "cluster": CONTEXT_NAME,
                        "user": CONTEXT_NAME,
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": CONTEXT_NAME,
        }

    def write_kubeconfig(self, path: str | Path, *, namespace: str = "default") -> Path:
        """Write a kubeconfig whose current context `wake-sandbox` points here."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(
            "# Wake sandbox: a Kubernetes API emulator, not a real cluster.\n"
            + yaml.safe_dump(self.kubeconfig(namespace=namespace), sort_keys=False)
        )
        target.chmod(0o600)
        return target

    def resource_type(self, api_version: str, kind: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        for t in self.catalogue.all():
            if t.group == group and t.version == version and t.kind == kind:
                return t
        raise LookupError(f"the sandbox does not serve {kind} in {api_version}")

    def get(
        self, api_version: str, kind: str, name: str, *, namespace: str = ""
    ) -> dict[str, Any] | None:
        """The stored object, or None."""
        return self.store.find(self.resource_type(api_version, kind), namespace, name)

    def objects(
        self, api_version: str, kind: str, *, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """The stored objects of a kind (in `namespace`, or all), sorted by namespace and name."""
        t = self.resource_type(api_version, kind)
        listed = self.store.list(t, namespace, labels=LabelSelector(), fields=FieldSelector())
        return listed.items

    def set_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        status: dict[str, Any],
        *,
        namespace: str = "",
    ) -> dict[str, Any]:
        """Replace an object's `.status` (as a controller would) and return the object.

        Bumps resourceVersion and notifies watches; raises LookupError for an
        unknown kind and KeyError for a missing object.
        """
        t = self.resource_type(api_version, kind)
        try:
            return self.store.set_status(t, namespace, name, status)
        except errors.ApiError as exc:
            raise KeyError(exc.message) from exc
