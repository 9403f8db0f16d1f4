"""Randomized but valid histories of many apps, for the projector's tests.

Every event is built as the services build theirs: a journey starts with a
fresh event (a revision or a rollback request) and every consequence is
derived from its cause, so ids and correlation ids are as in production.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from events import new_event
from events import payloads as p
from events.envelope import Envelope

AUTHORS = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Barbara Liskov"]
APPROVERS = ["user:alice", "user:bob", "chat:carol"]
BASE_TIME = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
BLOCKING_ERROR = "dry run refused: 422 Invalid: spec.replicas: must be >= 0"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def commit_id(text: str) -> str:
    return sha(text)[:40]


def refs(app: str, n: int) -> list[p.ResourceRef]:
    kinds = [("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap")]
    return [
        p.ResourceRef(
            api_version=kinds[i % 3][0], kind=kinds[i % 3][1], name=f"{app}-{i}", namespace=app
        )
        for i in range(n)
    ]


@dataclass
class Applied:
    apply_id: str
    commit: str
    bundle: str


@dataclass
class History:
    """The events of a generated history, in log order, and what it did."""

    rng: random.Random
    now: datetime = BASE_TIME
    events: list[Envelope] = field(default_factory=list)
    applied: dict[str, list[Applied]] = field(default_factory=dict)
    counter: int = 0

    def tick(self) -> datetime:
        self.now += timedelta(seconds=self.rng.randint(1, 30))
        return self.now

    def add(
        self,
        payload: p.Payload,
        app: str,
        *,
        cause: Envelope | None = None,
        actor: str = "service:test",
        key: str = "",
    ) -> Envelope:
        event = new_event(
            payload, app=app, actor=actor, cause=cause, occurred_at=self.tick(), key=key
        )
        self.events.append(event)
        return event

    def register(self, app: str) -> None:
        spec = p.AppSpec(repo_url=f"https://git.example.com/{app}.git", path=f"apps/{app}")
        self.add(p.ApplicationRegistered(spec=spec), app, actor="user:alice")
        self.applied[app] = []

    def revision(
        self,
        app: str,
        *,
        fail_render: bool = False,
        approve: str = "random",
        apply_ok: bool | None = None,
        bundle: str | None = None,
    ) -> Envelope:
        """One commit's journey; `approve`: policy, approve, reject, blocked or random."""
        self.counter += 1
        commit = commit_id(f"{app}/{self.counter}")
        detected = self.add(
            p.RevisionDetected(
                repo_url=f"https://git.example.com/{app}.git",
                ref="main",
                commit=commit,
                author=self.rng.choice(AUTHORS),
                author_email="dev@example.com",
                message=f"{app}: change number {self.counter}\n\nwith a body",
                committed_at=self.now,
            ),
            app,
            actor="service:git-watcher",
        )
        if fail_render:
            self.add(
                p.RenderFailed(
                    commit=commit,
                    error="mapping values are not allowed here",
                    file="apps/x/deploy.yaml",
                    line=3,
                    renderer="yaml",
                ),
                app,
                cause=detected,
            )
            return detected
        bundle = bundle or sha(f"bundle/{commit}")
        inventory = refs(app, self.rng.randint(1, 4))
        rendered = self.add(
            p.ManifestsRendered(
                commit=commit,
                bundle_digest=bundle,
                bundle_size=1000,
                renderer="yaml",
                resources=[p.RenderedResource(ref=r, digest=sha(str(r))) for r in inventory],
            ),
            app,
            cause=detected,
        )
        self.plan(app, rendered, commit, bundle, inventory, approve=approve, apply_ok=apply_ok)
        return detected

    def plan(
        self,
        app: str,
        cause: Envelope,
        commit: str,
        bundle: str,
        inventory: list[p.ResourceRef],
        *,
        approve: str = "random",
        apply_ok: bool | None = None,
        rollback_of: str | None = None,
    ) -> None:
        if approve == "random":
            approve = self.rng.choice(["policy", "approve", "approve", "reject"])
        plan_id = f"plan-{app}-{self.counter}-{len(self.events)}"
        created = self.add(
            p.PlanCreated(
                plan_id=plan_id,
                commit=commit,
                bundle_digest=bundle,
                changes=[
                    p.ResourceChange(
                        ref=r,
                        action="update",
                        diff=f"-a\n+{r.name}",
                        error=BLOCKING_ERROR if approve == "blocked" and i == 0 else "",
                    )
                    for i, r in enumerate(inventory)
                ],
                reason="rollback" if rollback_of else "revision",
                rollback_of=rollback_of,
                needs_approval=approve not in ("policy", "blocked"),
            ),
            app,
            cause=cause,
            actor="service:planner",
        )
        if approve == "blocked":
            self.add(
                p.PlanBlocked(
                    plan_id=plan_id,
                    errors=[p.ResourceError(ref=inventory[0], error=BLOCKING_ERROR)],
                ),
                app,
                cause=created,
                actor="service:planner",
            )
            return
        if approve == "policy":
            decision = self.add(
                p.PlanApproved(plan_id=plan_id, via="policy"),
                app,
                cause=created,
                actor="service:planner",
            )
        else:
            requested = self.add(
                p.ApprovalRequested(plan_id=plan_id, summary="changes"),
                app,
                cause=created,
                actor="service:planner",
            )
            actor = self.rng.choice(APPROVERS)
            via = "chat" if actor.startswith("chat") else "cli"
            if approve == "reject":
                self.add(
                    p.PlanRejected(plan_id=plan_id, reason="not now", via=via),
                    app,
                    cause=requested,
                    actor=actor,
                )
                return
            decision = self.add(
                p.PlanApproved(plan_id=plan_id, via=via, comment="lgtm"),
                app,
                cause=requested,
                actor=actor,
            )
        apply_id = f"apply-{plan_id}"
        started = self.add(
            p.ApplyStarted(
                apply_id=apply_id,
                plan_id=plan_id,
                commit=commit,
                bundle_digest=bundle,
                rollback_of=rollback_of,
            ),
            app,
            cause=decision,
            actor="service:applier",
        )
        for ref in inventory:
            self.add(
                p.ResourceApplied(apply_id=apply_id, ref=ref, action="configured"),
                app,
                cause=started,
                key=str(ref),
                actor="service:applier",
            )
        ok = self.rng.random() < 0.8 if apply_ok is None else apply_ok
        if ok:
            self.add(
                p.ApplySucceeded(
                    apply_id=apply_id,
                    plan_id=plan_id,
                    commit=commit,
                    bundle_digest=bundle,
                    inventory=inventory,
                    rollback_of=rollback_of,
                ),
                app,
                cause=started,
                actor="service:applier",
            )
            self.applied[app].append(Applied(apply_id, commit, bundle))
            self.add(
                p.HealthChanged(status="Healthy", apply_id=apply_id),
                app,
                cause=started,
                actor="service:applier",
            )
        else:
            due = self.tick()
            failed = self.add(
                p.ApplyFailed(
                    apply_id=apply_id,
                    plan_id=plan_id,
                    error="422 invalid",
                    resource=inventory[0],
                    status_code=422,
                    retry_at=due,
                ),
                app,
                cause=started,
                actor="service:applier",
            )
            # A retry is scheduled; the next journey's plan cancels it.
            self.add(
                p.ApplyRetryScheduled(
                    plan_id=plan_id,
                    after_apply_id=apply_id,
                    attempt=2,
                    due_at=due,
                    delay_seconds=5.0,
                ),
                app,
                cause=failed,
                actor="service:applier",
            )

    def rollback(self, app: str) -> bool:
        """Roll `app` back to its previous applied revision; False if it has none."""
        if len(self.applied[app]) < 2:
            return False
        target = self.applied[app][-2]
        requested = self.add(
            p.RollbackRequested(
                target=target.commit,
                reason="5xx",
                apply_id=target.apply_id,
                commit=target.commit,
                bundle_digest=target.bundle,
            ),
            app,
            actor="user:bob",
        )
        self.plan(
            app,
            requested,
            target.commit,
            target.bundle,
            refs(app, 2),
            approve="policy",
            apply_ok=True,
            rollback_of=target.apply_id,
        )
        return True

    def noise(self, app: str) -> None:
        last = self.events[-1]
        self.add(
            p.NotificationSent(
                channel="webhook:ops",
                about_event_id=last.event_id,
                about_type=last.type,
                status_code=200,
            ),
            app,
            cause=last,
            actor="service:notifier",
        )


def random_history(seed: int, *, apps: int = 6, journeys: int = 60) -> History:
    """Registrations, then `journeys` random journeys over `apps` apps: commits, render
    failures, approvals, rejections, failed applies, rollbacks, resumes, drift, noise."""
    history = History(rng=random.Random(seed))
    names = [f"app-{i}" for i in range(apps)]
    for name in names:
        history.register(name)
    for _ in range(journeys):
        app = history.rng.choice(names)
        roll = history.rng.random()
        if roll < 0.1:
            history.revision(app, fail_render=True)
        elif roll < 0.2 and history.rollback(app):
            pass
        elif roll < 0.25:
            history.add(p.SyncRequested(resume=True, reason="resume"), app, actor="user:alice")
        elif roll < 0.3:
            history.add(
                p.DriftDetected(
                    bundle_digest=sha("x"),
                    resources=[p.DriftedResource(ref=refs(app, 1)[0], fields=["/spec/replicas"])],
                ),
                app,
            )
        else:
            history.revision(app)
        if history.rng.random() < 0.3:
            history.noise(app)
    return history
