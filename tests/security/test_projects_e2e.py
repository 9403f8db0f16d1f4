"""Apps that reach beyond their bounds, against a whole running Wake (`wake up --sandbox`).

Each attack of issue 10 is refused with an error naming the resource and the
rule -- the kube-system write, the cluster-admin binding, the overwrite of
another app's object, the adopt-and-prune of an existing Namespace -- nothing
of it reaches the cluster, and the app's next normal commit is applied. And
approvals: only the app's (or its project's) approvers, never the commit's
author under --separate-approver; a refused approval is an event, the CLI says
so, and nothing is applied.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from events import new_event
from events.payloads import ApplicationRegistered, AppSpec, ResourceRef
from services.demo.sample import APP_PATH, SampleRepo, first_commit, namespace_yaml
from services.wiring.eventlog import checked_bytes
from tests.e2e.harness import WakeUnderTest, running_wake
from tests.git_watcher.http_git import PrivateGitServer
from tests.git_watcher.tls import local_pki

FORGE_TOKEN = "glpat-forge-only"


@pytest.fixture(scope="module")
def forge_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The services' (and the CLI's) git credentials: `forge-bot`, bound to the HTTPS forge
    on this machine, whose test authority they trust."""
    creds = tmp_path_factory.mktemp("creds")
    (creds / "forge-bot").mkdir()
    (creds / "forge-bot" / "token").write_text(FORGE_TOKEN)
    (creds / "forge-bot" / "urls").write_text("https://127.0.0.1:*/private\n")
    return {"WAKE_GIT_CREDENTIALS_DIR": str(creds), "SSL_CERT_FILE": str(local_pki().ca_file)}


@pytest.fixture(scope="module")
async def wake(
    tmp_path_factory: pytest.TempPathFactory, forge_env: dict[str, str]
) -> AsyncIterator[WakeUnderTest]:
    async with running_wake(tmp_path_factory.mktemp("projects"), env=forge_env) as wake:
        yield wake


def configmap_yaml(name: str, namespace: str = "", value: str = "1") -> str:
    where = f"\n  namespace: {namespace}" if namespace else ""
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {name}{where}
data:
  value: "{value}"
"""


CLUSTER_ADMIN_BINDING = """\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: take-over
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - kind: ServiceAccount
    name: default
    namespace: team-a
