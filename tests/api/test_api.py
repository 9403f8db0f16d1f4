"""The console's REST API against a whole running Wake (`wake up`'s processes, the api among
them), over real sockets: tokens, roles, commands as events, the event stream."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from events.payloads import ApprovalAccepted, PlanApproved, TokenCreated
from services.api import openapi
from services.demo.sample import APP_PATH, first_commit, second_commit
from tests.e2e.harness import WakeUnderTest, running_wake
from tests.waiting import eventually

APP = "shop"


@dataclass
class Console:
    wake: WakeUnderTest
    url: str
    tokens: dict[str, str]
    commits: list[str]

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def get(self, path: str, who: str = "viewer", **kwargs) -> aiohttp.ClientResponse:
        async with aiohttp.ClientSession() as http:
            response = await http.get(self.url + path, headers=self.headers(who), **kwargs)
            await response.read()
            return response

    async def post(self, path: str, who: str, body: dict | None = None) -> aiohttp.ClientResponse:
        async with aiohttp.ClientSession() as http:
            response = await http.post(self.url + path, headers=self.headers(who), json=body or {})
            await response.read()
            return response


async def make_token(wake: WakeUnderTest, name: str, role: str, *extra: str) -> str:
    result = await wake.wake("token", "create", name, "--role", role, *extra)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    """One Wake for this module, with a token per role and a manual app `shop` whose
    approver is the token `ana`, at its first commit, awaiting approval."""
    async with running_wake(tmp_path_factory.mktemp("api")) as wake:
        tokens = {
            "admin": await make_token(wake, "boss", "admin"),
            "approver": await make_token(wake, "ana", "approver", "--apps", "shop*"),
            "outsider": await make_token(wake, "olaf", "approver", "--apps", "billing-*"),
            "viewer": await make_token(wake, "vic", "viewer"),
            "revoked": await make_token(wake, "gone", "admin"),
        }
        await wake.wake("token", "revoke", "gone", "--reason", "left")
        repo = wake.repository(APP)
        commit = first_commit(repo, namespace=APP)
        await wake.wake(
            "app", "add", APP, "--repo", repo.url, "--path", APP_PATH, "--namespace", APP,
            "--manual", "--approver", "token:ana",
        )  # fmt: skip
        console = Console(
            wake=wake, url=wake.running.endpoints.api_url, tokens=tokens, commits=[commit]
        )
        yield console


async def awaiting_plan(console: Console, commit: str) -> dict:
    found: dict = {}

    async def planned() -> bool:
        response = await console.get(f"/api/v1/apps/{APP}/plans")
        items = (await response.json())["items"]
        mine = [p for p in items if p["commit"] == commit and p["status"] == "awaiting-approval"]
        if mine:
            found.update(mine[0])
        return bool(mine)

    await eventually(planned, timeout=60, what=f"a plan of {commit[:7]} awaiting approval")
    return found


async def test_a_token_is_printed_once_and_only_its_hash_is_recorded(console: Console):
    token = console.tokens["viewer"]
    assert re.fullmatch(r"wake_[A-Za-z0-9_-]{43}", token)
    created = [
        s
        async for s in console.wake.log.read(subjects=["wake.evt._wake.TokenCreated"])
        if s.event.payload.name == "vic"
    ]
    assert len(created) == 1
    payload = created[0].event.payload
    assert isinstance(payload, TokenCreated) and payload.role == "viewer"
    assert payload.digest == hashlib.sha256(token.encode()).hexdigest()
    assert created[0].event.actor.startswith("user:")
    for stored in [s async for s in console.wake.log.read_raw(subjects=["wake.evt._wake.>"])]:
        assert token.encode() not in stored[2]
    # A second token of a live name is refused; a revoked one's name is free again.
    again = await console.wake.wake("token", "create", "vic", "--role", "admin", check=False)
    assert again.returncode != 0 and "exists" in again.stderr


def _concrete(path: str, plan_id: str) -> str:
    return path.replace("{name}", APP).replace("{plan_id}", plan_id).replace("{ref}", "0000000")


async def test_every_endpoint_refuses_a_missing_wrong_or_revoked_token(console: Console):
    plan_id = "00000000-0000-7000-8000-000000000000"
    wrong = "wake_" + "A" * 43
    refusals = []
    for i, (method, path) in enumerate(openapi.paths()):
        # Each endpoint from an address of its own: the failed-login limit counts per client.
        connector = aiohttp.TCPConnector(local_addr=(f"127.0.1.{i + 1}", 0))
        async with aiohttp.ClientSession(connector=connector) as http:
            for label, headers in (
                ("missing", {}),
                ("wrong", {"Authorization": f"Bearer {wrong}"}),
                ("revoked", {"Authorization": f"Bearer {console.tokens['revoked']}"}),
                ("not bearer", {"Authorization": f"Basic {console.tokens['admin']}"}),
            ):
                async with http.request(
                    method, console.url + _concrete(path, plan_id), headers=headers, json={}
                ) as response:
                    body = await response.json(content_type=None)
                    if response.status != 401 or body.get("status") != 401:
                        refusals.append((method, path, label, response.status))
                    assert response.content_type == "application/problem+json"
    assert refusals == []


async def test_a_role_below_the_one_an_endpoint_needs_is_refused(console: Console):
    plan_id = "00000000-0000-7000-8000-000000000000"
    for path, body in (
        (f"/api/v1/plans/{plan_id}/approve", {}),
        (f"/api/v1/plans/{plan_id}/reject", {"reason": "no"}),
        (f"/api/v1/apps/{APP}/sync", {}),
        (f"/api/v1/apps/{APP}/rollback", {"to": "abc"}),
    ):
        response = await console.post(path, "viewer", body)
        assert response.status == 403, path
    below = await console.post(f"/api/v1/apps/{APP}/rollback", "approver", {"to": "x"})
    assert below.status == 403
    # Adding, changing and removing apps is the admins' alone.
    async with aiohttp.ClientSession() as http:
        for who in ("viewer", "approver"):
            for method, path in (
                ("POST", "/api/v1/apps"),
                ("PATCH", f"/api/v1/apps/{APP}"),
                ("DELETE", f"/api/v1/apps/{APP}"),
            ):
                async with http.request(
                    method, console.url + path, headers=console.headers(who), json={}
                ) as response:
                    assert response.status == 403, (who, method, path)
    # An approver of other apps may not sync this one.
    assert (await console.post(f"/api/v1/apps/{APP}/sync", "outsider")).status == 403


async def test_an_approver_approves_through_the_api_as_its_token(console: Console):
    # Given the app's first plan awaiting approval
    commit = console.commits[0]
    listed = (await (await console.get("/api/v1/apps")).json())["items"]
    shop = next(a for a in listed if a["name"] == APP)
    assert {"name", "sync", "health", "revision", "pending_approvals"} <= set(shop)
    plan = await awaiting_plan(console, commit)
    detail = await (await console.get(f"/api/v1/plans/{plan['plan_id']}")).json()
    assert detail["status"] == "awaiting-approval"
    assert {c["action"] for c in detail["changes"]} == {"create"}
    assert any("kind: Deployment" in c["diff"] for c in detail["changes"])
    # When a viewer tries, and then the approver approves
    start = await console.wake.position()
    refused = await console.post(f"/api/v1/plans/{plan['plan_id']}/approve", "viewer")
    assert refused.status == 403
    approved = await console.post(f"/api/v1/plans/{plan['plan_id']}/approve", "approver")
    assert approved.status == 202, await approved.text()
    # Then the approval's actor is the token, the planner accepts it as an approver's
    stored = await console.wake.next_event(APP, "PlanApproved", after=start)
    assert isinstance(stored.event.payload, PlanApproved)
    assert stored.event.actor == "token:ana" and stored.event.payload.via == "api"
    verdict = await console.wake.next_event(APP, "ApprovalAccepted", after=start)
    assert isinstance(verdict.event.payload, ApprovalAccepted)
    assert verdict.event.payload.approver == "token:ana"
    applied = await console.wake.next_event(APP, "ApplySucceeded", after=start)
    # and the API shows the app at that revision, and the decision on the plan
    app = await (await console.get(f"/api/v1/apps/{APP}?min_seq={applied.seq}")).json()
    assert app["revision"] == commit and app["pending_approvals"] == 0
    assert any(r["kind"] == "Deployment" for r in app["resources"])
    decided = await (await console.get(f"/api/v1/plans/{plan['plan_id']}")).json()
    assert [d["actor"] for d in decided["decisions"]] == ["token:ana"]
    # and the journey, the state at a moment and the trace are there
    history = (await (await console.get(f"/api/v1/apps/{APP}/history")).json())["items"]
    assert history[0]["commit"] == commit and history[0]["apply_id"]
    now = applied.event.occurred_at.isoformat()
    state = await (await console.get(f"/api/v1/apps/{APP}/state", params={"at": now})).json()
    assert state["applied"]["commit"] == commit
    trace = await (await console.get(f"/api/v1/apps/{APP}/traces/{commit[:12]}")).json()
    assert trace["commit"] == commit
    assert [e["type"] for e in trace["events"]][:2] == ["RevisionDetected", "ManifestsRendered"]
    # A plan decided already cannot be decided again: a problem naming why.
    again = await console.post(f"/api/v1/plans/{plan['plan_id']}/reject", "admin", {"reason": "x"})
    assert again.status == 409 and "not awaiting approval" in (await again.json())["detail"]


async def test_events_are_paged_by_sequence_and_streamed_resuming_after_last_event_id(
    console: Console,
):
    page = await (await console.get("/api/v1/events", params={"limit": "3"})).json()
    assert [e["seq"] for e in page["items"]] == sorted(e["seq"] for e in page["items"])
    assert len(page["items"]) == 3 and page["next_after"] == page["items"][-1]["seq"]
    following = await (
        await console.get("/api/v1/events", params={"after": str(page["next_after"]), "limit": "1"})
    ).json()
    assert following["items"][0]["seq"] > page["next_after"]
    # The stream resumes after Last-Event-ID, then shows what is appended from now on.
    last = await console.wake.position()
    async with aiohttp.ClientSession() as http:
        headers = {**console.headers("viewer"), "Last-Event-ID": str(last - 2)}
        async with http.get(
            console.url + "/api/v1/events/stream", headers=headers, params={"app": APP}
        ) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            sync = await console.post(f"/api/v1/apps/{APP}/sync", "approver", {"reason": "t"})
            assert sync.status == 202
            wanted = (await sync.json())["seq"]
            seen: list[dict] = []
            async with asyncio.timeout(20):
                event_id = None
                async for raw in response.content:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("id: "):
                        event_id = int(line[4:])
                    elif line.startswith("data: "):
                        event = json.loads(line[6:])
                        assert event["seq"] == event_id and event["app"] == APP
                        seen.append(event)
                        if event["seq"] == wanted:
                            break
    assert all(e["seq"] > last - 2 for e in seen)
    assert seen[-1]["type"] == "SyncRequested" and seen[-1]["actor"] == "token:ana"


async def test_the_console_reads_as_a_role_that_cannot_write(console: Console):
    import asyncpg

    data = console.wake.running.data_dir
    admin = await asyncpg.connect(console.wake.running.infrastructure.endpoints.database_url)
    try:
        roles = await admin.fetch(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'wake-api'"
        )
    finally:
        await admin.close()
    assert [r["usename"] for r in roles] == ["wake_reader"]
    password = (data / "keys" / "postgres-reader.password").read_text().strip()
    url = console.wake.running.infrastructure.endpoints.database_reader_url
    assert password in url
    reader = await asyncpg.connect(url)
    try:
        assert await reader.fetchval("SELECT count(*) FROM wake.applications") >= 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("DELETE FROM wake.tokens")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await reader.execute("CREATE TABLE wake.mine (x int)")
    finally:
        await reader.close()


async def test_the_openapi_document_and_docs_are_served(console: Console):
    from openapi_spec_validator import validate

    response = await console.get("/api/v1/openapi.json")
    validate(await response.json())
    docs = await console.get("/api/v1/docs")
    assert docs.status == 200 and "/api/v1/apps" in await docs.text()
    # The UI's pages take the bearer header too.
    page = await console.get("/", "viewer")
    assert page.status == 200 and f'data-app="{APP}"' in await page.text()


async def test_a_login_sets_a_strict_http_only_session_whose_writes_need_csrf(console: Console):
    # unsafe: keep cookies of an IP address host, as a browser does
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        form = await http.get(console.url + "/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', await form.text()).group(1)
        response = await http.post(
            console.url + "/login",
            data={"csrf": csrf, "token": console.tokens["approver"], "next": "/"},
            allow_redirects=False,
        )
        assert response.status == 303
        cookie = response.headers.getall("Set-Cookie")
        session = next(c for c in cookie if c.startswith("wake_session="))
        assert "HttpOnly" in session and "SameSite=Strict" in session
        listed = await http.get(console.url + f"/api/v1/apps/{APP}")
        assert listed.status == 200
        # A write through the cookie without the session's CSRF token is refused.
        forged = await http.post(console.url + f"/api/v1/apps/{APP}/sync", json={})
        assert forged.status == 403 and "CSRF" in (await forged.json())["detail"]
        page = await http.get(console.url + "/")
        assert page.status == 200 and f'data-app="{APP}"' in await page.text()


async def test_the_one_time_login_link_works_once(console: Console):
    link = console.wake.running.login_url
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        first = await http.get(link, allow_redirects=False)
        assert first.status == 303
        again = await http.get(link, allow_redirects=False)
        assert again.status == 401
    # recorded, so a restarted api refuses it too
    assert (console.wake.running.data_dir / "run" / "console-login.used").exists()


async def test_failed_logins_are_rate_limited(console: Console):
    wrong = {"Authorization": "Bearer wake_" + "B" * 43}
    connector = aiohttp.TCPConnector(local_addr=("127.0.2.1", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        statuses = []
        for _ in range(12):
            async with http.get(console.url + "/api/v1/apps", headers=wrong) as response:
                statuses.append(response.status)
        # Even the right token is refused from that client while it is limited.
        async with http.get(console.url + "/api/v1/apps", headers=console.headers("admin")) as r:
            limited = r.status
            retry_after = r.headers.get("Retry-After")
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    assert limited == 429 and retry_after is not None
    # Other clients are not affected.
    assert (await console.get("/api/v1/apps", "admin")).status == 200


async def test_a_second_commit_then_rollback_through_the_api(console: Console):
    repo = console.wake.repository(APP)
    start = await console.wake.position()
    commit = second_commit(repo)
    # The approver asks for the check now rather than at the next poll.
    assert (await console.post(f"/api/v1/apps/{APP}/sync", "approver")).status == 202
    plan = await awaiting_plan(console, commit)
    approved = await console.post(f"/api/v1/plans/{plan['plan_id']}/approve", "approver")
    assert approved.status == 202
    await console.wake.next_event(
        APP, "ApplySucceeded", after=start, where=lambda s: s.event.payload.commit == commit
    )
    # An admin rolls back to the first commit: the rollback's actor is the token.
    rollback = await console.post(
        f"/api/v1/apps/{APP}/rollback", "admin", {"to": console.commits[0][:10]}
    )
    assert rollback.status == 202, await rollback.text()
    requested = await console.wake.next_event(APP, "RollbackRequested", after=start)
    assert requested.event.actor == "token:boss"


async def test_an_admin_registers_changes_and_removes_an_app_through_the_api(console: Console):
    repo = console.wake.repository("extra")
    first_commit(repo, namespace="extra")
    spec = {"repo_url": repo.url, "path": APP_PATH, "namespace": "extra", "auto_sync": False}
    body = {"name": "extra", "spec": spec}
    async with aiohttp.ClientSession() as http:

        async def call(method: str, path: str, who: str, **kwargs) -> tuple[int, dict]:
            async with http.request(
                method, console.url + path, headers=console.headers(who), **kwargs
            ) as response:
                return response.status, await response.json(content_type=None)

        assert (await call("POST", "/api/v1/apps", "approver", json=body))[0] == 403
        status, problem = await call(
            "POST", "/api/v1/apps", "admin", json={"name": "extra", "spec": {"path": "x"}}
        )
        assert status == 400 and "repo_url" in problem["detail"]
        status, problem = await call(
            "POST", "/api/v1/apps", "admin",
            json={"name": "extra", "spec": {**spec, "ref": "no-such-branch"}},
        )  # fmt: skip
        assert status == 422 and "no-such-branch" in problem["detail"]
        start = await console.wake.position()
        status, _ = await call("POST", "/api/v1/apps", "admin", json=body)
        assert status == 202
        registered = await console.wake.next_event("extra", "ApplicationRegistered", after=start)
        assert registered.event.actor == "token:boss"
        status, changed = await call("PATCH", "/api/v1/apps/extra", "admin", json={"prune": False})
        assert status == 202 and changed["changed"] == ["prune"]
        status, problem = await call("PATCH", "/api/v1/apps/extra", "admin", json={"nope": 1})
        assert status == 400 and "nope" in problem["detail"]
        status, _ = await call("DELETE", "/api/v1/apps/extra", "admin", params={"reason": "t"})
        assert status == 202
        removed = await console.wake.next_event("extra", "ApplicationRemoved", after=start)
        assert removed.event.actor == "token:boss" and removed.event.payload.reason == "t"
