"""The applier's pure core: apply and prune order; whether an approval may start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from events.envelope import Envelope, derived_event_id, new_event
from events.payloads import (
    ApplyFailed,
    ApplyStarted,
    ApplySucceeded,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    PlanRejected,
    ResourceChange,
    ResourceError,
    ResourceRef,
)
from services.applier import admission
from services.resources.ordering import InvalidWave, order_key, prune_order, wave_of

# --- ordering --------------------------------------------------------------------------


def r(kind: str, name: str = "x", namespace: str = "shop", api_version: str = "v1") -> ResourceRef:
    return ResourceRef(api_version=api_version, kind=kind, name=name, namespace=namespace)


NAMESPACE = r("Namespace", "shop", namespace="")
CRD = r("CustomResourceDefinition", "widgets.example.com", "", "apiextensions.k8s.io/v1")
ACCOUNT = r("ServiceAccount")
SECRET = r("Secret")
CONFIG = r("ConfigMap")
CLAIM = r("PersistentVolumeClaim")
ROLE = r("ClusterRole", namespace="", api_version="rbac.authorization.k8s.io/v1")
SERVICE = r("Service")
DEPLOYMENT = r("Deployment", api_version="apps/v1")
JOB = r("Job", api_version="batch/v1")
INGRESS = r("Ingress", api_version="networking.k8s.io/v1")
WIDGET = r("Widget", api_version="example.com/v1")
ALERT = r("Alert", api_version="example.com/v1")

APPLY_ORDER = [
    NAMESPACE,
    CRD,
    ACCOUNT,
    SECRET,
    CONFIG,
    CLAIM,
    ROLE,
    SERVICE,
    DEPLOYMENT,
    JOB,
    INGRESS,
    ALERT,
    WIDGET,
]


def test_within_a_wave_kinds_go_in_a_fixed_order_then_others_by_kind() -> None:
    shuffled = list(reversed(APPLY_ORDER))
    assert sorted(shuffled, key=order_key) == APPLY_ORDER


def test_waves_come_before_kinds_as_in_argo_cd() -> None:
    waves = {DEPLOYMENT: -1, CONFIG: 0, NAMESPACE: 0, JOB: 2}
    ordered = sorted(waves, key=lambda ref: order_key(ref, waves[ref]))
    assert ordered == [DEPLOYMENT, NAMESPACE, CONFIG, JOB]


def test_same_kind_sorts_by_namespace_then_name() -> None:
    refs = [r("ConfigMap", "b", "a"), r("ConfigMap", "a", "b"), r("ConfigMap", "a", "a")]
    assert sorted(refs, key=order_key) == [refs[2], refs[0], refs[1]]


def test_prunes_go_in_reverse_apply_order() -> None:
    assert prune_order(APPLY_ORDER) == list(reversed(APPLY_ORDER))
    assert prune_order([CONFIG, DEPLOYMENT], {CONFIG: 3}) == [CONFIG, DEPLOYMENT]


def test_the_wave_annotation() -> None:
    def annotated(value: object) -> dict:
        return {"metadata": {"annotations": {"wake.dev/wave": value}}}

    assert wave_of({"metadata": {}}, CONFIG) == 0
    assert wave_of(annotated("-3"), CONFIG) == -3
    assert wave_of(annotated(" 4 "), CONFIG) == 4
    with pytest.raises(InvalidWave) as caught:
        wave_of(annotated("1.5"), CONFIG)
    assert "ConfigMap shop/x" in str(caught.value) and "'1.5'" in str(caught.value)


# --- admission -------------------------------------------------------------------------

APP = "shop"
COMMIT = "3f1e9a4c2b7d8e6f0a1b2c3d4e5f60718293a4b5"
BUNDLE = "0" * 64
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
TIMEOUT = 300.0


class Log:
    """An app's events with made-up sequence numbers, for `AppHistory`."""

    def __init__(self) -> None:
        self.events: list[tuple[int, Envelope]] = []

    def add(self, event: Envelope) -> Envelope:
        self.events.append((len(self.events) + 1, event))
        return event

    def history(self) -> admission.AppHistory:
        return admission.AppHistory.of(self.events)

    def plan(self, reason: str = "revision", desired_seq: int = 0) -> Envelope:
        created = new_event(
            PlanCreated(plan_id="", commit=COMMIT, bundle_digest=BUNDLE, changes=[], reason=reason),
            app=APP,
            actor="service:planner",
            occurred_at=T0,
        )
        # plan_id = the PlanCreated's own event id, as the planner makes it.
        payload = PlanCreated(
            plan_id=created.event_id,
            commit=COMMIT,
            bundle_digest=BUNDLE,
            changes=[],
            reason=reason,
            desired_seq=desired_seq,
        )
        return self.add(
            new_event(
                payload, app=APP, actor="service:planner", event_id=created.event_id, occurred_at=T0
            )
        )

    def approve(self, plan: Envelope, key: str = "") -> Envelope:
        return self.add(
            new_event(
                PlanApproved(plan_id=plan.payload.plan_id),
                app=APP,
                actor="policy",
                cause=plan,
                occurred_at=T0,
                key=key,
            )
        )

    def start(self, approval: Envelope, at: datetime = T0) -> Envelope:
        apply_id = derived_event_id(approval.event_id, ApplyStarted.event_type)
        return self.add(
            new_event(
                ApplyStarted(
                    apply_id=apply_id,
                    plan_id=approval.payload.plan_id,
                    commit=COMMIT,
                    bundle_digest=BUNDLE,
                ),
                app=APP,
                actor="service:applier",
                cause=approval,
                occurred_at=at,
            )
        )

    def finish(self, started: Envelope, ok: bool = True) -> None:
        p = started.payload
        payload = (
            ApplySucceeded(
                apply_id=p.apply_id,
                plan_id=p.plan_id,
                commit=COMMIT,
                bundle_digest=BUNDLE,
                inventory=[],
            )
            if ok
            else ApplyFailed(apply_id=p.apply_id, plan_id=p.plan_id, error="boom")
        )
        self.add(new_event(payload, app=APP, actor="service:applier", occurred_at=T0))


