"""Objects as diffs show them: the YAML `as_yaml` writes is exactly PyYAML's."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import yaml

from events.payloads import ResourceRef
from services.resources.showing import _pyyaml_lines, as_yaml, unified_diff

ROOT = Path(__file__).resolve().parents[2]

# Scalars chosen to meet each rule PyYAML writes by: plain, quoted (numbers, YAML 1.1
# booleans and nulls, indicators, spaces), unicode, long, multi-line.
WORDS = [
    "a", "name", "app-0421", "nginx:1.27", "80", "yes", "No", "null", "~", "", " x", "x ",
    "a: b", "#c", "-x", "--", "...", "é", "日本", "1.5", "0x1f", "True", "on", "a\nb",
    "line1\nline2\n", "x" * 130, "/path/to", "_u", "a.b-c_d/e", "2024-01-01", "1:20",
    "'q'", '"d"', "@at", "%p", "a b", "{x}", "[y]", "*a", "&b", "!t", "|l", ">f", "?q",
    ",c", "a#b", "a #b", "y", "n", "Y", "e1", "E",
]  # fmt: skip


def _value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.45:
        kind = rng.random()
        if kind < 0.6:
            return rng.choice(WORDS)
        if kind < 0.7:
            return rng.randint(-5, 100_000)
        if kind < 0.75:
            return rng.choice([True, False, None])
        if kind < 0.8:
            return rng.random() * rng.choice([1, 1e20, 1e-9])
        return {} if kind < 0.9 else []
    if roll < 0.75:
        return {rng.choice(WORDS): _value(rng, depth + 1) for _ in range(rng.randint(1, 5))}
    return [_value(rng, depth + 1) for _ in range(rng.randint(1, 4))]


def test_random_objects_are_written_as_pyyaml_writes_them():
    rng = random.Random(20261208)
    for _ in range(3000):
        obj = {rng.choice(WORDS): _value(rng, 0) for _ in range(rng.randint(1, 6))}
        assert as_yaml(obj) == _pyyaml_lines(obj), obj


def test_every_manifest_in_the_tests_and_examples_is_written_as_pyyaml_writes_it():
    checked = 0
    paths = [*ROOT.joinpath("tests").rglob("*.yaml"), *ROOT.joinpath("examples").rglob("*.yaml")]
    for path in sorted(paths):
        try:
            documents = list(yaml.safe_load_all(path.read_text()))
        except yaml.YAMLError:
            continue  # a fixture that is broken on purpose
        for document in documents:
            if isinstance(document, dict) and document:
                assert as_yaml(document) == _pyyaml_lines(document), path
                checked += 1
    assert checked >= 10


def test_a_diff_shows_a_changed_image_and_a_quoted_port_name():
    ref = ResourceRef(api_version="apps/v1", kind="Deployment", namespace="shop", name="web")
    live = {"spec": {"containers": [{"image": "nginx:1.26", "name": "web", "port": "80"}]}}
    desired = {"spec": {"containers": [{"image": "nginx:1.27", "name": "web", "port": "80"}]}}
    assert unified_diff(ref, live, desired).splitlines()[2:] == [
        "@@ -1,5 +1,5 @@",
        " spec:",
        "   containers:",
        "-  - image: nginx:1.26",
        "+  - image: nginx:1.27",
        "     name: web",
        "     port: '80'",
    ]
