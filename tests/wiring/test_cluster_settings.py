"""Settings for a NATS cluster: every node in one URL, the stream's replicas from endpoints.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.wiring.eventlog import nats_servers
from services.wiring.settings import load_settings


def test_a_comma_separated_url_is_every_server_of_the_cluster() -> None:
    url = "nats://a:4222, nats://b:4222,nats://c:4222"
    assert nats_servers(url) == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert nats_servers("nats://a:4222") == ["nats://a:4222"]
    with pytest.raises(ValueError, match="no NATS server"):
        nats_servers(" , ")


def test_stream_replicas_come_from_the_running_cluster_unless_set(tmp_path: Path) -> None:
    (tmp_path / "endpoints.json").write_text(
        json.dumps({"nats_url": "nats://a:1,nats://b:2,nats://c:3", "stream_replicas": 3})
    )
    found = load_settings({"data_dir": str(tmp_path)}, environ={})
    assert found.stream_replicas == 3
    assert found.nats_url == "nats://a:1,nats://b:2,nats://c:3"
    chosen = load_settings({"data_dir": str(tmp_path)}, environ={"WAKE_STREAM_REPLICAS": "1"})
    assert chosen.stream_replicas == 1


def test_without_endpoints_the_stream_has_one_replica(tmp_path: Path) -> None:
    assert load_settings({"data_dir": str(tmp_path)}, environ={}).stream_replicas == 1
