"""The pure project check: globs, kinds, destinations, sources, credentials, approvers."""

from __future__ import annotations

import pytest

from events.envelope import new_event
from events.payloads import (
    AppSpec,
    PlanApproved,
    ProjectCreated,
    ProjectRemoved,
    ProjectSpec,
    ProjectUpdated,
    ResourceRef,
)
from services.projects.approving import Author, by_policy, verdict, wrote
from services.projects.book import Projects
from services.projects.rules import (
    InvalidRule,
    Missing,
    Project,
    check_spec,
    credential_error,
    default_project,
    never_deleted,
    project_of,
    resource_error,
    source_error,
)

SYSTEM = "wake"


def ref(kind: str, name: str, namespace: str = "", api_version: str = "v1") -> ResourceRef:
    return ResourceRef(api_version=api_version, kind=kind, name=name, namespace=namespace)


def app(**fields: object) -> AppSpec:
    return AppSpec(**{"repo_url": "https://git.example.com/team/shop.git", **fields})


TEAM = Project(
    "team",
    ProjectSpec(
        sources=["https://git.example.com/team/*"],
        destinations=["prod/team-*", "/sandbox"],
        kinds=["apps/*", "/ConfigMap", "/Service"],
        cluster_kinds=["apiextensions.k8s.io/CustomResourceDefinition"],
        credentials=["team-bot"],
    ),
)


def test_the_default_project_allows_the_apps_own_namespace_and_its_namespace_only():
    project = default_project(app(namespace="shop"), system_namespace=SYSTEM)
    assert project.name == "default"
    assert resource_error(ref("ConfigMap", "c", "shop"), project, context="") == ""
    assert resource_error(ref("Namespace", "shop"), project, context="") == ""
    other = resource_error(ref("ConfigMap", "c", "billing"), project, context="")
    assert other == (
        "ConfigMap billing/c is outside project 'default': namespace 'billing' is not among "
        "its destinations (/shop; `--destination`)"
    )
    assert "namespace 'kube-system'" in resource_error(
        ref("Secret", "s", "kube-system"), project, context=""
    )
    binding = ref("ClusterRoleBinding", "own-it", api_version="rbac.authorization.k8s.io/v1")
    assert resource_error(binding, project, context="") == (
        "ClusterRoleBinding own-it is outside project 'default': cluster-scoped kind "
        "rbac.authorization.k8s.io/ClusterRoleBinding is not allowed (allowed: none; "
        "`--allow-cluster-kind`)"
    )
    # On another context, the app's own namespace is not a destination of the app's.
    assert "on context 'west'" in resource_error(
        ref("ConfigMap", "c", "shop"), project, context="west"
    )


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", SYSTEM])
def test_the_default_project_never_allows_the_clusters_or_wakes_namespace(namespace: str):
    project = default_project(app(namespace=namespace), system_namespace=SYSTEM)
    assert project.spec.destinations == []
    assert resource_error(ref("ConfigMap", "c", namespace), project, context="")
    assert resource_error(ref("Namespace", namespace), project, context="")


def test_destinations_match_context_and_namespace_globs_but_never_a_system_namespace_by_glob():
    on = {"context": "prod", "system_namespace": SYSTEM}
    assert resource_error(ref("ConfigMap", "c", "team-a"), TEAM, **on) == ""
    assert resource_error(ref("Namespace", "team-b"), TEAM, **on) == ""
    assert "namespace 'team-a' on context 'staging'" in resource_error(
        ref("ConfigMap", "c", "team-a"), TEAM, context="staging"
    )
    # an empty context is the services' default context
    assert resource_error(ref("ConfigMap", "c", "sandbox"), TEAM, context="") == ""
    assert resource_error(ref("ConfigMap", "c", "sandbox"), TEAM, **on)
    everywhere = Project("all", ProjectSpec(destinations=["*/*", "/*"]))
    assert resource_error(ref("ConfigMap", "c", "anything"), everywhere, **on) == ""
    for protected in ("kube-system", "kube-public", SYSTEM):
        assert resource_error(ref("ConfigMap", "c", protected), everywhere, **on)
    exact = Project("ops", ProjectSpec(destinations=["prod/kube-system"]))
    assert resource_error(ref("ConfigMap", "c", "kube-system"), exact, **on) == ""


