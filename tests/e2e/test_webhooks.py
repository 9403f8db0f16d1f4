"""A forge's push webhook, end to end: `wake up`'s receiver, signed, moves the app."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import aiohttp

from services.demo.sample import APP_PATH, first_commit, second_commit
from tests.e2e.harness import WakeUnderTest


async def test_a_signed_push_webhook_applies_the_new_commit_and_a_forged_one_is_refused(
    wake: WakeUnderTest,
):
    # Given an applied app and the webhook receiver `wake up` published
    repo = wake.repository("hooked")
    first_commit(repo, namespace="hooked")
    start = await wake.position()
    await wake.wake(
        "app", "add", "hooked", "--repo", repo.url, "--path", APP_PATH, "--namespace", "hooked"
    )
    await wake.next_event("hooked", "ApplySucceeded", after=start)
    endpoints = json.loads((wake.running.data_dir / "endpoints.json").read_text())
    url = f"{endpoints['webhook_url']}/github"
    secret = Path(wake.running.webhook_secret_file).read_bytes().strip()
    second = second_commit(repo)
    body = json.dumps(
        {"ref": "refs/heads/main", "after": "0" * 40, "repository": {"clone_url": repo.url}}
    ).encode()
    headers = {"X-GitHub-Event": "push", "Content-Type": "application/json"}
    before = await wake.position()
    async with aiohttp.ClientSession() as http:
        # When a push is posted with a wrong signature
        forged = {**headers, "X-Hub-Signature-256": "sha256=" + "0" * 64}
        async with http.post(url, data=body, headers=forged) as response:
            # Then it gets a bare 401
            assert response.status == 401
            assert (await response.read()) in (b"", b"401: Unauthorized")
        # When it is signed with the secret
        signature = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        async with http.post(
            url, data=body, headers={**headers, "X-Hub-Signature-256": signature}
        ) as response:
            assert response.status == 202
    # Then the new commit is detected by the webhook and applied
    detected = await wake.next_event("hooked", "RevisionDetected", after=before)
    assert detected.event.payload.trigger == "webhook" and detected.event.payload.commit == second
    await wake.next_event(
        "hooked",
        "ApplySucceeded",
        after=detected.seq,
        where=lambda s: s.event.payload.commit == second,
    )
