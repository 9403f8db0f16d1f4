"""Issue 10 item 8: a digest standing for a Secret value is keyed: not checkable offline."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from events import redaction
from events.bundle import canonical_json, resource_digest
from services.planner.planning import redacted
from services.wiring import keys

ROOT = Path(__file__).resolve().parents[2]
WEAK = "hunter2"


def secret(value: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "stringData": {"password": value},
    }


def digest_in(resource: dict) -> str:
    shown = redacted(resource)["stringData"]["password"]
    assert shown.startswith("<redacted hmac-sha256:"), shown
    return shown.removeprefix("<redacted hmac-sha256:").removesuffix(">")


def digest_in_another_process(key_file: Path | None) -> str:
    """The digest a separate process (a planner, the CLI) shows, with `key_file` installed."""
    code = (
        "from pathlib import Path; from events import redaction; from services.wiring import keys\n"
        + (
            f"redaction.use_digest_key(keys.load_digest_key(Path({str(key_file)!r})))\n"
            if key_file
            else ""
        )
        + f"print(redaction.secret_digest({WEAK!r}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_a_weak_value_cannot_be_confirmed_from_its_digest(tmp_path: Path) -> None:
    _, digest_key = keys.ensure_keys(tmp_path / "data")
    redaction.use_digest_key(keys.load_digest_key(digest_key))

    shown = digest_in(secret(WEAK))

    # The unsalted sha256 prefix a guesser would compute is not what is shown
    assert shown != hashlib.sha256(WEAK.encode()).hexdigest()[:8]
    assert WEAK not in str(redacted(secret(WEAK)))
    # Every process of the install shows the same digest (one key per install) ...
    assert digest_in_another_process(digest_key) == shown
    # ... another install (another key) shows another
    _, other_key = keys.ensure_keys(tmp_path / "other")
    assert digest_in_another_process(other_key) != shown
    # And a changed value still shows as changed
    assert digest_in(secret(WEAK + "!")) != shown


def test_a_secrets_content_digest_in_events_is_keyed_too(tmp_path: Path) -> None:
    _, digest_key = keys.ensure_keys(tmp_path / "data")
    redaction.use_digest_key(keys.load_digest_key(digest_key))
    weak = secret(WEAK)
    # ManifestsRendered names the Secret (shop/db); its digest must not confirm a guess
    assert resource_digest(weak) != hashlib.sha256(canonical_json(weak)).hexdigest()
    assert resource_digest(weak) == resource_digest(secret(WEAK))  # stable in the install
    assert resource_digest(weak) != resource_digest(secret(WEAK + "!"))
    # Other kinds keep their plain content digest
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    assert resource_digest(config) == hashlib.sha256(canonical_json(config)).hexdigest()
