"""The bus refuses what an identity is not entitled to (issue 10, item 1).

A NATS server with the authorization `wake up` generates: one identity per
service, the operator (the CLI) and the admin. Each attack is made on the real
server with the identity's own credentials, and refused by the server -- a
permissions violation reported to the client -- and the log is unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors
import nats.js.errors as js_errors
import pytest
from nats.aio.client import Client

from events import names, new_event
from events.payloads import PlanApproved, RevisionDetected
from services.wiring import infra
from services.wiring.consumers import ConsumerMissing, consume, ensure_consumer
from services.wiring.credentials import BusCredentials, client_tls, load_connect_kwargs
from services.wiring.embedded_nats import EmbeddedNats, start_nats, start_nats_cluster
from services.wiring.eventlog import EventLog, StoredEvent
from services.wiring.signing import KeySigner, Trust
from tests.signing import ADMIN, key_of, register, trusting
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "a" * 40


def detected() -> RevisionDetected:
    return RevisionDetected(
        repo_url="https://git.example/demo.git",
        ref="main",
        commit=COMMIT,
        committed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@dataclass
class SecuredBus:
    server: EmbeddedNats
    credentials: BusCredentials
    admin: EventLog

    async def connect(self, identity: str, errors: list[str] | None = None) -> Client:
        """A raw nats-py client as `identity`, collecting what the server reports."""

        async def record(error: Exception) -> None:
            if errors is not None:
                errors.append(str(error))

        return await nats.connect(
            self.server.url,
            allow_reconnect=False,
            error_cb=record,
            **self.credentials.kwargs(identity),
        )

    async def log(self, identity: str) -> EventLog:
        """The log as `identity` on the bus, signing as it does in production: with one key
        of its own (registered by the admin), its identity the actor of all it appends."""
        kwargs = self.credentials.kwargs(identity)
        log = await EventLog.connect(self.server.url, credentials=kwargs)
        key = key_of("user:me" if identity == "operator" else f"service:{identity}")
        await register(self.admin, key)
        log.trust = Trust(ADMIN.public)
        log.signer = KeySigner(key)
        return log

    async def last_seq(self) -> int:
        return (await self.admin.js.stream_info(names.STREAM)).state.last_seq


@pytest.fixture
async def bus(tmp_path: Path) -> AsyncIterator[SecuredBus]:
    """A NATS server secured as `wake up` secures it, provisioned by the admin."""
    credentials, security = infra.bus_security(tmp_path / "data")
    server = await start_nats(tmp_path / "data", security=security)
    try:
        await infra.provision_log(server.url, connect_kwargs=security.connect_kwargs())
        admin = trusting(
            await EventLog.connect(server.url, credentials=credentials.kwargs("admin"))
        )
        try:
            yield SecuredBus(server=server, credentials=credentials, admin=admin)
        finally:
            await admin.close()
    finally:
        await server.stop()


async def refused(
    bus: SecuredBus, identity: str, subject: str, payload: bytes = b"{}", **headers: str
) -> str:
    """Send `subject` as `identity` and return what the server reported (errors, joined)."""
    errors: list[str] = []
    nc = await bus.connect(identity, errors)
    try:
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.request(subject, payload, timeout=1, headers=headers or None)
        await eventually(lambda: errors, timeout=5, what=f"the server's answer to {subject}")
    finally:
        await nc.close()
    return " | ".join(errors)


def violation(subject: str) -> str:
    # nats-py lowercases the server's -ERR line.
    return f'permissions violation for publish to "{subject.lower()}"'


async def test_an_unauthenticated_connection_is_refused(bus: SecuredBus) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(bus.server.url, allow_reconnect=False, max_reconnect_attempts=0)
    wrong = {**bus.credentials.kwargs("operator"), "password": "guessed"}
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(bus.server.url, allow_reconnect=False, **wrong)


@pytest.mark.parametrize(
    ("identity", "event_type"),
    [
        ("renderer", "PlanApproved"),  # a forged approval
        ("notifier", "ApplicationRegistered"),  # a forged registration
        ("git-watcher", "RollbackRequested"),  # a forged rollback
        ("projector", "ManifestsRendered"),  # a forged render
        ("operator", "ApplySucceeded"),  # a person cannot claim an apply happened
    ],
)
async def test_an_event_type_the_identity_does_not_own_is_refused(
    bus: SecuredBus, identity: str, event_type: str
) -> None:
    before = await bus.last_seq()
    subject = names.subject("demo", event_type)

    errors = await refused(bus, identity, subject, json.dumps({"type": event_type}).encode())

    assert violation(subject) in errors
    assert await bus.last_seq() == before


async def test_the_owner_appends_and_every_identity_reads(bus: SecuredBus) -> None:
    # Given the operator's approval and git-watcher's detection, each with its own identity
    operator = await bus.log("operator")
    watcher = await bus.log("git-watcher")
    try:
        await operator.append(
            new_event(PlanApproved(plan_id="p1", via="cli"), app="demo", actor="user:me")
        )
        await watcher.append(
            new_event(
                detected(),
                app="demo",
                actor="service:git-watcher",
            )
        )
        # Then a service reads the history through its own (named, ephemeral) reader
        read = [s.event.type async for s in watcher.read() if s.event.app != "_wake"]
        assert read == ["PlanApproved", "RevisionDetected"]
        assert (await operator.last_event("demo", "RevisionDetected")) is not None
    finally:
        await operator.close()
        await watcher.close()


async def test_a_bundle_is_written_by_the_renderer_only_and_read_by_planner_and_applier(
    bus: SecuredBus,
) -> None:
    renderer = await bus.log("renderer")
    planner = await bus.log("planner")
    try:
        digest = await renderer.put_bundle(b'{"resources": []}')
        assert await planner.get_bundle(digest) == b'{"resources": []}'
    finally:
        await renderer.close()
        await planner.close()
    # An injected bundle chunk from the planner, and a bundle read by the notifier: refused
    chunk = f"$O.{names.BUNDLES}.C.injected"
    assert violation(chunk) in await refused(bus, "planner", chunk, b"evil")
    get = f"$JS.API.STREAM.MSG.GET.OBJ_{names.BUNDLES}"
    assert violation(get) in await refused(bus, "notifier", get, b'{"seq": 1}')


@pytest.mark.parametrize(
    "subject",
    [
        f"$JS.API.STREAM.DELETE.{names.STREAM}",
        f"$JS.API.STREAM.PURGE.{names.STREAM}",
        f"$JS.API.STREAM.UPDATE.{names.STREAM}",
        f"$JS.API.STREAM.DELETE.OBJ_{names.BUNDLES}",
        f"$JS.API.CONSUMER.DELETE.{names.STREAM}.applier",
        f"$JS.API.CONSUMER.PAUSE.{names.STREAM}.applier",
        # retargeting the applier's durable consumer, by name or through the unnamed form
        f"$JS.API.CONSUMER.CREATE.{names.STREAM}.applier",
        f"$JS.API.CONSUMER.CREATE.{names.STREAM}.applier.wake.evt.*.Nothing",
        f"$JS.API.CONSUMER.CREATE.{names.STREAM}",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{names.STREAM}.applier",
        # stealing the applier's messages: pull and ack its durable consumer
        f"$JS.API.CONSUMER.MSG.NEXT.{names.STREAM}.applier",
        f"$JS.ACK.{names.STREAM}.applier.1.1.1.1.0",
    ],
)
@pytest.mark.parametrize("identity", ["operator", "renderer"])
async def test_only_the_admin_manages_the_stream_and_a_consumer_is_its_services_alone(
    bus: SecuredBus, identity: str, subject: str
) -> None:
    before = await bus.admin.js.consumer_info(names.STREAM, "applier")
    request = {"stream_name": names.STREAM, "config": {"name": "applier", "ack_policy": "explicit"}}

    errors = await refused(bus, identity, subject, json.dumps(request).encode())

    assert violation(subject) in errors
    # and the stream and the applier's consumer are as the admin provisioned them
    stream = await bus.admin.js.stream_info(names.STREAM)
    assert stream.config.deny_delete and stream.config.deny_purge
    after = await bus.admin.js.consumer_info(names.STREAM, "applier")
    assert after.config == before.config
    assert after.num_pending == before.num_pending and after.delivered == before.delivered


async def test_a_service_pulls_and_acks_its_own_consumer_and_does_not_create_one(
    bus: SecuredBus, tmp_path: Path
) -> None:
    from services.renderer.service import CONSUMER

    await bus.admin.append(
        new_event(
            detected(),
            app="demo",
            actor="service:git-watcher",
        )
    )
    renderer = await bus.log("renderer")
    try:
        # ensure_consumer only checks, as the renderer may not create consumers
        assert not renderer.manages
        await ensure_consumer(renderer, CONSUMER)
        # and pulls (in its priority group, as replicas do) and acknowledges
        handled: list[int] = []
        stop = asyncio.Event()

        async def handle(stored: StoredEvent) -> None:
            handled.append(stored.seq)

        pulling = asyncio.create_task(consume(renderer, CONSUMER, handle, stop=stop))

        async def acknowledged() -> bool:
            info = await renderer.js.consumer_info(names.STREAM, "renderer")
            return bool(handled) and info.ack_floor.stream_seq == handled[0]

        try:
            await eventually(acknowledged, what="the renderer's message acknowledged")
        finally:
            stop.set()
            await asyncio.wait_for(pulling, timeout=10)
    finally:
        await renderer.close()


async def test_a_consumer_nobody_provisioned_is_a_loud_refusal(tmp_path: Path) -> None:
    from services.renderer.service import CONSUMER

    # Given a log provisioned without the services' consumers
    credentials, security = infra.bus_security(tmp_path / "data")
    server = await start_nats(tmp_path / "data", security=security)
    try:
        await infra.provision_log(
            server.url, connect_kwargs=security.connect_kwargs(), consumers=False
        )
        renderer = await EventLog.connect(server.url, credentials=credentials.kwargs("renderer"))
        try:
            # Then the renderer does not create its consumer: it refuses, naming the command
            with pytest.raises(ConsumerMissing, match="wake infra provision"):
                await ensure_consumer(renderer, CONSUMER)
        finally:
            await renderer.close()
    finally:
        await server.stop()


async def test_the_admin_provisions_again_idempotently(bus: SecuredBus) -> None:
    await infra.provision_log(bus.server.url, connect_kwargs=bus.credentials.kwargs("admin"))

    consumers = {c.name for c in await bus.admin.js.consumers_info(names.STREAM)}
    assert {"git-watcher-sync", "renderer", "planner", "applier", "notifier"} <= consumers


async def test_a_service_started_without_a_stream_refuses_to_start(tmp_path: Path) -> None:
    # Given a secured server nobody provisioned
    credentials, security = infra.bus_security(tmp_path / "data")
    server = await start_nats(tmp_path / "data", security=security)
    try:
        # When the planner starts with its own identity
        run = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.cli", "run", "planner"],
            cwd=ROOT,
            env={
                **os.environ,
                "WAKE_DATA_DIR": str(tmp_path / "data"),
                "WAKE_NATS_URL": server.url,
                "WAKE_NATS_CREDENTIALS": str(credentials.file("planner")),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        # Then it refuses, naming the provisioning command, and creates nothing
        assert run.returncode != 0
        assert "the stream WAKE_EVENTS does not exist" in run.stderr
        assert "wake infra provision" in run.stderr
        assert "Traceback" not in run.stderr
        nc = await nats.connect(server.url, **credentials.kwargs("admin"))
        try:
            with pytest.raises(js_errors.NotFoundError):
                await nc.jetstream().stream_info(names.STREAM)
        finally:
            await nc.close()
    finally:
        await server.stop()


async def test_credentials_files_are_private_and_the_server_config_too(bus: SecuredBus) -> None:
    directory = bus.credentials.directory
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert bus.server.config_path is not None
    assert stat.S_IMODE(bus.server.config_path.stat().st_mode) == 0o600


def _certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI)."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=wake-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1")  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "san.ext")  # fmt: skip
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


async def test_tls_between_clients_and_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a server started with WAKE_NATS_TLS_CERT / _KEY, clients trusting WAKE_NATS_TLS_CA
    ca, cert, key = _certificate(tmp_path)
    monkeypatch.setenv("WAKE_NATS_TLS_CERT", str(cert))
    monkeypatch.setenv("WAKE_NATS_TLS_KEY", str(key))
    monkeypatch.setenv("WAKE_NATS_TLS_CA", str(ca))
    credentials, security = infra.bus_security(tmp_path / "data")
    server = await start_nats(tmp_path / "data", security=security)
    try:
        await infra.provision_log(server.url, connect_kwargs=security.connect_kwargs())
        # Then the operator connects over TLS and reads the stream
        log = await EventLog.connect(
            server.url, credentials=credentials.kwargs("operator"), tls=client_tls(str(ca))
        )
        try:
            assert log.nc.connected_server_version.major == 2
            assert (await log.js.stream_info(names.STREAM)).config.name == names.STREAM
        finally:
            await log.close()
        # and a client that does not trust the CA is refused at the handshake
        with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            await nats.connect(
                server.url,
                allow_reconnect=False,
                max_reconnect_attempts=0,
                tls=client_tls(str(cert)),
                **credentials.kwargs("operator"),
            )
    finally:
        await server.stop()


async def test_endpoints_name_the_admin_and_operator_and_the_cli_needs_no_flags(
    tmp_path: Path,
) -> None:
    # Given `wake infra up`'s infrastructure on a data dir
    running = await infra.start_infra(tmp_path / "data")
    try:
        endpoints = json.loads((running.data_dir / infra.ENDPOINTS_FILE).read_text())
        # Then nats_url carries no credentials, and nats_admin / nats_operator name 0600 files
        assert "@" not in endpoints["nats_url"]
        for key, identity in (("nats_admin", "admin"), ("nats_operator", "operator")):
            path = Path(endpoints[key])
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            kwargs = json.loads(path.read_text())
            # whose JSON works with nats.connect(nats_url, **kwargs)
            nc = await nats.connect(endpoints["nats_url"], **kwargs)
            try:
                info = await nc.jetstream().stream_info(names.STREAM)
                assert info.config.name == names.STREAM
            finally:
                await nc.close()
            assert load_connect_kwargs(path)["user"] == identity
        # and an unauthenticated client is refused
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(endpoints["nats_url"], allow_reconnect=False)
        # and the CLI, run by the same user without flags, connects as the operator
        env = {k: v for k, v in os.environ.items() if not k.startswith("WAKE_")}
        listed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "services.cli", "app", "list",
             "--data-dir", str(running.data_dir)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listed.returncode == 0, listed.stderr
        assert "no applications registered" in listed.stdout
    finally:
        await running.stop()


async def test_cluster_nodes_route_to_each_other_with_a_password_and_refuse_others(
    tmp_path: Path,
) -> None:
    # Given a three-node cluster secured as `wake up --nats-cluster 3` secures it
    credentials, security = infra.bus_security(tmp_path / "data")
    cluster = await start_nats_cluster(tmp_path / "data", nodes=3, security=security)
    try:
        # Then its nodes routed to each other (the log gets three replicas)
        await infra.provision_log(cluster.url, replicas=3, connect_kwargs=security.connect_kwargs())
        admin = await EventLog.connect(cluster.url, credentials=credentials.kwargs("admin"))
        try:
            info = await admin.js.stream_info(names.STREAM)
            assert info.config.num_replicas == 3 and len(info.cluster.replicas) == 2
        finally:
            await admin.close()
        # and a would-be node without the route password is refused
        config = (cluster.nodes[0].config_path or Path()).read_text()
        route_port = int(config.split("cluster {")[1].split("listen:")[1].split()[0].split(":")[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", route_port)
        try:
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"INFO ")
            writer.write(
                b'CONNECT {"user":"route","pass":"guessed","name":"rogue","cluster":"wake",'
                b'"headers":true}\r\nPING\r\n'
            )
            answer = await asyncio.wait_for(reader.readline(), 5)
            assert b"Authorization Violation" in answer
        finally:
            writer.close()
    finally:
        await cluster.stop()


async def test_wake_infra_provision_takes_the_admins_file_and_refuses_the_operators(
    tmp_path: Path,
) -> None:
    # Given a secured server nobody provisioned
    credentials, security = infra.bus_security(tmp_path / "data")
    server = await start_nats(tmp_path / "data", security=security)
    try:

        def provision(identity: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "services.cli", "infra", "provision",
                 "--nats-url", server.url, "--wait", "0",
                 "--credentials", str(credentials.file(identity))],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip

        # When the operator tries, it is refused, naming why
        run = await asyncio.to_thread(provision, "operator")
        assert run.returncode == 1
        assert "permissions violation" in run.stderr and "only the admin" in run.stderr
        # and the admin provisions the log and the services' consumers
        run = await asyncio.to_thread(provision, "admin")
        assert run.returncode == 0, run.stderr
        nc = await nats.connect(server.url, **credentials.kwargs("admin"))
        try:
            names_ = {c.name for c in await nc.jetstream().consumers_info(names.STREAM)}
            assert {"git-watcher-sync", "renderer", "planner", "applier", "notifier"} <= names_
        finally:
            await nc.close()
    finally:
        await server.stop()
