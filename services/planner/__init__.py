"""The planner: rendered manifests, rollbacks and self-heals + the live cluster -> a plan.

- `planning.py`    desired, dry-run and live objects -> changes, diffs and prunes (pure)
- `policy.py`      auto-sync approves, manual asks, self-heal, the rollback pin, blocked (pure)
- `superseding.py` which plans awaiting approval a new plan supersedes (pure)
- `tracking.py`    what the planner knows of an app, folded from the log; per-app order (pure)
- `service.py`     the shell: consume ManifestsRendered, RollbackRequested, DriftDetected

Differences, labels, desired objects, ownership, namespaces and loading are in
services/resources/, shared with the applier.
"""