def decide(log: Log, approval: Envelope, *, at: datetime = T0) -> admission.Decision:
    return admission.decide(
        log.history(),
        approval,
        apply_id=derived_event_id(approval.event_id, ApplyStarted.event_type),
        now=at,
        apply_timeout=TIMEOUT,
    )


def test_a_first_approval_starts_on_an_empty_history() -> None:
    log = Log()
    approval = log.approve(log.plan())
    decision = decide(log, approval)
    assert isinstance(decision, admission.Start)
    assert decision.expected_seq == 0


def test_the_start_expects_the_last_apply_started() -> None:
    log = Log()
    first = log.approve(log.plan())
    log.finish(log.start(first))
    second = log.approve(log.plan())
    decision = decide(log, second)
    assert isinstance(decision, admission.Start)
    assert decision.expected_seq == 3  # plan, approval, *start*, finish, ...


def test_a_redelivery_resumes_its_own_unfinished_apply_and_skips_a_finished_one() -> None:
    log = Log()
    approval = log.approve(log.plan())
    started = log.start(approval)
    decision = decide(log, approval)
    assert isinstance(decision, admission.Resume)
    assert decision.started.event == started
    log.finish(started)
    assert isinstance(decide(log, approval), admission.Skip)


def test_another_unfinished_apply_makes_it_wait_until_it_expires() -> None:
    log = Log()
    other = log.start(log.approve(log.plan()))
    approval = log.approve(log.plan())
    assert isinstance(decide(log, approval), admission.Wait)
    late = T0 + timedelta(seconds=TIMEOUT) + admission.EXPIRY_GRACE + timedelta(seconds=1)
    decision = decide(log, approval, at=late)
    assert isinstance(decision, admission.Expire)
    assert decision.started.event == other and not decision.mine


