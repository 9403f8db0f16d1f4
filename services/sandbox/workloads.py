"""What the controllers of an idle real cluster would write, for `--ready-workloads` (pure).

No controller runs in the emulator. With ready workloads the store calls
`settle` on every object it is about to store, so that what an app applies
ends the way it ends on a healthy cluster within seconds: a Job has run to
completion, a PersistentVolumeClaim is bound, a Pod runs (or, if it is not
restarted, has succeeded). (Deployments, StatefulSets and
DaemonSets finish their rollouts in store.py's `_complete_rollout`.)

Each rule only writes a status the object does not have yet, so a status a
test wrote (a failed Job, a Lost claim, a Job still running) stays as written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]


def _complete_job(obj: Obj, now: str) -> None:
    """A Job whose pods all succeeded, as the Job controller reports it (batch/v1)."""
    spec = obj.get("spec") or {}
    if obj.get("status") or spec.get("suspend"):
        return  # already has a status (written by a test), or is not meant to run
    completions = spec.get("completions")
    succeeded = completions if isinstance(completions, int) and completions > 0 else 1
    conditions = [
        {
            "type": "SuccessCriteriaMet",
            "status": "True",
            "reason": "CompletionsReached",
            "message": "Reached expected number of succeeded pods",
            "lastProbeTime": now,
            "lastTransitionTime": now,
        },
        {
            "type": "Complete",
            "status": "True",
            "reason": "CompletionsReached",
            "message": "Reached expected number of succeeded pods",
            "lastProbeTime": now,
            "lastTransitionTime": now,
        },
    ]
    obj["status"] = {
        "startTime": now,
        "completionTime": now,
        "succeeded": succeeded,
        "active": 0,
        "ready": 0,
        "terminating": 0,
        "uncountedTerminatedPods": {},
        "conditions": conditions,
    }


def _bind_claim(obj: Obj, now: str) -> None:
    """A claim bound to a volume of the size and access modes it asked for."""
    if (obj.get("status") or {}).get("phase"):
        return
    spec = obj.get("spec") or {}
    status: Obj = {"phase": "Bound"}
    if spec.get("accessModes"):
        status["accessModes"] = list(spec["accessModes"])
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is not None:
        status["capacity"] = {"storage": storage}
    obj["status"] = status


def _run_pod(obj: Obj, now: str) -> None:
    """A pod whose containers started: Running and Ready, or Succeeded if it runs to an end."""
    if (obj.get("status") or {}).get("phase"):
        return
    spec = obj.get("spec") or {}
    names = [c.get("name", "") for c in spec.get("containers") or [] if isinstance(c, dict)]
    finishes = spec.get("restartPolicy") in ("Never", "OnFailure")
    if finishes:
        state: Obj = {"terminated": {"exitCode": 0, "reason": "Completed", "finishedAt": now}}
        ready, why = "False", "PodCompleted"
    else:
        state, ready, why = {"running": {"startedAt": now}}, "True", ""
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": now}
        for kind in ("PodScheduled", "Initialized")
    ] + [
        {
            "type": kind,
            "status": ready,
            "lastTransitionTime": now,
            **({"reason": why} if why else {}),
        }
        for kind in ("ContainersReady", "Ready")
    ]
    obj["status"] = {
        "phase": "Succeeded" if finishes else "Running",
        "startTime": now,
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": name,
                "ready": not finishes,
                "started": not finishes,
                "restartCount": 0,
                "state": state,
            }
            for name in names
        ],
    }


SETTLERS: dict[tuple[str, str], Callable[[Obj, str], None]] = {
    ("batch", "jobs"): _complete_job,
    ("", "persistentvolumeclaims"): _bind_claim,
    ("", "pods"): _run_pod,
}


def settle(storage_key: tuple[str, str], obj: Obj, now: str) -> None:
    """Write into `obj` the status its controller would reach on an idle cluster, if any."""
    rule = SETTLERS.get(storage_key)
    if rule is not None:
        rule(obj, now)
