"""The notify file (`WAKE_NOTIFY_CONFIG`): channels, groups and routes. Pure.

```yaml
channels:
  team:
    type: matrix
    homeserver: http://127.0.0.1:8008
    user_id: "@wake:example.org"
    access_token_file: /path/to/token      # or access_token_env: VARIABLE
    room: "!roomid:example.org"
groups:
  release-managers: ["matrix:@ana:example.org", "slack:U123"]
routes:
  - {apps: ["*"], events: ["*"], channels: [team]}
```

A credential is never in the file: a channel names the file holding it
(`<name>_file`) or the environment variable (`<name>_env`); an inline
`access_token:` is an error. Reading those files and variables is the
shell's (`channels.load_channels`); this module only checks the shape and says
where a mistake is: `FILE:LINE: channels.team.room: ...`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from events.payloads import BY_TYPE
from services.projects.approvers import InvalidApprover, checked_approver
from services.wiring.settings import SettingsError


class NotifyConfigError(SettingsError):
    """A notify file that cannot work; the message names the file, the line and the field."""


@dataclass(frozen=True, slots=True)
class Schema:
    """What a channel type needs: options (None: required) and credentials (True: required)."""

    options: Mapping[str, str | None]
    credentials: Mapping[str, bool]


SCHEMAS: Mapping[str, Schema] = {
    "matrix": Schema(
        options={"homeserver": None, "user_id": None, "room": None},
        credentials={"access_token": True},
    ),
    "slack": Schema(
        options={"channel": None, "api_url": "https://slack.com/api"},
        # Without a signing secret the channel only posts: no buttons, no /wake.
        credentials={"bot_token": True, "signing_secret": False},
    ),
    "discord": Schema(
        # The application's public key (hex; not a secret): with it, buttons and /wake.
        options={"public_key": ""},
        credentials={"webhook_url": True},
    ),
    "mattermost": Schema(
        # actions_url: where Mattermost POSTs button clicks (`<chat_url>/mattermost` as the
        # server reaches it); without it (or the action token) no buttons.
        options={"url": None, "channel_id": None, "actions_url": ""},
        credentials={"bot_token": True, "action_token": False, "slash_token": False},
    ),
    # A Workflows webhook ("Post to a channel when a webhook request is received").
    "teams": Schema(options={}, credentials={"webhook_url": True}),
    "webhook": Schema(options={"url": None}, credentials={"secret": False}),
}


@dataclass(frozen=True, slots=True)
class Credential:
    """Where a secret is: a file (`*_file`) or an environment variable (`*_env`)."""

    field: str
    file: str = ""
    env: str = ""
    line: int = 0


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    name: str
    type: str
    options: Mapping[str, str]
    credentials: Mapping[str, Credential]
    line: int = 0


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """Events of these apps (globs) and types (`*`: all) go to these channels."""

    apps: tuple[str, ...]
    events: tuple[str, ...]
    channels: tuple[str, ...]
    line: int = 0

    def selects(self, app: str, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(app, glob) for glob in self.apps) and (
            "*" in self.events or event_type in self.events
        )


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    source: str = ""
    channels: Mapping[str, ChannelSpec] = field(default_factory=dict)
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    routes: tuple[RouteSpec, ...] = ()
    warnings: tuple[str, ...] = ()

    def channels_for(self, app: str, event_type: str) -> list[str]:
        """The channels that hear of `event_type` events of `app`, in file order."""
        wanted = {c for r in self.routes if r.selects(app, event_type) for c in r.channels}
        return [name for name in self.channels if name in wanted]

    def serves(self, channel: str, app: str) -> bool:
        """Whether any route sends events of `app` to `channel` (a command there may act on it)."""
        return any(
            channel in r.channels and any(fnmatch.fnmatchcase(app, g) for g in r.apps)
            for r in self.routes
        )


class _Node:
    """A YAML value with the line it starts on (1-based)."""

    __slots__ = ("line", "value")

    def __init__(self, value: Any, line: int) -> None:
        self.value = value
        self.line = line


def _located(node: yaml.Node) -> _Node:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        return _Node(
            {str(k.value): (_located(v), k.start_mark.line + 1) for k, v in node.value}, line
        )
    if isinstance(node, yaml.SequenceNode):
        return _Node([_located(item) for item in node.value], line)
    return _Node(yaml.safe_load(yaml.serialize(node)), line)


def parse_notify_config(text: str, *, source: str) -> NotifyConfig:
    """The notify file `text` (read from `source`); NotifyConfigError says where it is wrong."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise NotifyConfigError(f"{where}: not YAML: {getattr(exc, 'problem', exc)}") from None
    if root is None:
        raise NotifyConfigError(f"{source}: empty; it needs `channels` and `routes`")
    top = _located(root)
    parser = _Parser(source)
    mapping = parser.mapping(top, "the file")
    parser.known(mapping, {"channels", "groups", "routes"}, "")
    channels_node = mapping.get("channels")
    if channels_node is None:
        raise NotifyConfigError(f"{source}:{top.line}: channels: missing")
    channels = {
        name: parser.channel(name, node, line)
        for name, (node, line) in parser.mapping(channels_node[0], "channels").items()
    }
    groups: dict[str, tuple[str, ...]] = {}
    if "groups" in mapping:
        for name, (node, _line) in parser.mapping(mapping["groups"][0], "groups").items():
            groups[name] = parser.group(name, node)
    routes_node = mapping.get("routes")
    if routes_node is None:
        raise NotifyConfigError(f"{source}:{top.line}: routes: missing (no channel hears anything)")
    routes = tuple(
        parser.route(i, node, channels)
        for i, node in enumerate(parser.sequence(routes_node[0], "routes"))
    )
    return NotifyConfig(
        source=source,
        channels=channels,
        groups=groups,
        routes=routes,
        warnings=tuple(parser.warnings),
    )


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.warnings: list[str] = []

    def fail(self, line: int, path: str, problem: str) -> NotifyConfigError:
        return NotifyConfigError(f"{self.source}:{line}: {path}: {problem}")

    def mapping(self, node: _Node, path: str) -> dict[str, tuple[_Node, int]]:
        if not isinstance(node.value, dict):
            raise self.fail(node.line, path, "must be a mapping")
        return node.value

    def sequence(self, node: _Node, path: str) -> list[_Node]:
        if not isinstance(node.value, list):
            raise self.fail(node.line, path, "must be a list")
        return node.value

    def string(self, node: _Node, path: str) -> str:
        if (
            not isinstance(node.value, str | int)
            or isinstance(node.value, bool)
            or node.value == ""
        ):
            raise self.fail(node.line, path, "must be a non-empty string")
        return str(node.value)

    def strings(self, node: _Node, path: str) -> tuple[str, ...]:
        items = self.sequence(node, path)
        if not items:
            raise self.fail(node.line, path, "must not be empty")
        return tuple(self.string(item, f"{path}[{i}]") for i, item in enumerate(items))

    def known(self, mapping: Mapping[str, tuple[_Node, int]], allowed: set[str], path: str) -> None:
        for key, (_, line) in mapping.items():
            if key not in allowed:
                where = f"{path}.{key}" if path else key
                raise self.fail(line, where, f"unknown field (known: {', '.join(sorted(allowed))})")

    def channel(self, name: str, node: _Node, line: int) -> ChannelSpec:
        path = f"channels.{name}"
        fields = self.mapping(node, path)
        if "type" not in fields:
            raise self.fail(line, f"{path}.type", f"missing (one of {', '.join(sorted(SCHEMAS))})")
        kind = self.string(fields["type"][0], f"{path}.type")
        schema = SCHEMAS.get(kind)
        if schema is None:
            raise self.fail(
                fields["type"][1],
                f"{path}.type",
                f"{kind!r} is not one of {', '.join(sorted(SCHEMAS))}",
            )
        options: dict[str, str] = {}
        lines = {key: key_line for key, (_, key_line) in fields.items()}
        credentials: dict[str, Credential] = {}
        for key, (value, key_line) in fields.items():
            if key == "type":
                continue
            base, _, how = key.rpartition("_")
            if key in schema.credentials:
                raise self.fail(
                    key_line,
                    f"{path}.{key}",
                    f"a credential is never written in the notify file: name the file holding "
                    f"it ({key}_file) or an environment variable ({key}_env)",
                )
            if base in schema.credentials and how in ("file", "env"):
                if base in credentials:
                    raise self.fail(key_line, f"{path}.{key}", f"{base} is given twice")
                text = self.string(value, f"{path}.{key}")
                credentials[base] = Credential(
                    field=f"{path}.{key}",
                    file=text if how == "file" else "",
                    env=text if how == "env" else "",
                    line=key_line,
                )
            elif key in schema.options:
                options[key] = self.string(value, f"{path}.{key}")
            else:
                known = [*schema.options, *(f"{c}_file|{c}_env" for c in schema.credentials)]
                raise self.fail(
                    key_line,
                    f"{path}.{key}",
                    f"unknown field of a {kind} channel (known: {', '.join(known)})",
                )
        for option, default in schema.options.items():
            if option not in options:
                if default is None:
                    raise self.fail(
                        line, f"{path}.{option}", f"missing (a {kind} channel needs it)"
                    )
                options[option] = default
        for credential, required in schema.credentials.items():
            if required and credential not in credentials:
                raise self.fail(
                    line,
                    f"{path}.{credential}_file",
                    f"missing: a {kind} channel needs {credential}_file or {credential}_env",
                )
        if kind == "matrix":
            self._check_url(options["homeserver"], lines["homeserver"], f"{path}.homeserver")
            if not options["room"].startswith(("!", "#")):
                raise self.fail(
                    lines["room"],
                    f"{path}.room",
                    "must be a room id (!id:server) or alias (#alias:server)",
                )
        if kind == "mattermost":
            self._check_url(options["url"], lines["url"], f"{path}.url")
            if options["actions_url"]:
                self._check_url(options["actions_url"], lines["actions_url"], f"{path}.actions_url")
        if kind == "slack":
            self._check_url(options["api_url"], lines.get("api_url", line), f"{path}.api_url")
        if kind == "discord" and options["public_key"]:
            key = options["public_key"]
            if len(key) != 64 or any(c not in "0123456789abcdefABCDEF" for c in key):
                raise self.fail(
                    lines["public_key"],
                    f"{path}.public_key",
                    "must be the application's Ed25519 public key: 64 hex digits",
                )
        if kind == "webhook":
            self._check_url(options["url"], lines["url"], f"{path}.url")
        return ChannelSpec(
            name=name, type=kind, options=options, credentials=credentials, line=line
        )

    def _check_url(self, url: str, line: int, path: str) -> None:
        if not url.startswith(("http://", "https://")):
            raise self.fail(line, path, f"{url!r} is not an http:// or https:// URL")

    def group(self, name: str, node: _Node) -> tuple[str, ...]:
        path = f"groups.{name}"
        members = []
        for i, item in enumerate(self.sequence(node, path)):
            text = self.string(item, f"{path}[{i}]")
            try:
                member = checked_approver(text)
            except InvalidApprover as exc:
                raise self.fail(item.line, f"{path}[{i}]", str(exc)) from None
            if member.startswith("group:"):
                raise self.fail(item.line, f"{path}[{i}]", "a group cannot hold a group")
            members.append(member)
        return tuple(members)

    def route(self, index: int, node: _Node, channels: Mapping[str, ChannelSpec]) -> RouteSpec:
        path = f"routes[{index}]"
        fields = self.mapping(node, path)
        self.known(fields, {"apps", "events", "channels"}, path)
        if "channels" not in fields:
            raise self.fail(node.line, f"{path}.channels", "missing")
        named = self.strings(fields["channels"][0], f"{path}.channels")
        for i, name in enumerate(named):
            if name not in channels:
                raise self.fail(
                    fields["channels"][1],
                    f"{path}.channels[{i}]",
                    f"no channel {name!r} (defined: {', '.join(channels) or 'none'})",
                )
        apps = self.strings(fields["apps"][0], f"{path}.apps") if "apps" in fields else ("*",)
        events = (
            self.strings(fields["events"][0], f"{path}.events") if "events" in fields else ("*",)
        )
        for event_type in events:
            if event_type != "*" and event_type not in BY_TYPE:
                self.warnings.append(
                    f"{self.source}:{fields['events'][1]}: {path}.events: {event_type!r} is not an "
                    "event type this Wake writes"
                )
        return RouteSpec(apps=apps, events=events, channels=named, line=node.line)
