"""A git credential goes only where it is bound, over HTTPS or SSH: never elsewhere.

The attack of issue 10: any app could name any credential and send it to any
host, plain HTTP to loopback included. Against the git-watcher service, real
NATS and real git servers (HTTP and HTTPS, Basic auth): a credential sent to
plain http://, to a URL its binding does not name, or named by an app whose
project does not allow it, is one clear SourceFailed, no request carrying it
ever reaches a server, and the app's next normal source is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from events import names, new_event
from events.envelope import encode
from events.payloads import ApplicationUpdated, AppSpec, ProjectCreated, ProjectSpec
from services.git_watcher.service import main
from services.wiring.eventlog import EventLog
from services.wiring.git import CredentialError, GitCredentials
from services.wiring.runtime import ServiceContext
from services.wiring.settings import Settings
from tests.git_watcher.http_git import PrivateGitServer
from tests.git_watcher.repos import GitRepo, configmap
from tests.git_watcher.test_watcher import detections, register
from tests.waiting import eventually

TOKEN = "glpat-only-for-the-forge"


def bound_credential(root: Path, name: str, *patterns: str) -> Path:
    home = root / name
    home.mkdir(parents=True)
    (home / "token").write_text(TOKEN)
    if patterns:
        (home / "urls").write_text("\n".join(patterns) + "\n")
    return root


async def failures(log: EventLog, app: str) -> list[str]:
    return [
        s.event.payload.error async for s in log.read(subjects=[f"wake.evt.{app}.SourceFailed"])
    ]


@contextlib.asynccontextmanager
async def watching(log: EventLog, tmp_path: Path, creds: Path) -> AsyncIterator[None]:
    ready = tmp_path / "ready"
    ctx = ServiceContext(
        name="git-watcher",
        settings=Settings(
            data_dir=str(tmp_path / "wake"), poll_interval=3600.0, git_credentials_dir=str(creds)
        ),
        log=log,
        ready_file=ready,
    )
    task = asyncio.create_task(main(ctx))
    try:
        await eventually(lambda: ready.exists() or task.done(), what="git-watcher ready")
        yield
    finally:
        ctx.stop.set()
        await asyncio.wait_for(task, timeout=10)


def test_a_credential_goes_only_to_its_urls_over_https_or_ssh(tmp_path: Path) -> None:
    store = GitCredentials(
        bound_credential(tmp_path, "bot", "https://git.example.com/team/*", "git@git.example.com:*")
    )
    assert store.for_url("bot", "https://git.example.com/team/shop.git") is not None
    assert store.for_url("", "http://anywhere/x") is None
    cases = {
        "http://127.0.0.1:8080/team/shop.git": "only over https:// (never plain http://)",
        "http://git.example.com/team/shop.git": "only over https://",
        "https://evil.example.net/team/shop.git": "it is bound to https://git.example.com/team/*",
        "https://git.example.com/other/x.git": "is not sent to https://git.example.com/other/x.git",
    }
    for url, why in cases.items():
        with pytest.raises(CredentialError) as caught:
            store.for_url("bot", url)
        assert why in str(caught.value)
        assert TOKEN not in str(caught.value)
    unbound = GitCredentials(bound_credential(tmp_path / "u", "loose"))
    with pytest.raises(CredentialError, match="bound to no URL, so it is sent nowhere"):
        unbound.for_url("loose", "https://git.example.com/team/shop.git")
    env = GitCredentials(
        "",
        environ={
            "WAKE_GIT_TOKEN_CI": TOKEN,
            "WAKE_GIT_URLS_CI": "https://a.example/*, https://b.example/*",
        },
    )
    assert env.for_url("ci", "https://b.example/r.git") is not None


async def test_a_credential_is_never_sent_elsewhere_and_the_next_normal_source_is_read(
    event_log: EventLog, tmp_path: Path
) -> None:
    repo = GitRepo(tmp_path / "forge" / "shop")
    repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    async with (
        PrivateGitServer(tmp_path / "forge", username="x-access-token", token=TOKEN) as plain,
        PrivateGitServer(
            tmp_path / "forge", username="x-access-token", token=TOKEN, tls=True
        ) as forge,
    ):
        creds = bound_credential(tmp_path / "creds", "shop-bot", f"{forge.url}/shop")
        # A project that allows every source and destination, but not that credential
        await event_log.append(
            new_event(
                ProjectCreated(
                    name="strangers",
                    spec=ProjectSpec(sources=["*"], destinations=["/*"], credentials=["other"]),
                ),
                app=names.SYSTEM_APP,
                actor="user:admin",
            )
        )
        async with watching(event_log, tmp_path, creds):
            # When apps name the credential for plain http:// to loopback, for
            # another repository of the forge, and from a project that does not allow it
            good = AppSpec(repo_url=f"{forge.url}/shop", path="deploy", git_credential="shop-bot")
            specs = {
                "cleartext": AppSpec(
                    repo_url=f"{plain.url}/shop", path="deploy", git_credential="shop-bot"
                ),
                "elsewhere": AppSpec(
                    repo_url=f"{forge.url}/other",
                    path="deploy",
                    git_credential="shop-bot",
                ),
                "stranger": AppSpec(
                    repo_url=good.repo_url,
                    path="deploy",
                    git_credential="shop-bot",
                    project="strangers",
                ),
            }
            for app, spec in specs.items():
                await register(event_log, app, spec)

            async def all_failed() -> bool:
                return all([await failures(event_log, app) for app in specs])

            await eventually(all_failed, what="a SourceFailed for each app")
            # Then each is one clear SourceFailed naming the credential and the rule
            assert (await failures(event_log, "cleartext"))[0].endswith(
                f"git credential 'shop-bot' is an HTTPS token and is not sent to "
                f"{plain.url}/shop: only over https:// (never plain http://)"
            )
            assert "it is bound to " in (await failures(event_log, "elsewhere"))[0]
            assert (await failures(event_log, "stranger")) == [
                "git credential 'shop-bot' is not allowed by project 'strangers' "
                "(credentials: other; `--credential`)"
            ]
            # And no request carrying it reached a server; the plain one saw nothing at all
            assert plain.requests == []
            assert [user for _, _, user in forge.requests if user] == []
            # When the app is pointed at the forge the credential is bound to
            await event_log.append(
                new_event(
                    ApplicationUpdated(spec=good, changed=["repo_url"]),
                    app="cleartext",
                    actor="user:test",
                )
            )

            # Then its source is read again: a detection and the failure's end
            async def detected() -> bool:
                return len(await detections(event_log, "cleartext")) == 1

            await eventually(detected, what="the normal source detected")
            recovered = [
                s async for s in event_log.read(subjects=["wake.evt.cleartext.SourceRecovered"])
            ]
            assert len(recovered) == 1
            assert plain.requests == []
            assert [user for _, _, user in forge.requests if user]
    everything = [encode(stored.event) async for stored in event_log.read()]
    assert all(TOKEN.encode() not in data for data in everything)


async def test_the_renderer_fetches_nothing_outside_the_apps_project(
    event_log: EventLog, tmp_path: Path
) -> None:
    """A revision detected before its project forbade the source is a RenderFailed, unfetched."""
    from tests.renderer.test_renderer import detect, outcome_of, register, running

    repo = GitRepo(tmp_path / "shop")
    commit = repo.commit("one", {"deploy/cm.yaml": configmap("web")})
    await event_log.append(
        new_event(
            ProjectCreated(
                name="elsewhere",
                spec=ProjectSpec(sources=["https://git.example.com/*"], destinations=["/*"]),
            ),
            app=names.SYSTEM_APP,
            actor="user:admin",
        )
    )
    await register(event_log, AppSpec(repo_url=repo.url, path="deploy", project="elsewhere"))
    await register(event_log, AppSpec(repo_url=repo.url, path="deploy"), app="fine")
    from services.renderer.service import main as renderer_main

    mirrors = tmp_path / "wake" / "renderer" / "mirrors"
    async with running(event_log, tmp_path / "wake", "renderer", renderer_main):
        refused = await outcome_of(event_log, await detect(event_log, repo, commit))
        # Nothing was fetched for it: no mirror exists yet
        assert not mirrors.exists() or not list(mirrors.iterdir())
        # and the next, allowed, app renders as usual
        rendered = await outcome_of(event_log, await detect(event_log, repo, commit, app="fine"))
    assert refused.type == "RenderFailed"
    assert refused.payload.error == (
        f"repository {repo.url} is outside project 'elsewhere': no source pattern matches it "
        "(sources: https://git.example.com/*; `--source`)"
    )
    assert rendered.type == "ManifestsRendered"
    assert len(list(mirrors.iterdir())) == 1
