"""The pure ordering of a sync: waves from Argo CD's and Helm's annotations, hooks, phases."""

from __future__ import annotations

from typing import Any

import pytest

from events.payloads import ResourceRef
from services.resources.ordering import InvalidWave, wave_of
from services.resources.phases import (
    BEFORE_HOOK_CREATION,
    HOOK_FAILED,
    HOOK_SUCCEEDED,
    InvalidHook,
    Placement,
    deletes_after,
    hook_status,
    is_ordinary,
    placement_of,
    schedule,
)

JOB = ResourceRef(api_version="batch/v1", kind="Job", namespace="shop", name="migrate")
POD = ResourceRef(api_version="v1", kind="Pod", namespace="shop", name="smoke")
CONFIG = ResourceRef(api_version="v1", kind="ConfigMap", namespace="shop", name="config")


def annotated(**annotations: str) -> dict[str, Any]:
    return {"metadata": {"annotations": annotations}}


def test_a_wave_comes_from_wake_then_argo_cd_then_helm() -> None:
    assert wave_of(annotated(**{"argocd.argoproj.io/sync-wave": "3"}), CONFIG) == 3
    assert wave_of(annotated(**{"helm.sh/hook-weight": "-5"}), CONFIG) == -5
    both = {"argocd.argoproj.io/sync-wave": "3", "helm.sh/hook-weight": "7"}
    assert wave_of(annotated(**both), CONFIG) == 3
    # wake.dev/wave wins over Argo CD's: a Wake user's override of a shared repository.
    assert wave_of(annotated(**both, **{"wake.dev/wave": "-1"}), CONFIG) == -1


def test_a_bad_argo_cd_wave_names_its_annotation() -> None:
    with pytest.raises(InvalidWave) as caught:
        wave_of(annotated(**{"argocd.argoproj.io/sync-wave": "first"}), CONFIG)
    assert "argocd.argoproj.io/sync-wave" in str(caught.value)
    assert "ConfigMap" in str(caught.value)


def test_an_ordinary_resource_runs_in_sync() -> None:
    placement = placement_of({"metadata": {}}, CONFIG)
    assert placement == Placement(phases=("Sync",))
    assert placement.label == ""
    assert is_ordinary({"metadata": {}}, CONFIG)


def test_argo_cd_hooks_and_their_delete_policies() -> None:
    hook = annotated(
        **{
            "argocd.argoproj.io/hook": "PreSync, PostSync",
            "argocd.argoproj.io/hook-delete-policy": "HookSucceeded,HookFailed",
        }
    )
    placement = placement_of(hook, JOB)
    assert placement.phases == ("PreSync", "PostSync")
    assert placement.hook
    assert placement.label == "PreSync,PostSync"
    assert placement.delete_policies == {HOOK_SUCCEEDED, HOOK_FAILED}
    assert not is_ordinary(hook, JOB)


def test_the_default_delete_policy_is_before_hook_creation() -> None:
    placement = placement_of(annotated(**{"argocd.argoproj.io/hook": "Sync"}), JOB)
    assert placement.delete_policies == {BEFORE_HOOK_CREATION}


def test_skip_is_not_applied() -> None:
    placement = placement_of(annotated(**{"argocd.argoproj.io/hook": "Skip"}), CONFIG)
    assert not placement.applied
    assert placement.label == "Skip"
    assert not is_ordinary(annotated(**{"argocd.argoproj.io/hook": "Skip"}), CONFIG)


def test_a_misspelt_argo_cd_hook_is_an_error_naming_the_resource() -> None:
    with pytest.raises(InvalidHook) as caught:
        placement_of(annotated(**{"argocd.argoproj.io/hook": "PreSnyc"}), JOB)
    assert "PreSnyc" in str(caught.value) and "migrate" in str(caught.value)
    with pytest.raises(InvalidHook):
        placement_of(
            annotated(
                **{
                    "argocd.argoproj.io/hook": "PreSync",
                    "argocd.argoproj.io/hook-delete-policy": "Never",
                }
            ),
            JOB,
        )


