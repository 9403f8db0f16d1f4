"""Issue 10 item 4: the log and the bundles cannot be destroyed or read in clear by a client."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import nats.js.errors as js_errors
import pytest

from events import names
from events.bundle import Bundle, encode_bundle
from services.wiring import keys
from services.wiring.embedded_nats import EmbeddedNats
from services.wiring.eventlog import BundleCorrupt, BundleSealed, EventLog, provision
from tests.signing import cli_env
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]

SECRET_VALUE = "correct-horse-battery-staple-42"


def secret_bundle() -> bytes:
    return encode_bundle(
        Bundle(
            app="shop",
            repo_url="https://git.example.com/shop.git",
            commit="a" * 40,
            path="deploy",
            renderer="plain",
            resources=[
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "db", "namespace": "shop"},
                    "stringData": {"password": SECRET_VALUE},
                }
            ],
        )
    )


async def raw_store_bytes(log: EventLog) -> bytes:
    """Every message of the bundle store's stream, as a log reader with no key reads them."""
    info = await log.js.stream_info(names.BUNDLES_STREAM)
    raw = b""
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        message = await log.js.get_msg(names.BUNDLES_STREAM, seq)
        raw += message.data or b""
    return raw


async def test_deleting_or_purging_bundles_is_refused_and_the_bundle_still_reads(
    event_log: EventLog,
) -> None:
    # Given a stored bundle
    data = secret_bundle()
    digest = await event_log.put_bundle(data)

    # When a client purges the store's stream, deletes its messages, or deletes the object
    with pytest.raises(js_errors.APIError, match="purge not permitted"):
        await event_log.js.purge_stream(names.BUNDLES_STREAM)
    with pytest.raises(js_errors.APIError, match="delete not permitted"):
        await event_log.js.delete_msg(names.BUNDLES_STREAM, 1)
    store = await event_log.js.object_store(names.BUNDLES)
    with pytest.raises(js_errors.APIError, match="not permitted"):
        await store.delete(digest)
    # ... or rolls up its meta subject to hide it
    with pytest.raises(js_errors.APIError, match="rollup not permitted"):
        await event_log.js.publish(f"$O.{names.BUNDLES}.M.x", b"{}", headers={"Nats-Rollup": "sub"})

    # Then the bundle is still there, whole
    assert await event_log.get_bundle(digest) == data


async def test_putting_the_same_bundle_twice_keeps_one_copy(event_log: EventLog) -> None:
    data = secret_bundle()
    first = await event_log.put_bundle(data)
    before = (await event_log.js.stream_info(names.BUNDLES_STREAM)).state.messages
    second = await event_log.put_bundle(data)
    after = (await event_log.js.stream_info(names.BUNDLES_STREAM)).state.messages
    assert first == second
    assert after == before
    assert await event_log.get_bundle(second) == data


async def test_a_secret_value_is_not_in_the_raw_store_bytes(
    event_log: EventLog, tmp_path: Path
) -> None:
    # Given the keys `wake up` makes, used by this process
    keyring_path, digest_path = keys.ensure_keys(tmp_path / "data")
    assert keyring_path.stat().st_mode & 0o777 == 0o600
    assert digest_path.stat().st_mode & 0o777 == 0o600
    assert keyring_path.parent.stat().st_mode & 0o777 == 0o700
    event_log.bundle_keys = keys.load_keyring(keyring_path)

    # When a bundle holding a Secret is stored
    data = secret_bundle()
    digest = await event_log.put_bundle(data)

    # Then the store's raw bytes hold neither the value nor its bundle's JSON
    raw = await raw_store_bytes(event_log)
    assert SECRET_VALUE.encode() not in raw
    assert b'"kind":"Secret"' not in raw
    # ... the digest in events is still the sha256 of the plaintext, and it reads back
    assert await event_log.get_bundle(digest) == data

    # A reader without the keyring is told so, naming the key and the setting
    keyless = EventLog(event_log.nc)
    with pytest.raises(BundleSealed, match="WAKE_BUNDLE_KEYRING_FILE"):
        await keyless.get_bundle(digest)


