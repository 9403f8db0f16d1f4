"""The notify file (WAKE_NOTIFY_CONFIG), approver IDs and chat commands: pure, no servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from events import new_event
from events.payloads import ApplySucceeded, AppSpec, PlanApproved
from events.samples import sample_payloads
from services.notifier import commands
from services.notifier.notifyconfig import load_notify_config, read_credential
from services.notifier.notifyfile import NotifyConfigError, parse_notify_config
from services.notifier.routing import file_webhooks, route
from services.projects import approving
from services.projects.approvers import InvalidApprover, checked_approver
from services.wiring.settings import Settings

FILE = """\
channels:
  team:
    type: matrix
    homeserver: http://127.0.0.1:8008
    user_id: "@wake:example.org"
    access_token_file: /run/secrets/matrix
    room: "!roomid:example.org"
  audit:
    type: webhook
    url: https://audit.example.com/wake
    secret_env: AUDIT_SECRET
groups:
  release-managers: ["matrix:@ana:example.org", "slack:U123", "cli:grace"]
routes:
  - {apps: ["*"], events: ["*"], channels: [team]}
  - {apps: ["shop-*"], events: [ApplySucceeded], channels: [audit]}
"""


def test_the_contract_s_example_parses_into_channels_groups_and_routes():
    config = parse_notify_config(FILE, source="notify.yaml")
    team = config.channels["team"]
    assert team.type == "matrix" and team.options["room"] == "!roomid:example.org"
    assert team.credentials["access_token"].file == "/run/secrets/matrix"
    assert config.groups["release-managers"] == (
        "matrix:@ana:example.org",
        "slack:U123",
        "user:grace",
    )
    assert config.channels_for("shop-eu", "ApplySucceeded") == ["team", "audit"]
    assert config.channels_for("billing", "ApplySucceeded") == ["team"]
    assert config.serves("audit", "shop-eu") and not config.serves("audit", "billing")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("access_token_file: /run/secrets/matrix", "access_token: syt_abc"),
            "notify.yaml:6: channels.team.access_token: a credential is never written in the "
            "notify file",
        ),
        (("room:", "rom:"), "notify.yaml:7: channels.team.rom: unknown field of a matrix channel"),
        (("type: matrix", "type: irc"), "notify.yaml:3: channels.team.type: 'irc' is not one of"),
        (("channels: [audit]", "channels: [audti]"), "notify.yaml:16: routes[1].channels[0]: no"),
        (('"slack:U123"', '"slack:u-1"'), "notify.yaml:13: groups.release-managers[1]: approver"),
        (("url: https://", "url: ftp://"), "notify.yaml:10: channels.audit.url: 'ftp://"),
        (("routes:", "rutes:"), "notify.yaml:14: rutes: unknown field"),
    ],
)
def test_a_mistake_is_named_by_file_line_and_field(change, message):
    with pytest.raises(NotifyConfigError) as raised:
        parse_notify_config(FILE.replace(*change), source="notify.yaml")
    assert str(raised.value).startswith(message)
    assert "syt_abc" not in str(raised.value)


def test_a_missing_credential_names_its_field_never_a_value(tmp_path):
    config = parse_notify_config(FILE, source="notify.yaml")
    credential = config.channels["audit"].credentials["secret"]
    with pytest.raises(
        NotifyConfigError, match=r"channels\.audit\.secret_env: environment variable"
    ):
        read_credential(credential, environ={})
    assert read_credential(credential, environ={"AUDIT_SECRET": " s3cret\n"}) == "s3cret"
    with pytest.raises(NotifyConfigError, match=r"channels\.team\.access_token_file: cannot read"):
        read_credential(config.channels["team"].credentials["access_token"], environ={})


def test_a_webhook_channel_of_the_file_hears_what_its_routes_send_it():
    config = parse_notify_config(FILE, source="notify.yaml")
    [audit] = file_webhooks(config, {"audit": "k"})
    applied = next(p for p in sample_payloads() if isinstance(p, ApplySucceeded))
    from services.notifier.routing import Routes

    routes = Routes(channels=(audit,))
    assert [
        m.channel for m in route(new_event(applied, app="shop-eu", actor="t"), seq=1, routes=routes)
    ] == ["audit"]
    assert route(new_event(applied, app="billing", actor="t"), seq=1, routes=routes) == []


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("matrix:@ana:example.org", "matrix:@ana:example.org"),
        ("slack:U123ABC", "slack:U123ABC"),
        ("mattermost:ana.b", "mattermost:ana.b"),
        ("discord:80351110224678912", "discord:80351110224678912"),
        ("group:release-managers", "group:release-managers"),
        ("cli:ana", "user:ana"),
        ("user:ana", "user:ana"),
    ],
)
def test_approver_ids_of_every_platform_are_accepted(given, stored):
    assert checked_approver(given) == stored


@pytest.mark.parametrize("bad", ["ana", "matrix:ana", "slack:", "discord:ana", "irc:ana", "group:"])
def test_an_approver_id_of_no_known_form_is_refused(bad):
    with pytest.raises(InvalidApprover, match="is not one of matrix:@user:server"):
        checked_approver(bad)


def test_commands_parse_and_plans_resolve_by_a_unique_prefix():
    assert commands.parse("!wake approve 01a2164a") == commands.Command("approve", plan="01a2164a")
    assert commands.parse("!wake reject 01a2164a not now") == commands.Command(
        "reject", plan="01a2164a", reason="not now"
    )
    assert commands.parse("rollback shop 3f1e9a4") == commands.Command(
        "rollback", app="shop", target="3f1e9a4"
    )
    for bad in ("!wake", "!wake reject 01a2164a", "!wake deploy", "!wake sync"):
        with pytest.raises(commands.CommandError):
            commands.parse(bad)
    ids = ["01a2164a-0000", "01a2164b-0000", "9f00aa11-0000"]
    assert commands.resolve_plan("9f00aa11", ids) == "9f00aa11-0000"
    with pytest.raises(commands.CommandError, match="at least its first 8"):
        commands.resolve_plan("9f00", ids)
    with pytest.raises(commands.CommandError, match="ambiguous"):
        commands.resolve_plan("01a2164a", [*ids, "01a2164a-1111"])
    with pytest.raises(commands.CommandError, match="unknown plan"):
        commands.resolve_plan("77777777", ids)


def test_a_plan_is_refused_when_elsewhere_superseded_decided_or_expired():
    now = datetime(2026, 1, 10, tzinfo=UTC)
    plan = commands.PlanFacts("01a2164a-0", "shop", "awaiting-approval", now - timedelta(hours=1))
    assert commands.place_refusal(plan, channel_serves=True) is None
    assert commands.state_refusal(plan, now=now) is None
    assert "does not serve" in commands.place_refusal(plan, channel_serves=False)
    assert "not of this thread's 'billing'" in commands.place_refusal(
        plan, channel_serves=True, thread_app="billing"
    )
    for status, why in (("superseded", "superseded"), ("applied", "is applied, not awaiting")):
        moved = commands.PlanFacts(plan.plan_id, "shop", status, plan.created_at)
        assert why in commands.state_refusal(moved, now=now)
    old = commands.PlanFacts(plan.plan_id, "shop", "awaiting-approval", now - timedelta(days=8))
    assert "expired" in commands.state_refusal(old, now=now)


def test_who_may_give_a_command_from_chat():
    groups = {"rm": ("matrix:@ana:example.org",)}
    ana, bob = "matrix:@ana:example.org", "matrix:@bob:example.org"
    kwargs = {"app": "shop", "groups": groups}
    assert commands.requester_refusal(ana, verb="approve", approvers=["group:rm"], **kwargs) is None
    assert "may not rollback" in commands.requester_refusal(
        bob, verb="rollback", approvers=["group:rm"], **kwargs
    )
    assert "only the CLI" in commands.requester_refusal(ana, verb="sync", approvers=[], **kwargs)
    assert commands.requester_refusal(bob, verb="status", approvers=["group:rm"], **kwargs) is None


def test_the_planner_accepts_a_chat_approver_in_person_or_through_a_group():
    def judged(approver, approvers, groups=None):
        return approving.verdict(
            approver=approver,
            app="shop",
            spec=AppSpec(repo_url="r", path="p", namespace="n", approvers=approvers),
            project=None,
            commit="c" * 40,
            author=None,
            groups=groups,
        )

    ana = "matrix:@ana:example.org"
    assert judged(ana, [ana]).accepted
    through = judged(ana, ["group:rm"], {"rm": (ana,)})
    assert through.accepted and "(in group:rm)" in through.reason
    assert not judged(ana, ["group:rm"], {}).accepted
    assert not judged("slack:U1", ["group:rm"], {"rm": (ana,)}).accepted
    # An app without approvers: any CLI user, nobody from chat
    assert judged("user:ana", []).accepted
    assert "only the CLI may approve" in judged(ana, []).reason
    assert not judged(ana, []).accepted
    assert PlanApproved(plan_id="p").display_name == ""  # old events decode as before


def test_a_relative_credential_file_is_the_notify_file_s_neighbour(tmp_path):
    (tmp_path / "notify.yaml").write_text(FILE.replace("/run/secrets/matrix", "matrix.token"))
    (tmp_path / "matrix.token").write_text("syt_token\n")
    config = load_notify_config(Settings(notify_config=str(tmp_path / "notify.yaml")))
    credential = config.channels["team"].credentials["access_token"]
    assert read_credential(credential, environ={}) == "syt_token"
    with pytest.raises(NotifyConfigError, match=r"WAKE_NOTIFY_CONFIG: cannot read"):
        load_notify_config(Settings(notify_config=str(tmp_path / "missing.yaml")))
