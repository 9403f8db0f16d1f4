"""A sample application repository, made with pygit2: real commits, real history."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pygit2

APP_PATH = "deploy"
NAMESPACE = "demo"


def namespace_yaml(namespace: str) -> str:
    return f"""\
apiVersion: v1
kind: Namespace
metadata:
  name: {namespace}
"""


CONFIGMAP_YAML = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  greeting: hello from commit 1
"""

SERVICE_YAML = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
    - name: http
      port: 80
      targetPort: 8080
"""


def deployment_yaml(*, replicas: int, image: str) -> str:
    return f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
        - name: web
          image: {image}
          ports:
            - containerPort: 8080
"""


@dataclass
class SampleRepo:
    """A repository on disk with a `main` branch, committed to through pygit2."""

    path: Path
    repo: pygit2.Repository

    @classmethod
    def create(cls, path: Path) -> SampleRepo:
        path.mkdir(parents=True, exist_ok=True)
        repo = pygit2.init_repository(str(path), bare=False, initial_head="main")
        return cls(path=path, repo=repo)

    @property
    def url(self) -> str:
        return str(self.path)

    def commit(self, message: str, files: dict[str, str | None], *, author: str = "Ada") -> str:
        """Write (or, for None, delete) `files`, commit them all on main; return the commit id."""
        for relative, content in files.items():
            target = self.path / relative
            if content is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
        index = self.repo.index
        # add_all stages new and changed files and drops deleted ones.
        index.add_all()
        index.write()
        tree = index.write_tree()
        signature = pygit2.Signature(author, f"{author.lower()}@example.com", int(time.time()), 0)
        parents = [] if self.repo.head_is_unborn else [self.repo.head.target]
        commit = self.repo.create_commit(
            "refs/heads/main", signature, signature, message, tree, parents
        )
        return str(commit)


def first_commit(sample: SampleRepo, *, namespace: str = NAMESPACE) -> str:
    """Commit 1: a Namespace, a Deployment, a Service and a ConfigMap."""
    return sample.commit(
        "demo: web 1.0 with its config",
        {
            f"{APP_PATH}/namespace.yaml": namespace_yaml(namespace),
            f"{APP_PATH}/deployment.yaml": deployment_yaml(replicas=2, image="nginx:1.27"),
            f"{APP_PATH}/service.yaml": SERVICE_YAML,
            f"{APP_PATH}/configmap.yaml": CONFIGMAP_YAML,
            "README.md": "Sample application for `wake demo`.\n",
        },
    )


def second_commit(sample: SampleRepo) -> str:
    """Commit 2: the Deployment changes, the ConfigMap is removed (pruned)."""
    return sample.commit(
        "demo: web 1.1 on 3 replicas, drop the config",
        {
            f"{APP_PATH}/deployment.yaml": deployment_yaml(replicas=3, image="nginx:1.28"),
            f"{APP_PATH}/configmap.yaml": None,
        },
    )