"""


async def blocked_then_fixed(
    wake: WakeUnderTest,
    app: str,
    repo: SampleRepo,
    *,
    start: int,
    fix: dict[str, str | None],
) -> tuple[list[str], str]:
    """The errors of the app's PlanBlocked after `start`; then `fix` committed and applied.

    Returns the errors and the fixed commit, once its ApplySucceeded is in.
    """
    blocked = await wake.next_event(app, "PlanBlocked", after=start)
    errors = [str(e) for e in blocked.event.payload.errors]
    after = [s.event.type for s in await wake.events(app, after=blocked.seq)]
    assert "ApplyStarted" not in after
    fixed = repo.commit("fix: stay within the project", fix)
    await wake.wake("sync", app)
    await wake.next_event(
        app,
        "ApplySucceeded",
        after=blocked.seq,
        where=lambda s: s.event.payload.commit == fixed,
    )
    return errors, fixed


async def test_a_write_into_kube_system_is_blocked_and_the_next_commit_applies(
    wake: WakeUnderTest,
) -> None:
    # Given an app in the default project whose repository writes into kube-system
    repo = wake.repository("intruder")
    first_commit(repo, namespace="intruder")
    repo.commit("sneak", {f"{APP_PATH}/evil.yaml": configmap_yaml("evil", "kube-system")})
    start = await wake.position()
    # When it is registered
    await wake.wake(
        "app", "add", "intruder", "--repo", repo.url, "--path", APP_PATH,
        "--namespace", "intruder",
    )  # fmt: skip
    # Then its plan is blocked, naming the resource and the rule, and nothing is applied
    errors, _ = await blocked_then_fixed(
        wake, "intruder", repo, start=start, fix={f"{APP_PATH}/evil.yaml": None}
    )
    assert errors == [
        "ConfigMap kube-system/evil: ConfigMap kube-system/evil is outside project 'default': "
        "namespace 'kube-system' is not among its destinations (/intruder; `--destination`)"
    ]
    # And after the fix, the app is applied; kube-system never got the object
    assert await wake.cluster_object("v1", "ConfigMap", "evil", "kube-system") is None
    assert await wake.cluster_object("v1", "Namespace", "intruder") is not None
    shown = await wake.wake("app", "show", "intruder")
    assert "project:                 default" in shown.stdout


async def test_a_cluster_admin_binding_is_blocked_and_the_next_commit_applies(
    wake: WakeUnderTest,
) -> None:
    # Given a project that may deploy into team-a, no cluster-scoped kind
    await wake.wake(
        "project", "add", "team", "--source", "*", "--destination", "/team-a",
        "--description", "team A's services",
    )  # fmt: skip
    repo = wake.repository("rbac")
    first_commit(repo, namespace="team-a")
    repo.commit("admin for me", {f"{APP_PATH}/binding.yaml": CLUSTER_ADMIN_BINDING})
    start = await wake.position()
    # When an app of it binds cluster-admin
    await wake.wake(
        "app", "add", "rbac", "--repo", repo.url, "--path", APP_PATH,
        "--namespace", "team-a", "--project", "team",
    )  # fmt: skip
    errors, _ = await blocked_then_fixed(
        wake, "rbac", repo, start=start, fix={f"{APP_PATH}/binding.yaml": None}
    )
    # Then it is blocked, naming the rule
    assert (
        "ClusterRoleBinding take-over is outside project 'team': cluster-scoped kind "
        "rbac.authorization.k8s.io/ClusterRoleBinding is not allowed (allowed: none; "
        "`--allow-cluster-kind`)"
    ) in errors[0]
    binding = ResourceRef(
        api_version="rbac.authorization.k8s.io/v1", kind="ClusterRoleBinding", name="take-over"
    )
    assert await wake.kube.get(binding) is None
    # And the project shows its app; a project in use cannot be removed
    shown = await wake.wake("project", "show", "team")
    assert "rbac" in shown.stdout and "/team-a" in shown.stdout
    listed = await wake.wake("project", "list")
    assert listed.stdout.splitlines()[0].split() == ["NAME", "APPS", "DESTINATIONS", "SOURCES"]
    refused = await wake.wake("project", "remove", "team", check=False)
    assert refused.returncode != 0
    assert "project 'team' is in use by rbac" in refused.stderr


async def test_an_overwrite_of_another_apps_object_is_blocked_and_the_next_commit_applies(
    wake: WakeUnderTest,
) -> None:
    # Given two apps of one project sharing a namespace, one owning a ConfigMap
    await wake.wake("project", "add", "shared", "--source", "*", "--destination", "/shared")
    billing = wake.repository("billing")
    billing.commit(
        "billing",
        {
            f"{APP_PATH}/ns.yaml": namespace_yaml("shared"),
            f"{APP_PATH}/settings.yaml": configmap_yaml("settings", value="billing"),
        },
    )
    start = await wake.position()
    await wake.wake(
        "app", "add", "billing", "--repo", billing.url, "--path", APP_PATH,
        "--namespace", "shared", "--project", "shared",
    )  # fmt: skip
    await wake.next_event("billing", "ApplySucceeded", after=start)
    # When the other app's repository lists the same ConfigMap
    thief = wake.repository("thief")
    thief.commit("mine now", {f"{APP_PATH}/settings.yaml": configmap_yaml("settings", value="x")})
    start = await wake.position()
    await wake.wake(
        "app", "add", "thief", "--repo", thief.url, "--path", APP_PATH,
        "--namespace", "shared", "--project", "shared",
    )  # fmt: skip
    errors, _ = await blocked_then_fixed(
        wake,
        "thief",
        thief,
        start=start,
        fix={
            f"{APP_PATH}/settings.yaml": None,
            f"{APP_PATH}/own.yaml": configmap_yaml("thief-own"),
        },
    )
    # Then it is blocked, naming both apps, and billing's object is untouched
    assert errors[0].startswith(
        "ConfigMap shared/settings: ConfigMap shared/settings is managed by app 'billing'"
    )
    settings = await wake.cluster_object("v1", "ConfigMap", "settings", "shared")
    assert settings is not None and settings["data"] == {"value": "billing"}
    assert settings["metadata"]["labels"]["wake.dev/app"] == "billing"
    assert await wake.cluster_object("v1", "ConfigMap", "thief-own", "shared") is not None


async def test_an_adopted_namespace_is_never_pruned_and_kube_system_never_is(
    wake: WakeUnderTest,
) -> None:
    # Given a Namespace made by an administrator, and a project that names it and
    # kube-system exactly
    legacy = ResourceRef(api_version="v1", kind="Namespace", name="legacy")
    await wake.kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "legacy"}})
    assert await wake.cluster_object("v1", "Namespace", "kube-system") is not None
    await wake.wake(
        "project", "add", "ops", "--source", "*", "--destination", "/legacy",
        "--destination", "/kube-system",
    )  # fmt: skip
    # and an app registered with --adopt that lists both, and a ConfigMap of its own
    repo = wake.repository("adopter")
    first = repo.commit(
        "take them",
        {
            f"{APP_PATH}/legacy.yaml": namespace_yaml("legacy"),
            f"{APP_PATH}/system.yaml": namespace_yaml("kube-system"),
            f"{APP_PATH}/config.yaml": configmap_yaml("app-config"),
        },
    )
    start = await wake.position()
    await wake.wake(
        "app", "add", "adopter", "--repo", repo.url, "--path", APP_PATH,
        "--namespace", "legacy", "--project", "ops", "--adopt",
    )  # fmt: skip
    applied = await wake.next_event(
        "adopter", "ApplySucceeded", after=start, where=lambda s: s.event.payload.commit == first
    )
    inventory = {(r.kind, r.name) for r in applied.event.payload.inventory}
    assert {("Namespace", "legacy"), ("Namespace", "kube-system")} <= inventory
    # When the next commit drops everything it listed
    second = repo.commit(
        "let go",
        {
            f"{APP_PATH}/legacy.yaml": None,
            f"{APP_PATH}/system.yaml": None,
            f"{APP_PATH}/config.yaml": None,
            f"{APP_PATH}/other.yaml": configmap_yaml("other"),
        },
    )
    await wake.wake("sync", "adopter")
    plan = await wake.next_event(
        "adopter",
        "PlanCreated",
        after=applied.seq,
        where=lambda s: s.event.payload.commit == second,
    )
    # Then only what the app created is pruned; the adopted and the cluster's own stay
    assert [(r.kind, r.name) for r in plan.event.payload.prune] == [("ConfigMap", "app-config")]
    await wake.next_event(
        "adopter",
        "ApplySucceeded",
        after=plan.seq,
        where=lambda s: s.event.payload.commit == second,
    )
    assert await wake.kube.get(legacy) is not None
    assert await wake.cluster_object("v1", "Namespace", "kube-system") is not None
    assert await wake.cluster_object("v1", "ConfigMap", "app-config", "legacy") is None
    assert await wake.cluster_object("v1", "ConfigMap", "other", "legacy") is not None
    # And removing the app with --cascade deletes what it created, never what it adopted
    start = await wake.position()
    await wake.wake("app", "remove", "adopter", "--cascade")
    kept = await wake.next_event(
        "adopter",
        "ResourceDeleted",
        after=start,
        where=lambda s: s.event.payload.ref.name == "legacy",
    )
    assert kept.event.payload.action == "kept"
    assert "adopted" in kept.event.payload.reason
    await wake.next_event(
        "adopter",
        "ResourceDeleted",
        after=start,
        where=lambda s: s.event.payload.ref.name == "other",
    )
    assert await wake.kube.get(legacy) is not None


async def manual_app(wake: WakeUnderTest, name: str, *options: str) -> tuple[str, int]:
    """A manual app registered with `options`; its plan id once approval is requested."""
    repo = wake.repository(name)
    first_commit(repo, namespace=name)  # authored by Ada <ada@example.com>
    start = await wake.position()
    await wake.wake(
        "app", "add", name, "--repo", repo.url, "--path", APP_PATH, "--namespace", name,
        "--manual", *options,
    )  # fmt: skip
    requested = await wake.next_event(name, "ApprovalRequested", after=start)
    return requested.event.payload.plan_id, requested.seq


async def test_only_a_projects_approver_may_approve_and_a_refusal_is_recorded(
    wake: WakeUnderTest,
) -> None:
    # Given a project whose approver is boss, and a manual app in it
    await wake.wake(
        "project", "add", "guarded", "--source", "*", "--destination", "/vault",
        "--approver", "user:boss",
    )  # fmt: skip
    plan_id, seq = await manual_app(wake, "vault", "--project", "guarded")
    # When someone else approves its plan
    refused = await wake.wake("approve", plan_id, check=False, actor="user:mallory")
    # Then the CLI says it was refused and why; the refusal is an event; nothing is applied
    assert refused.returncode != 0
    assert (
        f"approval of plan {plan_id} of vault refused: user:mallory may not approve plans of "
        "app 'vault': the approvers of the app and of its project 'guarded' are user:boss"
    ) in refused.stderr
    verdict = await wake.next_event("vault", "ApprovalRefused", after=seq)
    assert verdict.event.payload.approver == "user:mallory"
    assert verdict.event.payload.plan_id == plan_id
    plans = await wake.wake("plans", "vault")
    assert "awaiting-approval" in plans.stdout
    # When the project's approver approves
    approved = await wake.wake("approve", plan_id, actor="user:boss")
    assert "user:boss is an approver of project 'guarded'" in approved.stdout
    # Then the plan is applied, and the refused approval never was
    done = await wake.next_event(
        "vault", "ApplySucceeded", after=seq, where=lambda s: s.event.payload.plan_id == plan_id
    )
    started = [
        s.event for s in await wake.events("vault", after=seq) if s.event.type == "ApplyStarted"
    ]
    assert [e.causation_id for e in started] != [verdict.event.payload.approval_id]
    assert len(started) == 1 and done is not None
    assert await wake.cluster_object("v1", "Namespace", "vault") is not None


async def test_a_separate_approver_is_never_the_commits_author(wake: WakeUnderTest) -> None:
    # Given an app whose approvers are ada and grace, and that wants a separate approver
    plan_id, seq = await manual_app(
        wake, "paper", "--approver", "user:ada", "--approver", "user:grace", "--separate-approver"
    )
    # When Ada, who wrote the commit, approves
    refused = await wake.wake("approve", plan_id, check=False, actor="user:ada")
    # Then it is refused, naming the commit and its author
    assert refused.returncode != 0
    assert "user:ada wrote commit" in refused.stderr
    assert "(Ada <ada@example.com>), and app wants a separate approver" in refused.stderr
    # When Grace approves, it is applied
    approved = await wake.wake("approve", plan_id, actor="user:grace")
    assert "user:grace is an approver of app 'paper'; not the author" in approved.stdout
    await wake.next_event(
        "paper", "ApplySucceeded", after=seq, where=lambda s: s.event.payload.plan_id == plan_id
    )


async def test_an_app_without_approvers_keeps_any_operator_approving(wake: WakeUnderTest) -> None:
    plan_id, seq = await manual_app(wake, "open")
    approved = await wake.wake("approve", plan_id, actor="user:anyone")
    assert "name no approvers: any operator may approve" in approved.stdout
    await wake.next_event(
        "open", "ApplySucceeded", after=seq, where=lambda s: s.event.payload.plan_id == plan_id
    )


async def test_a_project_change_plans_its_apps_again(wake: WakeUnderTest) -> None:
    # Given an app blocked because one of its namespaces is outside its project
    await wake.wake("project", "add", "narrow", "--source", "*", "--destination", "/narrow-a")
    repo = wake.repository("spread")
    commit = repo.commit(
        "two namespaces",
        {
            f"{APP_PATH}/a.yaml": namespace_yaml("narrow-a"),
            f"{APP_PATH}/b.yaml": namespace_yaml("narrow-b"),
            f"{APP_PATH}/cm.yaml": configmap_yaml("settings", "narrow-b"),
        },
    )
    start = await wake.position()
    await wake.wake(
        "app", "add", "spread", "--repo", repo.url, "--path", APP_PATH,
        "--namespace", "narrow-a", "--project", "narrow",
    )  # fmt: skip
    blocked = await wake.next_event("spread", "PlanBlocked", after=start)
    assert len(blocked.event.payload.errors) == 2
    # When the project allows the other namespace too (no new commit)
    changed = await wake.wake(
        "project", "set", "narrow", "--destination", "/narrow-a", "--destination", "/narrow-b"
    )
    assert changed.stdout.startswith("updated project narrow: destinations")
    # Then the app is detected, planned and applied again under the new rules
    await wake.next_event(
        "spread",
        "ApplySucceeded",
        after=blocked.seq,
        where=lambda s: s.event.payload.commit == commit,
    )
    assert await wake.cluster_object("v1", "ConfigMap", "settings", "narrow-b") is not None


async def test_the_cli_refuses_a_project_that_does_not_exist_or_a_source_outside_it(
    wake: WakeUnderTest,
) -> None:
    repo = wake.repository("lost")
    first_commit(repo, namespace="lost")
    common = ("app", "add", "lost", "--repo", repo.url, "--path", APP_PATH, "--namespace", "lost")
    ghost = await wake.wake(*common, "--project", "ghost", check=False)
    assert ghost.returncode != 0
    assert "project 'ghost' does not exist (`wake project add ghost`" in ghost.stderr
    await wake.wake("project", "add", "remote-only", "--source", "https://git.example.com/*")
    outside = await wake.wake(*common, "--project", "remote-only", check=False)
    assert outside.returncode != 0
    assert f"repository {repo.url} is outside project 'remote-only'" in outside.stderr
    bad = await wake.wake("project", "add", "broken", "--destination", "no-slash", check=False)
    assert bad.returncode != 0
    assert "destination 'no-slash' is not CONTEXT/NAMESPACE_GLOB" in bad.stderr
    builtin = await wake.wake("project", "add", "default", check=False)
    assert builtin.returncode != 0 and "`default` is built in" in builtin.stderr
    # An empty value clears a list
    await wake.wake("project", "set", "remote-only", "--approver", "user:x", "--approver", "")
    shown = json.loads((await wake.wake("project", "show", "remote-only", "--json")).stdout)
    assert shown["spec"]["approvers"] == ["user:x"]
    await wake.wake("project", "set", "remote-only", "--approver", "")
    shown = json.loads((await wake.wake("project", "show", "remote-only", "--json")).stdout)
    assert shown["spec"]["approvers"] == [] and shown["apps"] == []
    # A project nobody uses is removed
    await wake.wake("project", "remove", "remote-only")
    listed = await wake.wake("project", "list", "--json")
    assert "remote-only" not in listed.stdout


async def test_a_credential_sent_elsewhere_is_refused_and_the_next_commit_applies(
    wake: WakeUnderTest, forge_env: dict[str, str], tmp_path
) -> None:
    forge_root = tmp_path / "forge"
    repo = SampleRepo.create(forge_root / "private")
    first_commit(repo, namespace="private")
    async with (
        PrivateGitServer(forge_root, username="x-access-token", token=FORGE_TOKEN) as plain,
        PrivateGitServer(
            forge_root, username="x-access-token", token=FORGE_TOKEN, tls=True
        ) as forge,
    ):
        # Given the CLI refuses an app that would send the credential over plain http
        common = ("--path", APP_PATH, "--namespace", "private", "--git-credential", "forge-bot")
        refused = await wake.wake(
            "app", "add", "leaky", "--repo", f"{plain.url}/private", *common,
            check=False, env=forge_env,
        )  # fmt: skip
        assert refused.returncode != 0
        assert "is an HTTPS token and is not sent to" in refused.stderr
        # When such a registration reaches the log anyway (another channel)
        start = await wake.position()
        spec = AppSpec(
            repo_url=f"{plain.url}/private",
            path=APP_PATH,
            namespace="private",
            git_credential="forge-bot",
        )
        await wake.log.append(
            new_event(ApplicationRegistered(spec=spec), app="leaky", actor="user:e2e")
        )
        # Then git-watcher refuses it with one clear SourceFailed, and sends nothing
        failed = await wake.next_event("leaky", "SourceFailed", after=start)
        assert failed.event.payload.error.endswith(
            f"git credential 'forge-bot' is an HTTPS token and is not sent to "
            f"{plain.url}/private: only over https:// (never plain http://)"
        )
        assert plain.requests == []
        # When the app is pointed at the forge the credential is bound to
        await wake.wake(
            "app", "set", "leaky", "--repo", f"{forge.url}/private", env=forge_env
        )  # fmt: skip
        # Then its commit is applied, and the token never reached the log
        await wake.next_event("leaky", "ApplySucceeded", after=failed.seq, timeout=90)
        assert plain.requests == []
        assert [user for _, _, user in forge.requests if user]
    assert await wake.cluster_object("v1", "Namespace", "private") is not None
    everything = [checked_bytes(s.event) for s in await wake.events("leaky")]
    assert all(FORGE_TOKEN.encode() not in data for data in everything)
