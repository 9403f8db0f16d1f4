"""The applier: an approved plan -> server-side applies and prunes, in order; then health and drift.

- `admission.py`    may this approval start, resume, wait or be skipped (pure)
- `drift.py`        has a resource drifted from its dry run, is it news (pure)
- `health_watch.py` watching an apply's health until final (shell)
- `drift_watch.py`  checking live against the last applied bundle on an interval (shell)
- `service.py`      the shell: consume PlanApproved, apply, prune, append the outcome

Ordering, phases and hooks, health and the rest of the resource model are in
services/resources/, shared with the planner.
"""
