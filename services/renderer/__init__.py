"""The renderer: RevisionDetected -> canonical resources in a bundle -> ManifestsRendered.

- `manifests.py` plain YAML/JSON files -> checked, namespaced, canonical resources (pure)
- `paths.py`     which files are manifests, where a symlink may point (pure)
- `selection.py` which renderer reads the app; only plain directories for now (pure)
- `sources.py`   the app directory's files, read from a commit's tree (no worktree)
- `service.py`   the shell: consume RevisionDetected, render, store the bundle, append
"""
