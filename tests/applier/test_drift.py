"""What counts as drift, and when it is news, with literals."""

from __future__ import annotations

from events.payloads import DriftedResource, IgnoreRule, ResourceRef
from services.applier.drift import drift_set, drifted, is_news

CM = ResourceRef(api_version="v1", kind="ConfigMap", name="c", namespace="shop")


def cm(**data: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "shop", "resourceVersion": "3"},
        "data": data,
    }


def test_a_changed_field_a_deleted_object_and_no_drift() -> None:
    assert drifted(CM, cm(a="1"), cm(a="2")) == DriftedResource(ref=CM, fields=["/data/a"])
    assert drifted(CM, None, None) == DriftedResource(ref=CM, deleted=True)
    assert drifted(CM, cm(a="1"), cm(a="1")) is None
    assert drifted(CM, None, cm(a="1")) is None, "no dry run: only deletion can be told"


def test_ignored_paths_are_never_drift() -> None:
    rules = [IgnoreRule(json_pointers=["/data/a"], kind="ConfigMap")]
    assert drifted(CM, cm(a="1", b="1"), cm(a="2", b="1"), rules) is None


def test_only_a_changed_drift_set_is_news() -> None:
    one = drift_set([None, DriftedResource(ref=CM, fields=["/data/a"])])
    assert is_news(one, [])
    assert not is_news(one, one)
    assert is_news([DriftedResource(ref=CM, deleted=True)], one)
    assert not is_news([], one)
