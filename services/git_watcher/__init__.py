"""git-watcher: a change in an app's path of a repository -> RevisionDetected.

- `changes.py` did the app's path change; the RevisionDetected due, with its id (pure)
- `polling.py` fetch each repository once, check each app in it, append (shell)
- `service.py` the shell's triggers: registration, SyncRequested, the poll interval

Git plumbing (mirrors, refs, trees, RepoPath) is shared with the renderer in
`services/wiring/git.py`.
"""
