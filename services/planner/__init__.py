"""The planner: rendered manifests + the live cluster + the last inventory -> a plan.

- `planning.py` desired, dry-run and live objects -> changes, diffs and prunes (pure)
- `labels.py`   the inventory labels every applied resource carries (pure)
- `desired.py`  a bundle's resource -> what Wake applies: labels, namespace (pure)
- `policy.py`   auto-sync approves, manual asks (pure)
- `loading.py`  bundle -> prepared resources, with discovery (shell, shared with the applier)
- `service.py`  the shell: consume ManifestsRendered, dry-run, append the plan
"""
