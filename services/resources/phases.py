"""Sync phases, waves and hooks, as Argo CD runs them (and Helm's hooks as Argo CD maps them). Pure.

A sync runs three phases in order -- PreSync, Sync, PostSync -- and each
phase wave by wave, lowest wave first. What a resource is, its annotations say:

- `argocd.argoproj.io/hook`: a comma list of PreSync, Sync, PostSync,
  SyncFail, Skip. A hook is created afresh each sync in every phase it names
  and waited on until it completes; it is not part of the app's inventory,
  so it is never pruned. `Skip` means the resource is not applied at all.
  PreDelete and PostDelete are hooks of deleting an Argo CD Application;
  Wake has no such operation, so they never run. Any other value is an error
  naming the resource (Argo CD ignores a typo silently; Wake refuses it).
- `helm.sh/hook`, when there is no Argo CD hook: pre-install and pre-upgrade
  run as PreSync, post-install and post-upgrade as PostSync, as Argo CD maps
  them. Helm's other hooks (pre-delete, test, a misspelling, ...) make the
  resource a hook of no phase Wake runs: it is not applied, exactly as Argo
  CD leaves it out (its helm-hooks example relies on this). `crd-install` is
  not a hook (Helm 2 marked CRDs with it).
- Delete policies: `argocd.argoproj.io/hook-delete-policy` (BeforeHookCreation,
  HookSucceeded, HookFailed) and Helm's `helm.sh/hook-delete-policy`
  (before-hook-creation, hook-succeeded, hook-failed) together; none means
  BeforeHookCreation, as in Argo CD and Helm. An unknown policy is an error.
- The wave: see `ordering.wave_of` (`wake.dev/wave`, else
  `argocd.argoproj.io/sync-wave`, else `helm.sh/hook-weight`).

A wave starts only once the previous one is done: its resources healthy and
its hooks complete. SyncFail hooks run, wave by wave, when a sync fails.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from events.payloads import ResourceRef
from services.resources import health
from services.resources.ordering import InvalidWave, wave_of

Resource = dict[str, Any]

HOOK = "argocd.argoproj.io/hook"
HOOK_DELETE_POLICY = "argocd.argoproj.io/hook-delete-policy"
HELM_HOOK = "helm.sh/hook"
HELM_DELETE_POLICY = "helm.sh/hook-delete-policy"

PRE_SYNC, SYNC, POST_SYNC, SYNC_FAIL, SKIP = "PreSync", "Sync", "PostSync", "SyncFail", "Skip"
PHASES: tuple[str, ...] = (PRE_SYNC, SYNC, POST_SYNC)
# Argo CD's hooks of deleting an Application: valid, but never part of a sync.
DELETION_HOOKS = frozenset({"PreDelete", "PostDelete"})
HOOK_TYPES = frozenset({*PHASES, SYNC_FAIL, SKIP, *DELETION_HOOKS})

HELM_PHASES: dict[str, str] = {
    "pre-install": PRE_SYNC,
    "pre-upgrade": PRE_SYNC,
    "post-install": POST_SYNC,
    "post-upgrade": POST_SYNC,
}

BEFORE_HOOK_CREATION, HOOK_SUCCEEDED, HOOK_FAILED = (
    "BeforeHookCreation",
    "HookSucceeded",
    "HookFailed",
)
DELETE_POLICIES = frozenset({BEFORE_HOOK_CREATION, HOOK_SUCCEEDED, HOOK_FAILED})
HELM_DELETE_POLICIES: dict[str, str] = {
    "before-hook-creation": BEFORE_HOOK_CREATION,
    "hook-succeeded": HOOK_SUCCEEDED,
    "hook-failed": HOOK_FAILED,
}


class InvalidHook(ValueError):
    """A hook annotation Wake cannot follow; names the resource, annotation and value."""

    def __init__(self, ref: ResourceRef, annotation: str, value: object, allowed: str) -> None:
        super().__init__(f"{ref}: annotation {annotation}: {value!r} is not one of {allowed}")
        self.ref = ref


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a resource runs in a sync.

    `phases` are those it runs in, in order; empty when it is not applied
    (Skip, or a hook of no phase Wake runs: `skipped` says why). `hook` is
    False for an ordinary resource (phases == ("Sync",)).
    """

    phases: tuple[str, ...]
    wave: int = 0
    hook: bool = False
    delete_policies: frozenset[str] = frozenset({BEFORE_HOOK_CREATION})
    skipped: str = ""

    @property
    def applied(self) -> bool:
        return bool(self.phases)

    @property
    def label(self) -> str:
        """What a plan shows for it: "" for an ordinary resource, else its phases, or Skip."""
        if not self.hook and self.applied:
            return ""
        return ",".join(self.phases) if self.phases else SKIP


