"""The applier: an approved plan -> server-side applies and prunes, in order.

- `ordering.py`  waves, kind order, prune order (pure)
- `admission.py` may this approval start, resume, wait or be skipped (pure)
- `service.py`   the shell: consume PlanApproved, apply, prune, append the outcome
"""
