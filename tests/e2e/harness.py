"""A running Wake for end-to-end tests, and the Given / When / Then vocabulary over it.

The services run as separate processes under the same supervisor `wake up`
uses; the cluster is the sandbox. Tests talk to Wake the way its users do:
the `wake` CLI as a subprocess, the log, the cluster's API.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from events.names import STREAM
from events.payloads import ResourceRef
from services.demo.sample import SampleRepo
from services.demo.walkthrough import WEBHOOK_SECRET, WebhookReceiver
from services.wiring.credentials import load_connect_kwargs
from services.wiring.eventlog import EventLog, StoredEvent
from services.wiring.kube import Kube
from services.wiring.signing import sign_as_admin
from services.wiring.supervision import RunningWake, start_wake

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def running_wake(
    root: Path,
    *,
    env: dict[str, str] | None = None,
    sandbox_latency_ms: float = 0,
    replicas: int = 1,
    services: list[str] | None = None,
) -> AsyncIterator[WakeUnderTest]:
    """A whole Wake under `root` (services supervised as `wake up` does), with a
    webhook receiver for its notifications; each process's log is printed on teardown."""
    receiver = WebhookReceiver()
    await receiver.start()
    running = await start_wake(
        root / "data",
        sandbox=True,
        sandbox_latency_ms=sandbox_latency_ms,
        log_dir=root / "logs",
        extra_env={
            "WAKE_NOTIFY_URL": receiver.url,
            "WAKE_NOTIFY_SECRET": WEBHOOK_SECRET,
            **(env or {}),
        },
        replicas=replicas,
        services=services,
    )
    log = await EventLog.connect(
        running.endpoints.nats_url,
        name="e2e",
        credentials=load_connect_kwargs(running.endpoints.nats_admin),
    )
    # The test reads as every reader does (trusting this Wake's admin key) and, where it
    # appends, signs as the admin.
    sign_as_admin(log, running.data_dir, running.endpoints.admin_public_key)
    kube = await Kube.connect(kubeconfig=running.kubeconfig)
    wake = WakeUnderTest(running=running, log=log, kube=kube, receiver=receiver, root=root)
    await wake.resume_supervision()
    try:
        yield wake
    finally:
        await wake.pause_supervision()
        await kube.close()
        await log.close()
        await running.stop()
        await receiver.stop()
        print_logs(root / "logs")


def print_logs(logs: Path) -> None:
    """The tail of every process's log (pytest shows it only when a test failed)."""
    for path in sorted(logs.glob("*.log")):
        tail = path.read_text(errors="replace").splitlines()[-40:]
        print(f"--- {path.name} (last {len(tail)} lines)")
        print("\n".join(tail))


@dataclass
class WakeUnderTest:
    running: RunningWake
    log: EventLog
    kube: Kube
    receiver: WebhookReceiver
    root: Path
    _stop: asyncio.Event | None = None
    _supervising: asyncio.Task | None = None

    async def pause_supervision(self) -> None:
        """Stop restarting what dies (to keep a server down for a while)."""
        if self._stop is not None and self._supervising is not None:
            self._stop.set()
            await self._supervising
        self._stop = self._supervising = None

    async def resume_supervision(self) -> None:
        """Restart what died, and keep doing so (as `wake up` does)."""
        await self.pause_supervision()
        self._stop = asyncio.Event()
        self._supervising = asyncio.create_task(self.running.supervise(self._stop))

    # --- given / when -----------------------------------------------------------

    def repository(self, name: str) -> SampleRepo:
        return SampleRepo.create(self.root / "repos" / name)

    async def person_key(self, identity: str) -> Path:
        """The key file `identity` signs with, registered by the admin on first use."""
        path = self.root / "person-keys" / f"{identity.replace(':', '-')}.key"
        if not path.exists():
            path.parent.mkdir(mode=0o700, exist_ok=True)
            await self.wake("key", "add", identity, "--out", str(path))
        return path

    async def wake(
        self,
        *args: str,
        check: bool = True,
        actor: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run the `wake` CLI against this Wake, as a user would (`env`: more variables).

        `actor`: a person other than the one who started Wake (`user:ana`), who
        signs with a key of their own, made and registered with `wake key add`
        the first time they act (the approver of a plan is its signer).
        """
        env = {**os.environ, "WAKE_DATA_DIR": str(self.running.data_dir), **(env or {})}
        if actor is not None:
            env["WAKE_SIGNING_KEY"] = str(await self.person_key(actor))
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.cli", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"wake {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    async def position(self) -> int:
        return (await self.log.js.stream_info(STREAM)).state.last_seq

    # --- then ---------------------------------------------------------------------

    async def next_event(
        self,
        app: str,
        event_type: str,
        *,
        after: int,
        where: Callable[[StoredEvent], bool] = lambda stored: True,
        timeout: float = 60.0,
    ) -> StoredEvent:
        """The first `event_type` of `app` after sequence `after` that satisfies `where`."""
        try:
            async with asyncio.timeout(timeout):
                async for stored in self.log.read(
                    subjects=[f"wake.evt.{app}.{event_type}"], from_seq=after + 1, follow=True
                ):
                    if where(stored):
                        return stored
        except TimeoutError:
            raise AssertionError(
                f"no {event_type} for {app} after seq {after} within {timeout}s"
            ) from None
        raise AssertionError("the log ended")

    async def events(self, app: str, *, after: int = 0) -> list[StoredEvent]:
        return [s async for s in self.log.read(subjects=[f"wake.evt.{app}.>"], from_seq=after + 1)]

    async def cluster_object(
        self, api_version: str, kind: str, name: str, namespace: str = ""
    ) -> dict | None:
        ref = ResourceRef(api_version=api_version, kind=kind, name=name, namespace=namespace)
        return await self.kube.get(ref)

    async def consumer_has_handled(self, consumer: str, seq: int, timeout: float = 30.0) -> None:
        """Wait until durable `consumer` has acknowledged every message of its filter up to `seq`.

        `seq` is already in the stream, so once nothing of the consumer's filter
        is pending or unacknowledged, everything up to `seq` has been handled.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    info = await self.log.js.consumer_info(STREAM, consumer)
                    if info.num_pending == 0 and info.num_ack_pending == 0:
                        return
                    await asyncio.sleep(0.05)
        except TimeoutError:
            raise AssertionError(f"{consumer} has not handled seq {seq} in {timeout}s") from None