def _annotations(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    return (resource.get("metadata") or {}).get("annotations") or {}


def _csv(value: Any) -> list[str]:
    return [part.strip() for part in str(value).split(",") if part.strip()]


def placement_of(resource: Mapping[str, Any], ref: ResourceRef) -> Placement:
    """Where `resource` runs; InvalidHook or InvalidWave for annotations Wake cannot follow."""
    annotations = _annotations(resource)
    wave = wave_of(resource, ref)
    argo = annotations.get(HOOK)
    helm_hook = annotations.get(HELM_HOOK)
    if argo is not None:
        types = _csv(argo)
        for t in types:
            if t not in HOOK_TYPES:
                raise InvalidHook(ref, HOOK, t, ", ".join(sorted(HOOK_TYPES)))
        if SKIP in types:
            return Placement(phases=(), wave=wave, skipped=f"{HOOK}: {SKIP}")
        hook_phases = [t for t in (*PHASES, SYNC_FAIL) if t in types]
        if not hook_phases and helm_hook is None:
            return Placement(
                phases=(), wave=wave, hook=True, skipped=f"{HOOK}: {argo} (Wake runs no such hook)"
            )
    else:
        hook_phases = []
    if not hook_phases and helm_hook is not None:
        values = _csv(helm_hook)
        if values == ["crd-install"]:
            return Placement(phases=(SYNC,), wave=wave)
        hook_phases = [p for p in PHASES if any(HELM_PHASES.get(v) == p for v in values)]
        if not hook_phases:
            return Placement(
                phases=(),
                wave=wave,
                hook=True,
                skipped=f"{HELM_HOOK}: {helm_hook} (no Helm hook Wake runs at a sync)",
            )
    if not hook_phases:
        return Placement(phases=(SYNC,), wave=wave)
    return Placement(
        phases=tuple(hook_phases), wave=wave, hook=True, delete_policies=_policies(annotations, ref)
    )


def _policies(annotations: Mapping[str, Any], ref: ResourceRef) -> frozenset[str]:
    policies: set[str] = set()
    for value in _csv(annotations.get(HOOK_DELETE_POLICY, "")):
        if value not in DELETE_POLICIES:
            raise InvalidHook(ref, HOOK_DELETE_POLICY, value, ", ".join(sorted(DELETE_POLICIES)))
        policies.add(value)
    for value in _csv(annotations.get(HELM_DELETE_POLICY, "")):
        if value not in HELM_DELETE_POLICIES:
            raise InvalidHook(
                ref, HELM_DELETE_POLICY, value, ", ".join(sorted(HELM_DELETE_POLICIES))
            )
        policies.add(HELM_DELETE_POLICIES[value])
    return frozenset(policies or {BEFORE_HOOK_CREATION})


def is_ordinary(resource: Mapping[str, Any], ref: ResourceRef) -> bool:
    """Whether `resource` is applied as part of the app's inventory (not a hook, not skipped).

    A resource whose annotations are invalid counts as ordinary: the plan
    reports the error on it.
    """
    try:
        placement = placement_of(resource, ref)
    except (InvalidHook, InvalidWave):
        return True
    return placement.applied and not placement.hook


K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class Step(Generic[K]):
    """One wave of one phase: its ordinary resources and its hooks."""

    phase: str
    wave: int
    resources: tuple[K, ...] = ()
    hooks: tuple[K, ...] = ()


@dataclass(frozen=True, slots=True)
class Schedule(Generic[K]):
    """The steps of a sync, in order, and the steps to run if it fails."""

    steps: tuple[Step[K], ...]
    on_failure: tuple[Step[K], ...] = ()
    skipped: tuple[K, ...] = field(default=())

    def waits_for_health(self, index: int) -> bool:
        """Whether step `index`'s resources must be healthy before the sync goes on.

        A wave waits for the one before it; the last step has nothing after it
        (the app's health watch judges it), as Argo CD ends a sync there.
        """
        return index < len(self.steps) - 1


def schedule(placements: Iterable[tuple[K, Placement]]) -> Schedule[K]:
    """The steps that run `placements` as Argo CD would: phase by phase, wave by wave.

    Items keep their given order within a step.
    """
    by_step: dict[tuple[str, int], tuple[list[K], list[K]]] = {}
    skipped: list[K] = []
    for key, placement in placements:
        if not placement.applied:
            skipped.append(key)
            continue
        for phase in placement.phases:
            resources, hooks = by_step.setdefault((phase, placement.wave), ([], []))
            (hooks if placement.hook else resources).append(key)

    def steps_of(phases: tuple[str, ...]) -> tuple[Step[K], ...]:
        found = [
            (phases.index(phase), wave, Step(phase, wave, tuple(resources), tuple(hooks)))
            for (phase, wave), (resources, hooks) in by_step.items()
            if phase in phases
        ]
        return tuple(step for _, _, step in sorted(found, key=lambda f: (f[0], f[1])))

    return Schedule(
        steps=steps_of(PHASES), on_failure=steps_of((SYNC_FAIL,)), skipped=tuple(skipped)
    )


HookStatus = Literal["Running", "Succeeded", "Failed"]


def hook_status(ref: ResourceRef, obj: Resource | None) -> tuple[HookStatus, str]:
    """Whether the hook `obj` has completed, as Argo CD judges it.

    A Job by its Complete/Failed conditions, a Pod by its phase, any other
    kind by its health: Healthy (or no rule to judge it by) is done, Degraded is failed.
    """
    if obj is None:
        return "Failed", "deleted before it completed"
    status = obj.get("status") or {}
    if ref.kind == "Pod" and ref.api_version == "v1":
        phase = status.get("phase")
        if phase == "Succeeded":
            return "Succeeded", ""
        if phase == "Failed":
            return "Failed", str(status.get("message") or status.get("reason") or "pod failed")
        return "Running", f"pod {phase or 'Pending'}"
    verdict = health.assess(ref, obj)
    # A kind no health rule judges never becomes Healthy: as Argo CD does, it
    # is done once it exists, instead of holding the phase until the timeout.
    if verdict.status == "Healthy" or health.unjudged(verdict):
        return "Succeeded", ""
    if verdict.status == "Degraded":
        return "Failed", verdict.message
    return "Running", verdict.message


def deletes_after(policies: frozenset[str], status: HookStatus) -> bool:
    """Whether a hook that finished with `status` is deleted now (HookSucceeded / HookFailed)."""
    return (status == "Succeeded" and HOOK_SUCCEEDED in policies) or (
        status == "Failed" and HOOK_FAILED in policies
    )
