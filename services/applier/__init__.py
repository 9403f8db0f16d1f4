"""The applier: an approved plan -> server-side applies and prunes, in order; then health and drift.

- `ordering.py`     waves, kind order, prune order (pure)
- `admission.py`    may this approval start, resume, wait or be skipped (pure)
- `health.py`       a live object's health, an app's health (pure)
- `drift.py`        has a resource drifted from its dry run, is it news (pure)
- `health_watch.py` watching an apply's health until final (shell)
- `drift_watch.py`  checking live against the last applied bundle on an interval (shell)
- `service.py`      the shell: consume PlanApproved, apply, prune, append the outcome
"""
