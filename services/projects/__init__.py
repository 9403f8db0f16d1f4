"""Projects: what an app may touch (Argo CD's AppProject), folded from the log."""
