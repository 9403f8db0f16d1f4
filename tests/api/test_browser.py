"""The web console in a real browser: Playwright driving Debian's Chromium against a whole
running Wake. One journey, told as Given / When / Then: log in, watch a commit arrive
live, read its plan's diff, approve it (a viewer cannot), see it applied, open its
trace, and travel back in time to the previous revision."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright import async_api as playwright_api

from services.demo.sample import APP_PATH, first_commit, second_commit
from tests.api import chromium
from tests.e2e.harness import WakeUnderTest, running_wake
from tests.waiting import eventually

DOCS = Path(__file__).resolve().parents[2] / "docs"
APP = "web"
# Screenshots for the README are rewritten only when asked (they are committed).
SCREENSHOTS = os.environ.get("WAKE_SCREENSHOTS") == "1"


@dataclass
class Console:
    wake: WakeUnderTest
    url: str
    tokens: dict[str, str]
    browser: object


async def make_token(wake: WakeUnderTest, name: str, role: str, *extra: str) -> str:
    result = await wake.wake("token", "create", name, "--role", role, *extra)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Console]:
    async with running_wake(tmp_path_factory.mktemp("browser")) as wake:
        tokens = {
            "approver": await make_token(wake, "ana", "approver", "--apps", "web*"),
            "viewer": await make_token(wake, "vic", "viewer"),
        }
        async with playwright_api.async_playwright() as playwright:
            browser = await chromium.launch(playwright)
            try:
                yield Console(
                    wake=wake,
                    url=wake.running.endpoints.api_url,
                    tokens=tokens,
                    browser=browser,
                )
            finally:
                await browser.close()


async def logged_in(console: Console, who: str, **options):
    """A new browser context whose user logged in with the `who` token."""
    context = await console.browser.new_context(viewport={"width": 1280, "height": 800}, **options)
    page = await context.new_page()
    await page.goto(console.url + "/")
    assert page.url.startswith(console.url + "/login")
    await page.fill("#token", console.tokens[who])
    await page.press("#token", "Enter")
    await page.wait_for_url(console.url + "/")
    await page.wait_for_selector("html[data-ready]")
    return context, page


async def test_a_commit_from_arrival_to_apply_to_time_travel(console: Console):
    wake = console.wake
    expect = playwright_api.expect
    # Given an approver logged in, watching the (empty) app list
    context, page = await logged_in(console, "approver")
    await expect(page.locator("#live")).to_have_text("live")
    # When an app is registered whose first commit needs approval
    repo = wake.repository(APP)
    first = first_commit(repo, namespace=APP)
    await wake.wake(
        "app", "add", APP, "--repo", repo.url, "--path", APP_PATH, "--namespace", APP,
        "--manual", "--approver", "token:ana",
    )  # fmt: skip
    # Then its row arrives on the list without a reload, awaiting approval
    row = page.locator(f'tr[data-app="{APP}"]')
    await expect(row.locator('[data-sync="AwaitingApproval"]')).to_be_visible(timeout=30_000)
    await expect(row.locator(".pending")).to_have_text("1 to approve")
    if SCREENSHOTS:
        await page.screenshot(path=str(DOCS / "console-apps.png"))

    # When the approver opens the app's plans, then the plan
    await row.locator("a").click()
    await page.click("text=Plans")
    await page.locator("table.plans a").first.click()
    # Then the diff of every resource is side by side: nothing live, the Deployment planned
    await expect(page.locator("#plan-status")).to_have_text("awaiting-approval")
    deployment = page.locator("details.change", has_text="Deployment")
    await expect(deployment.locator("td.add", has_text="kind: Deployment")).to_be_visible()
    plan_url = page.url
    if SCREENSHOTS:
        await page.screenshot(path=str(DOCS / "console-plan.png"), full_page=True)

    # And a viewer sees no Approve button, and the API refuses the viewer's approval
    viewer_context, viewer = await logged_in(console, "viewer")
    await viewer.goto(plan_url)
    await expect(viewer.locator("#plan-status")).to_have_text("awaiting-approval")
    assert await viewer.locator("button.approve").count() == 0
    plan_id = plan_url.rsplit("/", 1)[-1]
    refused = await viewer_context.request.post(
        f"{console.url}/api/v1/plans/{plan_id}/approve",
        headers={"Authorization": f"Bearer {console.tokens['viewer']}"},
        data={},
    )
    assert refused.status == 403
    await viewer_context.close()

    # When the approver approves
    await page.click("button.approve")
    # Then the decision is recorded as the token's, and the apply arrives on the list
    await expect(page.locator(".notice")).to_have_text("approved by token:ana")
    await page.goto(console.url + "/")
    await expect(row.locator('[data-sync="Synced"]')).to_be_visible(timeout=30_000)
    await expect(row.locator(".revision")).to_have_text(first[:12])

    # When the approver opens the trace of that commit
    await page.goto(f"{console.url}/apps/{APP}/traces/{first[:12]}")
    # Then its waterfall shows the spans of every service, each with its attributes
    # (a service sends its finished spans to the span store in batches: reload until
    # the applier's are there too)
    spans = page.locator("#waterfall li.span")

    async def every_service() -> bool:
        await page.reload()
        names = await page.locator("#waterfall .sname").all_inner_texts()
        return {"renderer", "planner", "applier"} <= {n.split(" · ")[0] for n in names}

    await eventually(every_service, timeout=20, what="spans of every service in the trace")
    await spans.first.locator("summary").click()
    await expect(spans.first.locator("table.attrs")).to_be_visible()
    if SCREENSHOTS:
        await page.screenshot(path=str(DOCS / "console-trace.png"), full_page=True)

    # Given a second commit, synced and approved (through the API, as the approver)
    second = second_commit(repo)
    start = await wake.position()
    await wake.wake("sync", APP)
    planned = await wake.next_event(
        APP, "PlanCreated", after=start, where=lambda s: s.event.payload.commit == second
    )
    approved = await context.request.post(
        f"{console.url}/api/v1/plans/{planned.event.payload.plan_id}/approve",
        headers={"Authorization": f"Bearer {console.tokens['approver']}"},
        data={},
    )
    assert approved.status == 202
    await wake.next_event(
        APP, "ApplySucceeded", after=start, where=lambda s: s.event.payload.commit == second
    )
    # When the app page's time slider is moved back with the keyboard
    await page.goto(f"{console.url}/apps/{APP}?min_seq={await wake.position()}")
    await expect(page.locator(".timeline > li.journey")).to_have_count(2)
    slider = page.locator("#when")
    await slider.focus()
    applied = page.locator('#moment dd[data-field="applied"]')
    shown = ""
    for _ in range(4):
        await page.keyboard.press("ArrowLeft")
        # the state at the slider's new moment, once its answer is shown
        index = await slider.input_value()
        await expect(page.locator(f'#moment[data-index="{index}"]')).to_have_count(1)
        shown = await applied.inner_text()
        if shown == first[:12]:
            break
    # Then it shows the previous revision as the one applied at that moment
    assert shown == first[:12]
    await context.close()


async def test_the_admin_link_rolls_back_from_the_timeline_on_a_phone(console: Console):
    """After the journey above (its two applied revisions)."""
    wake = console.wake
    expect = playwright_api.expect
    # Given the one-time admin link `wake up` printed, opened on a phone-sized screen
    context = await console.browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = await context.new_page()
    await page.goto(wake.running.login_url)
    await page.wait_for_url(console.url + "/")
    await expect(page.locator(".who")).to_have_text("token:console (admin)")
    # the app list fits the screen, and its filter hides what does not match
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    await page.fill("#filter", "nothing-like-it")
    await expect(page.locator(f'tr[data-app="{APP}"]')).to_be_hidden()
    await page.fill("#filter", APP[:2])
    await expect(page.locator(f'tr[data-app="{APP}"]')).to_be_visible()
    # When the admin rolls back to the first revision from the app's timeline
    await page.goto(f"{console.url}/apps/{APP}")
    oldest = page.locator(".timeline > li.journey").last
    first = await oldest.get_attribute("data-commit")
    await oldest.locator("summary").click()
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    start = await wake.position()
    await oldest.locator("button", has_text="Roll back to this").click()
    # Then the rollback is requested, as the admin link's session
    requested = await wake.next_event(APP, "RollbackRequested", after=start)
    assert requested.event.actor == "token:console"
    assert requested.event.payload.commit == first
    await context.close()