def test_a_plan_older_than_a_started_one_is_skipped() -> None:
    log = Log()
    old_plan = log.plan()
    new_plan = log.plan()
    log.finish(log.start(log.approve(new_plan)))
    decision = decide(log, log.approve(old_plan))
    assert isinstance(decision, admission.Skip)
    assert "older" in decision.reason


def test_plans_are_ordered_by_their_revisions_detection_not_by_their_place_in_the_log() -> None:
    # Revision A detected at 1, B at 2; B's plan is appended and applied first,
    # A's plan only afterwards (a planner that stalled): A's is the older plan.
    log = Log()
    log.add(new_event(PlanRejected(plan_id="filler", reason=""), app=APP, actor="t"))
    b_plan = log.plan(desired_seq=2)
    log.finish(log.start(log.approve(b_plan)))
    a_plan = log.plan(desired_seq=1)
    decision = decide(log, log.approve(a_plan))
    assert isinstance(decision, admission.Skip)
    assert f"older than plan {b_plan.payload.plan_id}" in decision.reason
    # while a revision detected after B applies
    c_plan = log.plan(desired_seq=log.events[-1][0] + 1)
    assert isinstance(decide(log, log.approve(c_plan)), admission.Start)


def test_a_self_heal_applied_after_a_plan_does_not_make_it_older() -> None:
    # A revision awaits a person while a self-heal re-applies what was applied.
    log = Log()
    waiting = log.plan()
    log.finish(log.start(log.approve(log.plan(reason="drift"))))
    decision = decide(log, log.approve(waiting))
    assert isinstance(decision, admission.Start)


def test_rejected_and_already_applied_plans_are_skipped() -> None:
    log = Log()
    plan = log.plan()
    log.add(
        new_event(
            PlanRejected(plan_id=plan.payload.plan_id, reason="freeze"),
            app=APP,
            actor="ada",
            cause=plan,
        )
    )
    assert "rejected" in decide(log, log.approve(plan)).reason

    log = Log()
    plan = log.plan()
    log.finish(log.start(log.approve(plan)))
    again = log.approve(plan, key="a second approval")
    decision = decide(log, again)
    assert isinstance(decision, admission.Skip) and "already applied" in decision.reason


def test_an_approval_of_no_known_plan_is_missing() -> None:
    log = Log()
    stray = new_event(PlanApproved(plan_id="nope"), app=APP, actor="ada", occurred_at=T0)
    decision = decide(log, stray)
    assert isinstance(decision, admission.Missing)
    assert stray.event_id in decision.reason and "nope" in decision.reason


def test_an_approval_of_a_blocked_plan_is_refused() -> None:
    # By its PlanBlocked
    log = Log()
    plan = log.plan()
    bad = r("ConfigMap", "bad")
    log.add(
        new_event(
            PlanBlocked(
                plan_id=plan.payload.plan_id,
                errors=[ResourceError(ref=bad, error="dry run refused: 422 Invalid: tier")],
            ),
            app=APP,
            actor="service:planner",
            cause=plan,
        )
    )
    approval = log.approve(plan)
    decision = decide(log, approval)
    assert isinstance(decision, admission.Refused)
    assert approval.event_id in decision.reason and plan.payload.plan_id in decision.reason
    assert "ConfigMap shop/bad: dry run refused: 422 Invalid: tier" in decision.reason

    # By the errors of its changes alone (a PlanBlocked not read yet, or never written)
    log = Log()
    plan = log.plan()
    erring = msgspec.structs.replace(
        plan.payload, changes=[ResourceChange(ref=bad, action="create", error="unreadable")]
    )
    log.events[-1] = (1, msgspec.structs.replace(plan, payload=erring))
    decision = decide(log, log.approve(plan))
    assert isinstance(decision, admission.Refused)
    assert "ConfigMap shop/bad: unreadable" in decision.reason
