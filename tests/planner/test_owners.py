"""One owner per object (issue 8, item 8) and `--create-namespace` (item 4), on real NATS
and the sandbox: two apps, one object."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from events.envelope import Envelope
from events.payloads import (
    ApplicationRegistered,
    ApplicationUpdated,
    ApplySucceeded,
    PlanApproved,
    PlanBlocked,
    PlanCreated,
    ResourceRef,
)
from services.applier.service import Applier
from services.planner.service import Planner
from services.resources.labels import APP_LABEL
from services.sandbox import Sandbox
from services.wiring.embedded_nats import EmbeddedNats
from services.wiring.eventlog import EventLog
from services.wiring.kube import Clusters, Kube
from services.wiring.settings import Settings
from tests.planner.scenario import Scenario, configmap, namespace
from tests.signing import cli_env

ROOT = Path(__file__).resolve().parents[2]
SHARED = ResourceRef(api_version="v1", kind="ConfigMap", name="shared", namespace="shop")
SHOP_NS = ResourceRef(api_version="v1", kind="Namespace", name="shop")


@pytest.fixture
def billing(event_log: EventLog, settings: Settings) -> Scenario:
    """A second app on the same log and cluster."""
    return Scenario(event_log, settings, app="billing")


async def plan(scenario: Scenario, kube: Kube, rendered: Envelope) -> Envelope:
    """Plan `rendered`; the event that followed the plan (approval, request or block)."""
    planner = Planner(scenario.context("planner"), Clusters.serving(kube))
    await planner.handle(await scenario.stored(rendered))
    created = await scenario.last(PlanCreated.event_type)
    following = [e for e in await scenario.events() if e.causation_id == created.event_id]
    assert following, f"nothing followed plan {created.payload.plan_id}"
    return following[0]


async def deploy(scenario: Scenario, kube: Kube, resources: list, label: str = "v1") -> None:
    """Render, plan and apply `resources`; the plan must be approved by policy."""
    approval = await plan(scenario, kube, await scenario.render(resources, label=label))
    assert isinstance(approval.payload, PlanApproved), approval.payload
    applier = Applier(scenario.context("applier"), Clusters.serving(kube))
    await applier.handle(await scenario.stored(approval))
    await applier.health.wait_idle()
    outcome = await scenario.last(ApplySucceeded.event_type)
    assert outcome.causation_id == approval.event_id


def owner(sandbox: Sandbox, ref: ResourceRef) -> str | None:
    obj = sandbox.get(ref.api_version, ref.kind, ref.name, namespace=ref.namespace)
    assert obj is not None, f"{ref} is not in the cluster"
    return (obj["metadata"].get("labels") or {}).get(APP_LABEL)


async def test_an_object_another_app_manages_blocks_the_plan_naming_both_apps(
    scenario: Scenario, billing: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given shop applied the ConfigMap `shared`
    await scenario.register()
    await deploy(scenario, kube, [namespace(), configmap("shared", a="shop")])

    # When billing's revision has the same ConfigMap
    await billing.register()
    followed = await plan(billing, kube, await billing.render([configmap("shared", a="billing")]))

    # Then billing's plan is blocked, naming the object and both apps
    assert isinstance(followed.payload, PlanBlocked)
    [error] = followed.payload.errors
    assert error.ref == SHARED
    assert "managed by app 'shop'" in error.error and "app 'billing' applies it too" in error.error
    assert "--adopt" in error.error
    # and the object is still shop's, as shop left it
    assert owner(sandbox, SHARED) == "shop"
    assert sandbox.get("v1", "ConfigMap", "shared", namespace="shop")["data"] == {"a": "shop"}


async def test_with_adopt_an_app_takes_over_another_apps_object(
    scenario: Scenario, billing: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given shop applied the ConfigMap `shared`
    await scenario.register()
    await deploy(scenario, kube, [namespace(), configmap("shared", a="shop")])

    # When billing, registered with --adopt, applies it too
    await billing.register(adopt=True)
    await deploy(billing, kube, [configmap("shared", a="billing")])

    # Then it is billing's
    assert owner(sandbox, SHARED) == "billing"
    assert sandbox.get("v1", "ConfigMap", "shared", namespace="shop")["data"] == {"a": "billing"}
    # and shop, without --adopt, cannot take it back
    followed = await plan(
        scenario, kube, await scenario.render([namespace(), configmap("shared", a="x")], "v2")
    )
    assert isinstance(followed.payload, PlanBlocked)
    assert "managed by app 'billing'" in followed.payload.errors[0].error


async def test_an_object_wake_did_not_create_is_not_adopted_without_adopt(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given a ConfigMap someone made by hand in a namespace that exists
    await kube.apply(configmap("by-hand", ns="default", a="1"))
    hand = ResourceRef(api_version="v1", kind="ConfigMap", name="by-hand", namespace="default")

    # When an app's revision has it
    await scenario.register(namespace="default")
    followed = await plan(
        scenario, kube, await scenario.render([configmap("by-hand", ns="default", a="2")])
    )

    # Then the plan is blocked naming it
    assert isinstance(followed.payload, PlanBlocked)
    assert [e.ref for e in followed.payload.errors] == [hand]
    assert "exists and is not managed by Wake" in followed.payload.errors[0].error
    assert sandbox.get("v1", "ConfigMap", "by-hand", namespace="default")["data"] == {"a": "1"}


async def test_an_existing_namespace_listed_by_the_app_is_not_adopted_but_deployed_into(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given the namespace `default`, which Wake did not create
    default = ResourceRef(api_version="v1", kind="Namespace", name="default")
    await scenario.register(namespace="default")

    # When a revision deploys into it without listing it: it plans and applies
    await deploy(scenario, kube, [configmap("inside", ns="default", a="1")])

    # When a revision lists the Namespace itself: blocked, and the namespace is left as it is
    followed = await plan(
        scenario,
        kube,
        await scenario.render([namespace("default"), configmap("inside", ns="default")], "v2"),
    )
    assert isinstance(followed.payload, PlanBlocked)
    assert [e.ref for e in followed.payload.errors] == [default]
    assert owner(sandbox, default) is None


async def test_two_apps_no_longer_relabel_a_shared_namespace(
    scenario: Scenario, billing: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given shop owns the Namespace `shop`
    await scenario.register()
    await deploy(scenario, kube, [namespace(), configmap("a", a="1")])

    # When billing's revision lists the same Namespace
    await billing.register()
    followed = await plan(billing, kube, await billing.render([namespace(), configmap("b")]))

    # Then billing is blocked on it, and the namespace stays shop's
    assert isinstance(followed.payload, PlanBlocked)
    assert [e.ref for e in followed.payload.errors] == [SHOP_NS]
    assert owner(sandbox, SHOP_NS) == "shop"

    # When billing deploys into the namespace without listing it
    await deploy(billing, kube, [configmap("b", a="1")], label="v2")

    # Then both live there and the namespace is still shop's
    assert owner(sandbox, SHOP_NS) == "shop"
    b = ResourceRef(api_version="v1", kind="ConfigMap", name="b", namespace="shop")
    assert owner(sandbox, b) == "billing"


async def test_create_namespace_plans_the_destination_namespace_first_and_labels_it(
    scenario: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given an app with --create-namespace whose repository has no Namespace, and no
    # namespace `shop` in the cluster
    await scenario.register(create_namespace=True)
    assert sandbox.get("v1", "Namespace", "shop") is None
    inside = configmap("web-config", a="1")
    wave_early = configmap("early", a="1")
    wave_early["metadata"]["annotations"] = {"wake.dev/wave": "-1"}

    # When a revision is planned
    followed = await plan(scenario, kube, await scenario.render([inside, wave_early]))

    # Then the plan creates the Namespace first (in the earliest wave), and is approved
    assert isinstance(followed.payload, PlanApproved)
    created = (await scenario.last(PlanCreated.event_type)).payload
    first = created.changes[0]
    assert (first.ref, first.action, first.wave) == (SHOP_NS, "create", -1)
    assert "+    wake.dev/app: shop" in created.changes[0].diff

    # When it is applied
    applier = Applier(scenario.context("applier"), Clusters.serving(kube))
    await applier.handle(await scenario.stored(followed))
    await applier.health.wait_idle()

    # Then the namespace exists, labelled for the app, and is in its inventory
    assert owner(sandbox, SHOP_NS) == "shop"
    assert sandbox.get("v1", "ConfigMap", "web-config", namespace="shop") is not None
    applied = (await scenario.last(ApplySucceeded.event_type)).payload
    assert SHOP_NS in applied.inventory

    # When the next revision is planned: the namespace stays in the plan, unchanged (not pruned)
    await plan(scenario, kube, await scenario.render([inside, wave_early], label="v2"))
    again = (await scenario.last(PlanCreated.event_type)).payload
    assert (SHOP_NS, "unchanged") in [(c.ref, c.action) for c in again.changes]
    assert SHOP_NS not in again.prune

    # When the option is turned off: the namespace, and all in it, is not pruned
    spec = (await scenario.last(ApplicationRegistered.event_type)).payload.spec
    await scenario.append(
        ApplicationUpdated(spec=msgspec.structs.replace(spec, create_namespace=False))
    )
    await plan(scenario, kube, await scenario.render([inside, wave_early], label="v3"))
    off = (await scenario.last(PlanCreated.event_type)).payload
    assert SHOP_NS not in [c.ref for c in off.changes] and off.prune == []


async def test_create_namespace_leaves_a_namespace_another_app_owns_alone(
    scenario: Scenario, billing: Scenario, kube: Kube, sandbox: Sandbox
) -> None:
    # Given shop owns the Namespace `shop`
    await scenario.register()
    await deploy(scenario, kube, [namespace(), configmap("a", a="1")])

    # When billing, with --create-namespace, deploys into it
    await billing.register(create_namespace=True)
    await deploy(billing, kube, [configmap("b", a="1")])

    # Then billing's plan does not touch the Namespace, which stays shop's
    created = (await billing.last(PlanCreated.event_type)).payload
    assert SHOP_NS not in [c.ref for c in created.changes]
    assert owner(sandbox, SHOP_NS) == "shop"


async def test_wake_app_add_records_adopt_and_create_namespace(
    event_log: EventLog, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    env = {
        **os.environ,
        "WAKE_NATS_URL": nats_server.url,
        "WAKE_DATA_DIR": str(tmp_path / "c"),
        **cli_env(tmp_path / "keys"),
    }

    def add(name: str, *flags: str) -> subprocess.CompletedProcess[str]:
        command = ["app", "add", name, "--repo", str(repo), "--namespace", "shop", *flags]
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    with_flags = await asyncio.to_thread(add, "shop", "--adopt", "--create-namespace")
    without = await asyncio.to_thread(add, "plain")
    assert with_flags.returncode == 0 and without.returncode == 0, (
        with_flags.stderr + without.stderr
    )

    specs = {}
    async for stored in event_log.read(subjects=["wake.evt.*.ApplicationRegistered"]):
        assert isinstance(stored.event.payload, ApplicationRegistered)
        specs[stored.event.app] = stored.event.payload.spec
    assert (specs["shop"].adopt, specs["shop"].create_namespace) == (True, True)
    assert (specs["plain"].adopt, specs["plain"].create_namespace) == (False, False)