def test_kinds_namespaced_and_cluster_scoped():
    on = {"context": "prod"}
    deployment = ref("Deployment", "web", "team-a", "apps/v1")
    assert resource_error(deployment, TEAM, **on) == ""
    secret = resource_error(ref("Secret", "s", "team-a"), TEAM, **on)
    assert secret == (
        "Secret team-a/s is outside project 'team': kind /Secret is not allowed "
        "(allowed: apps/*, /ConfigMap, /Service; `--allow-kind`)"
    )
    crd = ref("CustomResourceDefinition", "x.example.com", api_version="apiextensions.k8s.io/v1")
    assert resource_error(crd, TEAM, **on) == ""
    role = ref("ClusterRole", "r", api_version="rbac.authorization.k8s.io/v1")
    assert "cluster-scoped kind rbac.authorization.k8s.io/ClusterRole" in resource_error(
        role, TEAM, **on
    )
    # no --allow-kind: every namespaced kind
    open_kinds = Project("open", ProjectSpec(destinations=["prod/x"]))
    assert resource_error(ref("Secret", "s", "x"), open_kinds, **on) == ""
    # listing /Namespace allows no namespace the destinations do not
    namespaces = Project("ns", ProjectSpec(destinations=["prod/x"], cluster_kinds=["/Namespace"]))
    assert resource_error(ref("Namespace", "y"), namespaces, **on)


def test_a_missing_project_blocks_everything_and_names_the_fix():
    missing = project_of(app(project="ghost"), {}, system_namespace=SYSTEM)
    assert missing == Missing("ghost")
    error = resource_error(ref("ConfigMap", "c", "default"), missing, context="")
    assert "project 'ghost' does not exist (`wake project add ghost`" in error
    assert project_of(app(project="team"), {"team": TEAM.spec}, system_namespace=SYSTEM) == TEAM


def test_sources_and_credentials():
    url = "https://git.example.com/team/shop.git"
    assert source_error(url, TEAM) == ""
    assert source_error("https://git.example.com/other/x.git", TEAM) == (
        "repository https://git.example.com/other/x.git is outside project 'team': no source "
        "pattern matches it (sources: https://git.example.com/team/*; `--source`)"
    )
    # the one spelling of the URL matches too (host case, trailing slash)
    assert (
        source_error(
            "HTTPS://GIT.example.com/team/shop.git/",
            TEAM,
            normalized="https://git.example.com/team/shop.git",
        )
        == ""
    )
    assert credential_error("", TEAM) == ""
    assert credential_error("team-bot", TEAM) == ""
    assert credential_error("ops-bot", TEAM) == (
        "git credential 'ops-bot' is not allowed by project 'team' (credentials: team-bot; "
        "`--credential`)"
    )
    default = default_project(app(), system_namespace=SYSTEM)
    assert source_error("http://anywhere/x", default) == ""
    assert credential_error("any-bot", default) == ""


def test_malformed_rules_are_refused_naming_them():
    with pytest.raises(InvalidRule, match="destination 'team-a' is not CONTEXT/NAMESPACE_GLOB"):
        check_spec(ProjectSpec(destinations=["team-a"]))
    with pytest.raises(InvalidRule, match="kind 'Deployment' is not GROUP/KIND"):
        check_spec(ProjectSpec(kinds=["Deployment"]))
    check_spec(TEAM.spec)


def test_namespaces_never_deleted():
    assert never_deleted(ref("Namespace", "kube-system"), system_namespace=SYSTEM)
    assert never_deleted(ref("Namespace", "default"), system_namespace=SYSTEM)
    assert never_deleted(ref("Namespace", SYSTEM), system_namespace=SYSTEM) == (
        "namespace wake is Wake's own"
    )
    assert never_deleted(ref("Namespace", "shop"), system_namespace=SYSTEM) == ""
    assert never_deleted(ref("ConfigMap", "kube-system", "x"), system_namespace=SYSTEM) == ""


