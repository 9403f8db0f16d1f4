"""The console under load: 1000 apps and 100k events.

    python bench/console.py [--apps 1000] [--events 100000] [--samples 200]

Starts a Wake of its own (`start_wake`, as `wake up` does: embedded NATS and
PostgreSQL, the projector and the api as separate processes) in a temporary
directory, appends a random but valid history of `--apps` apps with about
`--events` events (tests/projector/synthetic.py, signed by the admin), waits for
the projector to fold it, then measures:

1. the app list API (`GET /api/v1/apps`, bearer token, all apps in one answer):
   p50 and p95 over `--samples` sequential requests;
2. the UI's app list page in Debian's Chromium through Playwright: from
   navigation start to interactive (the page's script has run:
   `html[data-ready]`, every row present), p50 over 15 loads, with the
   browser's own `domInteractive`;
3. an SSE client of `/api/v1/events/stream`: from the start of an append to the
   event read off the stream, p50 and p95 over 100 appends.

Targets (issue 13): app list API <= 50 ms p50, the page interactive <= 1 s,
append-to-seen <= 100 ms p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from events import names, new_event
from events.payloads import SyncRequested, TokenCreated
from services.api import access
from services.wiring.credentials import load_connect_kwargs
from services.wiring.eventlog import EventLog
from services.wiring.signing import sign_as_admin
from services.wiring.supervision import start_wake
from tests.api import chromium
from tests.projector.synthetic import random_history

BATCH = 500


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def history_events(apps: int, events: int) -> list:
    """A history of `apps` apps (each registered) with about `events` events."""
    journeys = max(1, (events - apps) // 7)
    history = random_history(13, apps=apps, journeys=journeys)
    return history.events


async def caught_up(database_url: str, seq: int, timeout: float = 600) -> float:
    import asyncpg

    started = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        while True:
            position = await conn.fetchval(
                "SELECT last_seq FROM wake.projection_position WHERE projection = 'read_models'"
            )
            if position is not None and position >= seq:
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"projector at {position}, not {seq}, after {timeout} s")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def bench_app_list(url: str, token: str, samples: int, apps: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    timings = []
    async with aiohttp.ClientSession() as http:
        for i in range(samples + 5):
            started = time.perf_counter()
            async with http.get(url + "/api/v1/apps", headers=headers) as response:
                body = await response.read()
            elapsed = time.perf_counter() - started
            assert response.status == 200, body[:200]
            if i == 0:
                assert len(json.loads(body)["items"]) == apps
            if i >= 5:  # warm-up: the pool's connections, the first plans
                timings.append(elapsed * 1000)
    return timings


async def bench_page(url: str, token: str, apps: int, loads: int = 15) -> tuple[list, list]:
    from playwright.async_api import async_playwright

    wall, interactive = [], []
    async with async_playwright() as playwright:
        browser = await chromium.launch(playwright)
        context = await browser.new_context(
            viewport={"width": 1280, "height": 800},
            extra_http_headers={"Authorization": f"Bearer {token}"},
        )
        page = await context.new_page()
        for i in range(loads + 2):
            started = time.perf_counter()
            await page.goto(url + "/", wait_until="commit")
            await page.wait_for_selector("html[data-ready]", state="attached")
            ready = time.perf_counter() - started
            rows = await page.locator("#apps tbody tr").count()
            assert rows == apps, rows
            dom = await page.evaluate(
                "performance.getEntriesByType('navigation')[0].domInteractive"
            )
            if i >= 2:
                wall.append(ready * 1000)
                interactive.append(dom)
        await browser.close()
    return wall, interactive


async def bench_sse(url: str, token: str, log: EventLog, app: str, n: int = 100) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    seen: dict[int, float] = {}
    arrived = asyncio.Event()
    timings = []
    async with aiohttp.ClientSession() as http:
        async with http.get(
            url + "/api/v1/events/stream", headers=headers, params={"app": app}
        ) as response:
            assert response.status == 200

            async def read() -> None:
                async for raw in response.content:
                    line = raw.decode()
                    if line.startswith("id: "):
                        seen[int(line[4:])] = time.perf_counter()
                        arrived.set()

            reading = asyncio.create_task(read())
            await asyncio.sleep(0.5)  # the stream's consumer is in place
            for i in range(n):
                event = new_event(SyncRequested(reason=f"bench {i}"), app=app, actor="admin")
                started = time.perf_counter()
                seq = (await log.append(event)).seq
                while seq not in seen:
                    arrived.clear()
                    if seq not in seen:
                        await asyncio.wait_for(arrived.wait(), timeout=10)
                timings.append((seen[seq] - started) * 1000)
                await asyncio.sleep(0.02)
            reading.cancel()
    return timings


async def run(apps: int, events: int, samples: int) -> None:
    with tempfile.TemporaryDirectory(prefix="wake-bench-console-") as root:
        running = await start_wake(
            Path(root) / "data", services=["projector", "api"], log_dir=Path(root) / "logs"
        )
        try:
            endpoints = running.endpoints
            log = await EventLog.connect(
                endpoints.nats_url,
                name="bench",
                credentials=load_connect_kwargs(endpoints.nats_admin),
            )
            sign_as_admin(log, running.data_dir, endpoints.admin_public_key)
            history = history_events(apps, events)
            started = time.perf_counter()
            for start in range(0, len(history), BATCH):
                await log.append_many(history[start : start + BATCH])
            token = access.new_token()
            created = new_event(
                TokenCreated(name="bench", role="admin", digest=access.digest(token)),
                app=names.SYSTEM_APP,
                actor="admin",
            )
            last = (await log.append(created)).seq
            print(
                f"appended {len(history):,} events of {apps} apps "
                f"in {time.perf_counter() - started:.1f} s"
            )
            folded = await caught_up(endpoints.database_url, last)
            print(f"projector caught up {folded:.1f} s after the last append")
            url = endpoints.api_url
            api = await bench_app_list(url, token, samples, apps)
            print(
                f"GET /api/v1/apps ({apps} apps): p50 {percentile(api, 0.5):.1f} ms, "
                f"p95 {percentile(api, 0.95):.1f} ms over {len(api)} requests (target p50 <= 50 ms)"
            )
            wall, dom = await bench_page(url, token, apps)
            print(
                f"UI app list page interactive: p50 {percentile(wall, 0.5):.0f} ms "
                f"(navigation to script run, {apps} rows; domInteractive p50 "
                f"{statistics.median(dom):.0f} ms) over {len(wall)} loads (target <= 1 s)"
            )
            sse = await bench_sse(url, token, log, "app-0")
            print(
                f"SSE append-to-seen: p50 {percentile(sse, 0.5):.1f} ms, "
                f"p95 {percentile(sse, 0.95):.1f} ms over {len(sse)} appends (target p50 <= 100 ms)"
            )
            print(f"({platform.machine()}, {platform.python_version()}, 2 services running)")
            await log.close()
        finally:
            await running.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.apps, args.events, args.samples))


if __name__ == "__main__":
    main()