def test_helm_hooks_map_as_argo_cd_maps_them() -> None:
    pre = annotated(
        **{
            "helm.sh/hook": "pre-install,pre-upgrade",
            "helm.sh/hook-weight": "2",
            "helm.sh/hook-delete-policy": "hook-succeeded",
        }
    )
    placement = placement_of(pre, JOB)
    assert placement.phases == ("PreSync",)
    assert placement.wave == 2
    assert placement.delete_policies == {HOOK_SUCCEEDED}
    assert placement_of(annotated(**{"helm.sh/hook": "post-upgrade"}), JOB).phases == ("PostSync",)
    # An Argo CD hook annotation wins over Helm's.
    both = {"helm.sh/hook": "pre-install", "argocd.argoproj.io/hook": "PostSync"}
    assert placement_of(annotated(**both), JOB).phases == ("PostSync",)


def test_helm_hooks_argo_cd_does_not_run_are_not_applied() -> None:
    for value in ("pre-delete", "test", "Sync", "post-insntall"):
        placement = placement_of(annotated(**{"helm.sh/hook": value}), JOB)
        assert not placement.applied, value
        assert value in placement.skipped
    # Helm 2 marked CRDs with crd-install: they are ordinary resources.
    assert placement_of(annotated(**{"helm.sh/hook": "crd-install"}), JOB).phases == ("Sync",)


def test_a_schedule_goes_phase_by_phase_and_wave_by_wave() -> None:
    refs = {name: ResourceRef(api_version="v1", kind="ConfigMap", name=name) for name in "abcdefg"}
    sync = schedule(
        [
            (refs["a"], Placement(phases=("PostSync",), wave=-3, hook=True)),
            (refs["b"], Placement(phases=("Sync",), wave=1)),
            (refs["c"], Placement(phases=("Sync",), wave=0)),
            (refs["d"], Placement(phases=("PreSync",), wave=5, hook=True)),
            (refs["e"], Placement(phases=("Sync",), wave=1, hook=True)),
            (refs["f"], Placement(phases=("SyncFail",), hook=True)),
            (refs["g"], Placement(phases=(), skipped="Skip")),
        ]
    )
    assert [(s.phase, s.wave, s.resources, s.hooks) for s in sync.steps] == [
        ("PreSync", 5, (), (refs["d"],)),
        ("Sync", 0, (refs["c"],), ()),
        ("Sync", 1, (refs["b"],), (refs["e"],)),
        ("PostSync", -3, (), (refs["a"],)),
    ]
    assert [(s.phase, s.hooks) for s in sync.on_failure] == [("SyncFail", (refs["f"],))]
    assert sync.skipped == (refs["g"],)
    assert [sync.waits_for_health(i) for i in range(4)] == [True, True, True, False]


def test_a_hook_is_done_when_its_job_or_pod_succeeded() -> None:
    def job(**condition: str) -> dict[str, Any]:
        return {"status": {"conditions": [{**condition, "status": "True"}]}}

    assert hook_status(JOB, {"status": {}})[0] == "Running"
    assert hook_status(JOB, job(type="Complete"))[0] == "Succeeded"
    assert hook_status(JOB, job(type="Failed", message="BackoffLimitExceeded")) == (
        "Failed",
        "BackoffLimitExceeded",
    )
    assert hook_status(POD, {"status": {"phase": "Running"}})[0] == "Running"
    assert hook_status(POD, {"status": {"phase": "Succeeded"}})[0] == "Succeeded"
    assert hook_status(POD, {"status": {"phase": "Failed"}})[0] == "Failed"
    assert hook_status(CONFIG, {"data": {}})[0] == "Succeeded"
    assert hook_status(JOB, None)[0] == "Failed"
    # A custom kind no rule judges is done once it exists (Argo CD's way), while
    # one with kstatus conditions is judged by them.
    widget = ResourceRef(api_version="example.com/v1", kind="Widget", namespace="shop", name="w")
    assert hook_status(widget, {"spec": {}})[0] == "Succeeded"
    reconciling = {"status": {"conditions": [{"type": "Reconciling", "status": "True"}]}}
    assert hook_status(widget, reconciling)[0] == "Running"


def test_delete_policies_after_a_hook_finished() -> None:
    assert deletes_after(frozenset({HOOK_SUCCEEDED}), "Succeeded")
    assert not deletes_after(frozenset({HOOK_SUCCEEDED}), "Failed")
    assert deletes_after(frozenset({HOOK_FAILED}), "Failed")
    assert not deletes_after(frozenset({BEFORE_HOOK_CREATION}), "Succeeded")
