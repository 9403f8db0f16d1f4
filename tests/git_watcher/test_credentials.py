"""Private repositories: credentials by name, over real smart HTTP with Basic auth.

No sshd is available without network on the test machine, so SSH keys are
tested up to the callbacks libgit2 would call (what they answer, and when
they refuse), not against a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pygit2
import pytest
from pygit2.enums import CredentialType

from events.envelope import encode
from events.payloads import AppSpec
from services.catalog.lookup import load_registry
from services.git_watcher.polling import Watcher
from services.git_watcher.service import main
from services.wiring.eventlog import EventLog
from services.wiring.git import (
    CredentialError,
    GitCredentials,
    Mirrors,
    RepoUnreachable,
    SshKeyCredential,
    TokenCredential,
    check_reachable,
    remote_callbacks,
)
from services.wiring.runtime import ServiceContext
from services.wiring.settings import Settings
from tests.git_watcher.http_git import PrivateGitServer
from tests.git_watcher.repos import GitRepo, configmap
from tests.git_watcher.test_receiver import free_port, sign
from tests.git_watcher.test_watcher import detections, register
from tests.git_watcher.tls import local_pki
from tests.signing import cli_env
from tests.waiting import eventually

TOKEN = "glpat-very-secret-token"
# Where the test forge serves (HTTPS, any port): the credentials are bound to it.
FORGE = "https://127.0.0.1:*/shop"


def credentials_dir(root: Path, name: str, **files: str) -> Path:
    home = root / name
    home.mkdir(parents=True)
    files = {"urls": FORGE + "\n", **files}
    for file, content in files.items():
        (home / file.replace("_pub", ".pub")).write_text(content)
    return root


@contextlib.asynccontextmanager
async def private_repo(tmp_path: Path) -> AsyncIterator[tuple[GitRepo, PrivateGitServer]]:
    repo = GitRepo(tmp_path / "forge" / "shop")
    repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    async with PrivateGitServer(
        tmp_path / "forge", username="x-access-token", token=TOKEN, tls=True
    ) as server:
        yield repo, server


async def test_a_token_from_a_file_fetches_a_private_repository(tmp_path: Path):
    store = GitCredentials(credentials_dir(tmp_path / "creds", "shop-bot", token=TOKEN + "\n"))
    async with private_repo(tmp_path) as (repo, server):
        url = f"{server.url}/shop"
        with pytest.raises(RepoUnreachable, match="authentication required"):
            await Mirrors(tmp_path / "anonymous").fetch(url)
        mirrors = Mirrors(tmp_path / "mirrors", credentials=store)
        mirror = await mirrors.fetch(url, credential="shop-bot")
        assert mirror.has(repo.head())
        assert (await check_reachable(url, credential=store.get("shop-bot")))[
            "refs/heads/main"
        ] == repo.head()
        assert ("POST", "/shop/git-upload-pack", "x-access-token") in server.requests


async def test_a_refused_token_fails_once_and_says_which_credential(tmp_path: Path):
    creds = credentials_dir(tmp_path / "creds", "shop-bot", token="expired")
    async with private_repo(tmp_path) as (_, server):
        mirrors = Mirrors(tmp_path / "mirrors", credentials=GitCredentials(creds))
        with pytest.raises(RepoUnreachable) as caught:
            await asyncio.wait_for(mirrors.fetch(f"{server.url}/shop", credential="shop-bot"), 30)
    message = str(caught.value)
    assert "git credential 'shop-bot' was refused" in message
    assert "expired" not in message
    # One anonymous probe, one try with the token: no retry loop.
    assert [user for _, _, user in server.requests] == ["", ""]


async def test_a_token_from_the_environment_and_a_custom_user_name(tmp_path: Path):
    environ = {
        "WAKE_GIT_TOKEN_SHOP_BOT": TOKEN,
        "WAKE_GIT_USERNAME_SHOP_BOT": "x-access-token",
        "WAKE_GIT_URLS_SHOP_BOT": FORGE,
    }
    store = GitCredentials("", environ=environ)
    credential = store.get("shop-bot")
    assert credential == TokenCredential(name="shop-bot", username="x-access-token", token=TOKEN)
    assert TOKEN not in repr(credential)
    async with private_repo(tmp_path) as (repo, server):
        mirror = await Mirrors(tmp_path / "m", credentials=store).fetch(
            f"{server.url}/shop", credential="shop-bot"
        )
        assert mirror.has(repo.head())


def test_a_file_wins_over_the_environment_and_unknown_names_are_clear(tmp_path: Path):
    creds = credentials_dir(tmp_path / "creds", "bot", token="from-file", username="deployer")
    store = GitCredentials(creds, environ={"WAKE_GIT_TOKEN_BOT": "from-env"})
    found = store.get("bot")
    assert isinstance(found, TokenCredential)
    assert (found.username, found.token) == ("deployer", "from-file")
    assert store.get("") is None
    with pytest.raises(
        CredentialError, match=r"'nobody' is not configured .*WAKE_GIT_TOKEN_NOBODY"
    ):
        store.get("nobody")
    for bad in ("../etc", "a/b", ".hidden", ""):
        if bad:
            with pytest.raises(CredentialError, match="invalid git credential name"):
                store.get(bad)
    (creds / "empty").mkdir()
    (creds / "empty" / "token").write_text("\n")
    with pytest.raises(CredentialError, match="is empty"):
        store.get("empty")


async def test_a_fetch_naming_an_unknown_credential_fails_clearly(tmp_path: Path):
    repo = GitRepo(tmp_path / "src")
    repo.commit("one", {"a.yaml": configmap("a")})
    with pytest.raises(RepoUnreachable, match="git credential 'ghost' is not configured"):
        await Mirrors(tmp_path / "m").fetch(repo.url, credential="ghost")


def test_a_token_is_never_sent_in_clear_text_to_another_machine():
    callbacks = remote_callbacks(TokenCredential(name="bot", username="u", token=TOKEN))
    assert callbacks is not None
    with pytest.raises(CredentialError, match="use an https:// URL"):
        callbacks.credentials("http://git.example/r.git", None, CredentialType.USERPASS_PLAINTEXT)
    with pytest.raises(CredentialError, match="needs an ssh_key"):
        remote_callbacks(TokenCredential(name="bot", username="u", token=TOKEN)).credentials(
            "ssh://git.example/r.git", "git", CredentialType.SSH_KEY
        )
    answer = remote_callbacks(TokenCredential(name="bot", username="u", token=TOKEN)).credentials(
        "https://git.example/r.git", None, CredentialType.USERPASS_PLAINTEXT
    )
    assert isinstance(answer, pygit2.UserPass)
    assert answer.credential_tuple == ("u", TOKEN)


def test_an_ssh_key_answers_libgit2_with_the_key_and_trusts_its_known_hosts(tmp_path: Path):
    original_home = pygit2.settings.homedir
    key_line = "git.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsa"
    creds = credentials_dir(
        tmp_path / "creds",
        "deploy-key",
        ssh_key="-----BEGIN OPENSSH PRIVATE KEY-----\n(test)\n",
        ssh_key_pub="ssh-ed25519 AAAA test\n",
        passphrase="pass phrase\n",
        known_hosts=key_line + "\n",
    )
    try:
        credential = GitCredentials(creds).get("deploy-key")
        assert isinstance(credential, SshKeyCredential)
        assert credential.public_key == creds / "deploy-key" / "ssh_key.pub"
        assert "pass phrase" not in repr(credential)
        callbacks = remote_callbacks(credential)
        assert callbacks is not None
        # The user name first (not an attempt), then the key pair, then a refusal.
        username = callbacks.credentials("ssh://git.example/r", None, CredentialType.USERNAME)
        assert isinstance(username, pygit2.Username)
        keypair = callbacks.credentials(
            "ssh://deploy@git.example/r", "deploy", CredentialType.SSH_KEY
        )
        assert isinstance(keypair, pygit2.Keypair)
        assert keypair.credential_tuple == (
            "deploy",
            str(creds / "deploy-key" / "ssh_key.pub"),
            str(creds / "deploy-key" / "ssh_key"),
            "pass phrase",
        )
        with pytest.raises(CredentialError, match="'deploy-key' was refused"):
            callbacks.credentials("ssh://git.example/r", "git", CredentialType.SSH_KEY)
        with pytest.raises(CredentialError, match="add it to the credential's known_hosts"):
            callbacks.certificate_check(None, False, b"git.example")
        assert callbacks.certificate_check(None, True, b"git.example") is True
        # libgit2 checks host keys against <home>/.ssh/known_hosts: the key's file is in it.
        home = Path(pygit2.settings.homedir)
        assert key_line in (home / ".ssh" / "known_hosts").read_text()
    finally:
        pygit2.settings.homedir = original_home


async def test_the_watcher_follows_a_private_repository_and_no_token_leaks(
    event_log: EventLog, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    creds = credentials_dir(tmp_path / "creds", "shop-bot", token=TOKEN)
    port = free_port()
    ready = tmp_path / "ready"
    async with private_repo(tmp_path) as (repo, server):
        url = f"{server.url}/shop"
        ctx = ServiceContext(
            name="git-watcher",
            settings=Settings(
                data_dir=str(tmp_path / "wake"),
                poll_interval=3600.0,
                git_credentials_dir=str(creds),
                webhook_port=port,
                webhook_secret="hook",
            ),
            log=event_log,
            ready_file=ready,
        )
        task = asyncio.create_task(main(ctx))
        try:
            await eventually(lambda: ready.exists() or task.done(), what="git-watcher ready")
            await register(
                event_log, "web", AppSpec(repo_url=url, path="deploy", git_credential="shop-bot")
            )

            async def detected(n: int) -> bool:
                return len(await detections(event_log, "web")) == n

            await eventually(lambda: detected(1), what="first detection")
            second = repo.commit("two", {"deploy/cm.yaml": configmap("web", "2")})
            # GitHub names the repository by its SSH address too: it matches the HTTP one.
            body = (
                b'{"ref": "refs/heads/main", "repository": {"ssh_url": "git@'
                + server.url.removeprefix("https://").split(":")[0].encode()
                + b':shop.git"}}'
            )
            headers = {"X-GitHub-Event": "push", **sign("github", body, "hook")}
            async with aiohttp.ClientSession() as session:
                async with session.post(
                    f"http://127.0.0.1:{port}/github", data=body, headers=headers
                ) as r:
                    assert r.status == 202, await r.text()
            await eventually(lambda: detected(2), what="a detection after the webhook")

            # A burst of pushes coalesces: far fewer fetches than pushes.
            def fetches() -> int:
                return sum(
                    1
                    for method, path, user in server.requests
                    if path.endswith("info/refs") and user
                )

            before = fetches()
            third = repo.commit("three", {"deploy/cm.yaml": configmap("web", "3")})
            async with aiohttp.ClientSession() as session:

                async def push() -> int:
                    async with session.post(
                        f"http://127.0.0.1:{port}/github", data=body, headers=headers
                    ) as r:
                        return r.status

                assert await asyncio.gather(*(push() for _ in range(10))) == [202] * 10
            await eventually(lambda: detected(3), what="a detection after the burst")
            assert 1 <= fetches() - before < 5
        finally:
            ctx.stop.set()
            await asyncio.wait_for(task, timeout=10)
    events = await detections(event_log, "web")
    assert [(e.payload.commit, e.payload.trigger) for e in events[1:]] == [
        (second, "webhook"),
        (third, "webhook"),
    ]
    everything = [encode(stored.event) async for stored in event_log.read()]
    assert all(TOKEN.encode() not in data for data in everything)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


async def test_wake_app_add_checks_a_private_repository_with_the_named_credential(
    event_log: EventLog, nats_server, tmp_path: Path
):
    async with private_repo(tmp_path) as (_, server):
        url = f"{server.url}/shop"
        env = {
            **os.environ,
            "WAKE_NATS_URL": nats_server.url,
            "WAKE_DATA_DIR": str(tmp_path / "cli"),
            **cli_env(tmp_path / "keys"),
            "WAKE_GIT_TOKEN_SHOP_BOT": TOKEN,
            "WAKE_GIT_URLS_SHOP_BOT": FORGE,
            # libgit2 (through OpenSSL) trusts the test forge's authority, as a
            # company's own CA is trusted.
            "SSL_CERT_FILE": str(local_pki().ca_file),
        }

        def add(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "services.cli", "app", "add", *args],
                cwd=Path(__file__).resolve().parents[2],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        common = ("web", "--repo", url, "--path", "deploy", "--namespace", "web")
        refused = await asyncio.to_thread(add, *common)
        assert refused.returncode != 0
        assert "authentication required" in refused.stderr
        unknown = await asyncio.to_thread(add, *common, "--git-credential", "other-bot")
        assert unknown.returncode != 0
        assert "git credential 'other-bot' is not configured" in unknown.stderr
        added = await asyncio.to_thread(add, *common, "--git-credential", "shop-bot")
        assert added.returncode == 0, added.stderr
    registered = [s.event async for s in event_log.read(subjects=["wake.evt.web.>"])]
    assert [e.payload.spec.git_credential for e in registered] == ["shop-bot"]
    assert TOKEN not in added.stdout + added.stderr


async def test_a_revoked_credential_is_one_source_failed_until_it_works_again(
    event_log: EventLog, tmp_path: Path
):
    creds = credentials_dir(tmp_path / "creds", "shop-bot", token=TOKEN)
    async with private_repo(tmp_path) as (repo, server):
        # Given an app following the default branch (HEAD, over smart HTTP) of a private repo
        spec = AppSpec(
            repo_url=f"{server.url}/shop", path="deploy", ref="HEAD", git_credential="shop-bot"
        )
        await register(event_log, "web", spec)
        registry, _ = await load_registry(event_log)
        watcher = Watcher(
            log=event_log,
            mirrors=Mirrors(tmp_path / "mirrors", credentials=GitCredentials(creds)),
            actor="service:git-watcher",
        )
        await watcher.check_apps(registry.apps.values(), "poll")
        assert [e.payload.commit for e in await detections(event_log, "web")] == [repo.head()]
        # When the token is revoked, then three polls make one SourceFailed
        (creds / "shop-bot" / "token").write_text("revoked")
        for _ in range(3):
            await watcher.check_apps(registry.apps.values(), "poll")
        failed = [s.event async for s in event_log.read(subjects=["wake.evt.web.SourceFailed"])]
        assert [(e.payload.stage, e.payload.ref) for e in failed] == [("fetch", "HEAD")]
        assert "git credential 'shop-bot' was refused" in failed[0].payload.error
        # When it works again, one SourceRecovered ends it
        (creds / "shop-bot" / "token").write_text(TOKEN)
        for _ in range(2):
            await watcher.check_apps(registry.apps.values(), "poll")
    recovered = [s.event async for s in event_log.read(subjects=["wake.evt.web.SourceRecovered"])]
    assert [e.payload.failed_event_id for e in recovered] == [failed[0].event_id]
    everything = [encode(stored.event) async for stored in event_log.read()]
    assert all(TOKEN.encode() not in data and b"revoked" not in data for data in everything)
