"""The resource model the planner and the applier share; neither imports the other.

- `desired.py`     a bundle's resource -> what Wake applies: labels, namespace (pure)
- `labels.py`      the inventory labels every applied resource carries (pure)
- `ordering.py`    waves, kind order, prune order (pure)
- `phases.py`      sync phases, hooks and their delete policies (pure)
- `health.py`      a live object's health, an app's health (pure)
- `differences.py` what counts as a difference: server-owned fields, ignore rules (pure)
- `identity.py`    which object a ref names, a live object's wave, what blocks a plan (pure)
- `showing.py`     resources as diff text, Secret values redacted (pure)
- `ownership.py`   one owner per object: may this app apply over what is live (pure)
- `namespaces.py`  `--create-namespace`: the destination Namespace (pure)
- `loading.py`     bundle -> prepared resources, with discovery (shell)
"""
