"""The planner: rendered manifests, rollbacks and self-heals + the live cluster -> a plan.

- `planning.py`    desired, dry-run and live objects -> changes, diffs and prunes (pure)
- `differences.py` what counts as a difference: server-owned fields, ignore rules (pure)
- `labels.py`      the inventory labels every applied resource carries (pure)
- `desired.py`     a bundle's resource -> what Wake applies: labels, namespace (pure)
- `policy.py`      auto-sync approves, manual asks, self-heal, the rollback pin, blocked (pure)
- `ownership.py`   one owner per object: may this app apply over what is live (pure)
- `namespaces.py`  `--create-namespace`: the destination Namespace in the plan (pure)
- `superseding.py` which plans awaiting approval a new plan supersedes (pure)
- `loading.py`     bundle -> prepared resources, with discovery (shell, shared with the applier)
- `service.py`     the shell: consume ManifestsRendered, RollbackRequested, DriftDetected
"""