def test_the_projects_fold_only_from_wakes_own_subject():
    projects = Projects()
    created = new_event(ProjectCreated(name="team", spec=TEAM.spec), app="_wake", actor="user:a")
    assert projects.add(3, created) == "team"
    forged = new_event(ProjectRemoved(name="team"), app="shop", actor="user:a")
    assert projects.add(4, forged) is None
    updated = new_event(
        ProjectUpdated(name="team", spec=ProjectSpec(), changed=["sources"]),
        app="_wake",
        actor="user:a",
    )
    assert projects.add(5, updated) == "team"
    assert projects.specs == {"team": ProjectSpec()} and projects.changed_at == {"team": 5}
    assert projects.add(6, new_event(ProjectRemoved(name="team"), app="_wake", actor="x"))
    assert projects.specs == {}


ADA = Author("Ada Lovelace", "ada@example.com")
COMMIT = "3" * 40


def judge(approver: str, spec: AppSpec, project: Project | Missing | None = None, author=ADA):
    return verdict(
        approver=approver, app="shop", spec=spec, project=project, commit=COMMIT, author=author
    )


def test_no_approvers_anywhere_lets_any_operator_approve():
    decided = judge("user:anyone", app(), default_project(app(), system_namespace=SYSTEM))
    assert decided.accepted
    assert "name no approvers: any operator may approve" in decided.reason


def test_no_approvers_anywhere_lets_a_console_token_approve_but_nobody_from_chat():
    # The api checked the token's role and apps; chat people need naming (issue 12)
    project = default_project(app(), system_namespace=SYSTEM)
    assert judge("token:ci-bot", app(), project).accepted
    refused = judge("matrix:@ana:example.org", app(), project)
    assert not refused.accepted and "only the CLI may approve" in refused.reason


def test_only_the_apps_or_its_projects_approvers_may_approve():
    team = Project("team", ProjectSpec(approvers=["user:grace"]))
    spec = app(project="team", approvers=["user:bob"])
    assert judge("user:bob", spec, team).reason == "user:bob is an approver of app 'shop'"
    assert judge("user:grace", spec, team).reason == "user:grace is an approver of project 'team'"
    refused = judge("user:mallory", spec, team)
    assert not refused.accepted
    assert refused.reason == (
        "user:mallory may not approve plans of app 'shop': the approvers of the app and of "
        "its project 'team' are user:bob, user:grace"
    )
    assert not judge("user:bob", None).accepted
    assert "no project that exists" in judge("user:bob", spec, Missing("team")).reason


def test_a_separate_approver_is_never_the_commits_author():
    spec = app(separate_approver=True)
    refused = judge("user:ada", spec)
    assert not refused.accepted
    assert refused.reason == (
        f"user:ada wrote commit {COMMIT[:12]} (Ada Lovelace <ada@example.com>), and app wants "
        "a separate approver (--separate-approver)"
    )
    assert judge("user:grace", spec).accepted
    assert not judge("user:grace", spec, author=None).accepted
    project = Project("team", ProjectSpec(separate_approver=True))
    assert "project 'team' wants a separate approver" in judge("user:ada", app(), project).reason
    assert wrote("user:ADA@example.com", ADA) and wrote("user:ada lovelace", ADA)
    assert not wrote("user:adam", ADA) and not wrote("", ADA)


def test_only_the_planners_own_policy_approval_needs_no_verdict():
    assert by_policy(new_event(PlanApproved(plan_id="p"), app="shop", actor="service:planner"))
    assert not by_policy(
        new_event(PlanApproved(plan_id="p", via="cli"), app="shop", actor="service:planner")
    )
    assert not by_policy(new_event(PlanApproved(plan_id="p"), app="shop", actor="user:policy"))