async def test_a_rotated_keyring_still_opens_older_bundles(
    event_log: EventLog, tmp_path: Path
) -> None:
    keyring_path, _ = keys.ensure_keys(tmp_path / "data")
    event_log.bundle_keys = keys.load_keyring(keyring_path)
    old = await event_log.put_bundle(secret_bundle())

    new_id = keys.rotate_bundle_key(keyring_path)
    event_log.bundle_keys = keys.load_keyring(keyring_path)
    newer_data = secret_bundle().replace(b"shop.git", b"shop2.git")
    newer = await event_log.put_bundle(newer_data)

    assert event_log.bundle_keys.current_id == new_id
    assert await event_log.get_bundle(old) == secret_bundle()
    assert await event_log.get_bundle(newer) == newer_data
    # A keyring missing the old key names it
    event_log.bundle_keys = keys.BundleKeyring(
        path=keyring_path, keys=event_log.bundle_keys.keys[1:]
    )
    with pytest.raises(BundleCorrupt, match="is not in"):
        await event_log.get_bundle(old)


async def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    keyring_path, _ = keys.ensure_keys(tmp_path / "data")
    os.chmod(keyring_path, 0o644)
    with pytest.raises(keys.KeyFileError, match="chmod 600"):
        keys.load_keyring(keyring_path)
    os.chmod(keyring_path, 0o600)
    assert keys.load_keyring(keyring_path).keys


def service_env(nats_url: str, data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "WAKE_NATS_URL": nats_url,
        "WAKE_DATA_DIR": str(data_dir),
        "WAKE_READY_FILE": str(data_dir / "renderer.ready"),
        **cli_env(data_dir.parent / "keys", "service:renderer"),
    }


async def test_a_service_without_the_stream_refuses_to_start(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    data_dir = tmp_path / "wake"
    command = [sys.executable, "-m", "services.cli", "run", "renderer"]
    # Given a NATS server whose log was never provisioned (or was deleted)
    # When a service starts
    run = await asyncio.to_thread(
        subprocess.run,
        command,
        env=service_env(nats_server.url, data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it exits non-zero naming the stream and the command, and created nothing
    assert run.returncode != 0
    assert f"the stream {names.STREAM} does not exist" in run.stderr
    assert "wake infra provision" in run.stderr
    log = await EventLog.connect(nats_server.url, name="tests")
    try:
        with pytest.raises(js_errors.NotFoundError):
            await log.js.stream_info(names.STREAM)

        # And once the log is provisioned, the same service starts and serves
        await provision(log.nc)
        info = await log.js.stream_info(names.BUNDLES_STREAM)
        assert info.config.deny_purge and info.config.deny_delete
    finally:
        await log.close()
    process = subprocess.Popen(
        command,
        env=service_env(nats_server.url, data_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ready = data_dir / "renderer.ready"
        await eventually(
            lambda: ready.exists() or process.poll() is not None, what="the renderer ready"
        )
        assert process.poll() is None, f"the renderer exited with {process.returncode}"
    finally:
        process.terminate()
        assert await asyncio.to_thread(process.wait, 20) == 0


def test_wake_infra_rotate_keys_adds_a_key_and_refuses_a_readable_keyring(tmp_path: Path) -> None:
    data_dir = tmp_path / "wake"
    keyring_path, _ = keys.ensure_keys(data_dir)
    command = [sys.executable, "-m", "services.cli", "infra", "rotate-keys", "--data-dir"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    os.chmod(keyring_path, 0o644)
    refused = subprocess.run([*command, str(data_dir)], env=env, capture_output=True, text=True)
    assert refused.returncode == 1
    assert f"chmod 600 {keyring_path}" in refused.stderr
    assert len(keyring_path.read_text().splitlines()) == 1

    os.chmod(keyring_path, 0o600)
    rotated = subprocess.run([*command, str(data_dir)], env=env, capture_output=True, text=True)
    assert rotated.returncode == 0, rotated.stderr
    keyring = keys.load_keyring(keyring_path)
    assert len(keyring.keys) == 2
    assert f"Added bundle key {keyring.current_id}" in rotated.stdout
