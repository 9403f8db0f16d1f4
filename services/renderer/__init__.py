"""The renderer: RevisionDetected -> canonical resources in a bundle -> ManifestsRendered.

- `selection.py`     which renderer reads the app: named, or detected by `auto` (pure)
- `options.py`       the renderer options an app may set (pure; the CLI checks them)
- `manifests.py`     YAML/JSON and tools' output -> checked, namespaced, canonical resources;
                     the one YAML loader, with its alias-bomb guard (pure)
- `paths.py`         which files are manifests, where a symlink may point (pure)
- `kustomization.py` what a kustomization reads, what it may not (remote, plugins) (pure)
- `sources.py`       the app directory's files, read from a commit's tree (no worktree)
- `checkout.py`      a commit's files for a tool: looked up, or written to a private dir
- `processes.py`     a tool as a subprocess within the timeout and the output cap
- `kustomize.py`     `kubectl kustomize` over a private copy of what the app references
- `jsonnet.py`       the app's jsonnet entry files, evaluated by `jsonnet_worker.py`
- `helm.py`          `helm template`, where helm is installed
- `rendering.py`     one render: choose, run within the caps, make the bundle
- `service.py`       the shell: consume RevisionDetected, render, store the bundle, append
"""
