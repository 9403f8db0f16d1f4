"""Prune and cascade delete only what the log shows the app created; never the cluster's
or Wake's namespaces. Pure."""

from __future__ import annotations

from events import new_event
from events.payloads import ResourceApplied, ResourceDeleted, ResourceRef
from services.applier.removing import created_by, kept_because
from services.planner.planning import plan
from services.resources.identity import identity
from services.resources.labels import inventory_labels

APP = "shop"


def ref(kind: str, name: str, namespace: str = "") -> ResourceRef:
    return ResourceRef(api_version="v1", kind=kind, name=name, namespace=namespace)


MINE = ref("ConfigMap", "mine", "shop")
ADOPTED = ref("ConfigMap", "adopted", "shop")
SYSTEM = ref("Namespace", "kube-system")
OWN = ref("Namespace", "wake")


def live(r: ResourceRef) -> dict:
    return {"metadata": {"name": r.name, "labels": inventory_labels(APP)}}


def test_prune_deletes_only_what_the_app_created_and_never_a_protected_namespace():
    inventory = [MINE, ADOPTED, SYSTEM, OWN]
    decided = plan(
        [],
        {},
        {r: live(r) for r in inventory},
        inventory,
        prune=True,
        app=APP,
        created={identity(MINE), identity(SYSTEM), identity(OWN)},
        system_namespace="wake",
    )
    assert decided.prune == [MINE]
    # Without the log's account (None) every candidate but the protected namespaces goes
    unknown = plan([], {}, {r: live(r) for r in inventory}, inventory, prune=True, app=APP)
    assert SYSTEM not in unknown.prune and ADOPTED in unknown.prune


def test_what_an_app_created_is_folded_from_its_events():
    def applied(r: ResourceRef, action: str, hook: str = "") -> tuple[int, object]:
        payload = ResourceApplied(apply_id="a", ref=r, action=action, hook=hook)
        return 0, new_event(payload, app=APP, actor="applier")

    deleted = ResourceDeleted(removal_id="r", ref=ADOPTED, action="deleted")
    events = [
        applied(MINE, "created"),
        applied(ADOPTED, "configured"),
        applied(ref("Job", "migrate", "shop"), "created", hook="PreSync"),
        applied(SYSTEM, "created"),
        applied(SYSTEM, "pruned"),
        (0, new_event(deleted, app=APP, actor="applier")),
    ]
    assert created_by(events) == {identity(MINE)}


def test_a_cascade_keeps_what_the_app_adopted_and_the_protected_namespaces():
    def why(r: ResourceRef, *, created: bool) -> str:
        return kept_because(r, live(r), app=APP, system_namespace="wake", created=created)

    assert why(MINE, created=True) == ""
    assert why(ADOPTED, created=False) == (
        "the log does not show that shop created it (it was adopted): it is released"
    )
    assert why(SYSTEM, created=True) == "namespace kube-system is never deleted"
    assert why(OWN, created=True) == "namespace wake is Wake's own"


def test_the_planner_decodes_only_the_resource_applied_events_that_change_what_it_knows():
    from events.envelope import encode
    from services.planner.tracking import wanted

    def data(action: str) -> bytes:
        payload = ResourceApplied(apply_id="a", ref=MINE, action=action)
        return encode(new_event(payload, app=APP, actor="applier"))

    assert wanted("ResourceApplied", data("created")) and wanted("ResourceApplied", data("pruned"))
    assert not wanted("ResourceApplied", data("unchanged"))
    assert not wanted("ResourceApplied", data("configured"))
    assert wanted("PlanCreated", b"{}")
