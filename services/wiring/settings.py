"""Configuration: one documented set of environment variables, `WAKE_<OPTION>`.

Every process of Wake -- `wake up`, `wake run SERVICE`, the CLI commands, a
container from docker-compose -- reads the same variables. Where the
endpoints are not set, they come from `<data dir>/endpoints.json`, which a
running `wake up` or `wake infra up` writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec

ENV_PREFIX = "WAKE_"


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    """Every option, its default, and (in `describe()`) its variable."""

    data_dir: str = ".wake"
    nats_url: str = ""
    database_url: str = ""
    kubeconfig: str = ""
    kube_context: str = ""
    stream_replicas: int = 1
    poll_interval: float = 60.0
    apply_timeout: float = 300.0
    notify_url: str = ""
    notify_secret: str = ""
    notify_events: str = (
        "ApplySucceeded,ApplyFailed,ApprovalRequested,ApprovalRefused,RenderFailed,PlanBlocked"
    )
    notify_retries: int = 5
    notify_config: str = ""
    chat_host: str = "127.0.0.1"
    chat_port: int = 0
    log_level: str = "INFO"
    log_format: str = "text"
    otel_exporter: str = "none"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = -1
    notify_backoff: float = 1.0
    webhook_host: str = "127.0.0.1"
    webhook_port: int = 0
    webhook_secret: str = ""
    webhook_secret_file: str = ""
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_login_digest: str = ""
    git_credentials_dir: str = ""
    render_timeout: float = 60.0
    render_max_bytes: int = 64 * 1024 * 1024
    drift_interval: float = 300.0
    health_interval: float = 2.0
    concurrency: int = 16
    system_namespace: str = "wake"
    server_restarts: int = 5
    nats_credentials: str = ""
    nats_tls_ca: str = ""
    nats_tls_cert: str = ""
    nats_tls_key: str = ""
    bundle_keyring_file: str = ""
    digest_key_file: str = ""
    database_password_file: str = ""
    instance: str = ""
    partitions: int = 1
    replicas: int = 1
    replica_slot: int = -1
    signing_key: str = ""
    admin_public_key: str = ""
    admin_public_key_file: str = ""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    def notify_event_types(self) -> list[str]:
        return [t.strip() for t in self.notify_events.split(",") if t.strip()]


DESCRIPTIONS: dict[str, str] = {
    "data_dir": "Where embedded NATS, PostgreSQL, git mirrors and endpoints.json live.",
    "nats_url": "NATS server with JetStream (default: from endpoints.json).",
    "database_url": "PostgreSQL for read models (default: from endpoints.json).",
    "kubeconfig": "Kubeconfig of the target cluster (default: endpoints.json, then "
    "$KUBECONFIG, then ~/.kube/config).",
    "kube_context": "Kubeconfig context to use (default: the current context).",
    "stream_replicas": "Replicas of the WAKE_EVENTS stream and WAKE_BUNDLES object store (1 "
    "on one machine, 3 in a cluster; default: endpoints.json's, else 1).",
    "poll_interval": "Seconds between two fetches of a repository by git-watcher.",
    "apply_timeout": "Seconds an apply may take before it is failed.",
    "notify_url": "Webhook the notifier POSTs events to (empty: no webhook channel).",
    "notify_secret": "Key of the webhook's X-Wake-Signature (HMAC-SHA256 of the body).",
    "notify_events": "Comma-separated event types the webhook channel receives.",
    "chat_host": "Address the notifier serves chat platforms' requests on (`<chat_url>/slack`, "
    "`/discord`, `/mattermost`).",
    "chat_port": "Port of those requests (0: none; `wake up` picks one and writes endpoints.json's "
    "`chat_url`).",
    "notify_retries": "Attempts per notification before NotificationFailed.",
    "notify_config": "The notify file (YAML): chat channels (Matrix, ...) with their credentials' "
    "files or variables, groups of approvers, and routes of apps and event types to channels "
    "(docs/chatops.md). WAKE_NOTIFY_URL's webhook is a channel beside them.",
    "log_level": "DEBUG, INFO, WARNING or ERROR.",
    "log_format": "text (one line per record, for a terminal) or json (one JSON object per "
    "line: time, level, service, message, app, event_id, trace_id, span_id).",
    "otel_exporter": "OpenTelemetry span exporter (otlp, console or none) when the standard "
    "OTEL_TRACES_EXPORTER is unset; OTEL_EXPORTER_OTLP_ENDPOINT alone means otlp. Spans "
    "also go to Wake's span store (stream WAKE_SPANS) for `wake trace`.",
    "metrics_host": "Address a service serves /metrics, /healthz and /readyz on.",
    "metrics_port": "Port of /metrics, /healthz and /readyz (0: any free port; -1: none; "
    "`wake up` has each service pick a free one and lists them in endpoints.json's `metrics`).",
    "webhook_host": "Address git-watcher's webhook receiver listens on.",
    "webhook_port": "Port of git-watcher's webhook receiver (0: no receiver; `wake up` picks one).",
    "webhook_secret": "Secret every webhook must be signed with (or use webhook_secret_file).",
    "webhook_secret_file": "File holding the webhook secret.",
    "api_host": "Address the console (REST API and web UI, service `api`) listens on.",
    "api_port": "Port of the console (`wake up` picks a free one and writes `api_url` to "
    "endpoints.json).",
    "api_login_digest": "SHA-256 (hex) of the one-time admin login key `wake up` prints as a "
    "link; set by `wake up`, empty: no such link.",
    "git_credentials_dir": "Directory of git credentials, one subdirectory per name holding "
    "`token` (HTTPS) or `ssh_key` (+ optional `known_hosts`).",
    "render_timeout": "Seconds one render may take.",
    "render_max_bytes": "Largest rendered output (and input read) of one render, in bytes.",
    "drift_interval": "Seconds between two drift checks of an app by the applier.",
    "health_interval": "Seconds between two health checks of an app being rolled out.",
    "concurrency": "Apps the renderer, planner, applier and notifier each handle at once; one "
    "app's events are always handled in log order.",
    "server_restarts": "Attempts in a row at restarting embedded NATS or PostgreSQL that died "
    "(0.5 s doubling to 8 s apart) before `wake up` / `wake infra up` give up and exit 1.",
    "notify_backoff": "Seconds before the notifier's first retry of a webhook; doubles with "
    "each retry, with jitter (capped at 60).",
    "nats_credentials": "File (JSON, mode 0600) of `nats.connect` keyword arguments naming the "
    "identity a process connects as: `wake up` sets it per service; the CLI defaults to "
    "endpoints.json's `nats_operator`, `wake run SERVICE` to the data dir's file of SERVICE.",
    "nats_tls_ca": "CA certificate clients verify the NATS server's certificate with.",
    "nats_tls_cert": "Certificate of the NATS server `wake up` / `wake infra up` start: with it "
    "(and the key) every client must use TLS.",
    "nats_tls_key": "Private key of that certificate.",
    "bundle_keyring_file": "Keyring (file, mode 0600) bundles are sealed with (AES-256-GCM); "
    "default: `<data dir>/keys/bundles.keyring`, made by `wake up` / `wake infra up`.",
    "digest_key_file": "Key (file, mode 0600) of the HMAC-SHA256 digests that stand for Secret "
    "values in plans and diffs; default: `<data dir>/keys/digest.key`.",
    "database_password_file": "File holding the password of database_url's role, for a URL "
    "that carries none (docker-compose's secret file).",
    "system_namespace": "The namespace Wake runs in: `wake app remove --cascade` never "
    "deletes it (nor kube-system, kube-public, kube-node-lease, default).",
    "instance": "This process's name in the `instance` of the events it appends (default: "
    "`<service>-<host>-<pid>`).",
    "partitions": "Durable consumers each service's work is split into, each owned by one "
    "replica at a time; the same for every replica, and best not changed on a running "
    "deployment (`wake up --replicas N` sets N).",
    "replicas": "Replicas of each service that share its partitions (`wake up --replicas`).",
    "replica_slot": "Which of the replicas this process is (0..replicas-1): it takes the "
    "partitions p with p % replicas == slot first, the others only when their owner is gone "
    "(-1: it claims the lowest free slot in the KV bucket WAKE_LEASES).",
    "signing_key": "File (JSON, mode 0600) of the Ed25519 key this process signs the events it "
    "appends with; its identity is their actor. Default: a service's key in "
    "`<data dir>/credentials/signing/`; the CLI's, endpoints.json's `signing_key` (the person "
    "who ran `wake up`).",
    "admin_public_key": "The admin's Ed25519 public key (base64), the trust anchor every reader "
    "verifies the key registrations with (default: endpoints.json's `admin_public_key`).",
    "admin_public_key_file": "File holding admin_public_key (docker compose's secret, "
    "`wake infra signing-keys` writes it as `admin.pub`).",
}


class SettingsError(ValueError):
    pass


def env_name(option: str) -> str:
    return ENV_PREFIX + option.upper()


def load_settings(
    overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Settings from `overrides` (command-line flags), then WAKE_* variables, then defaults.

    Endpoints still unset are read from `<data_dir>/endpoints.json` if present.
    A value of the wrong type is an error naming its variable.
    """
    environ = dict(os.environ if environ is None else environ)
    raw: dict[str, Any] = {}
    for option in Settings.__struct_fields__:
        value = environ.get(env_name(option))
        if value is not None and value != "":
            raw[option] = value
    for option, value in (overrides or {}).items():
        if value is not None:
            raw[option] = value
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        field = str(exc).rsplit("`$.", 1)[-1].rstrip("`") if "`$." in str(exc) else ""
        where = f" ({env_name(field)} or --{field.replace('_', '-')})" if field else ""
        raise SettingsError(f"invalid setting{where}: {exc}") from None
    endpoints = read_endpoints(settings.data_path)
    filled = {
        option: endpoints[option]
        for option in ("nats_url", "database_url", "kubeconfig", "admin_public_key")
        if not getattr(settings, option) and endpoints.get(option)
    }
    # A service started by hand next to `wake infra up --nats-cluster 3` must not
    # converge the stream back to one replica.
    if "stream_replicas" not in raw and isinstance(endpoints.get("stream_replicas"), int):
        filled["stream_replicas"] = endpoints["stream_replicas"]
    if not settings.admin_public_key and settings.admin_public_key_file:
        # An explicit file wins over endpoints.json's key.
        path = Path(settings.admin_public_key_file).expanduser()
        try:
            filled["admin_public_key"] = path.read_text().strip()
        except OSError as exc:
            raise SettingsError(
                f"{env_name('admin_public_key_file')}: cannot read {path}: {exc.strerror}"
            ) from None
    settings = msgspec.structs.replace(settings, **filled) if filled else settings
    if settings.database_password_file and settings.database_url:
        settings = msgspec.structs.replace(
            settings, database_url=with_password(settings.database_url, settings)
        )
    return settings


def with_password(url: str, settings: Settings) -> str:
    """`url` with the password of `database_password_file`, unless it carries one already."""
    parts = urlsplit(url)
    if parts.password is not None or parts.hostname is None:
        return url
    path = Path(settings.database_password_file).expanduser()
    try:
        password = path.read_text().strip()
    except OSError as exc:
        raise SettingsError(
            f"{env_name('database_password_file')}: cannot read {path}: {exc.strerror}"
        ) from None
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def read_endpoints(data_dir: Path) -> dict[str, Any]:
    """What a running `wake up`/`wake infra up` published in endpoints.json, or {}."""
    path = data_dir / "endpoints.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise SettingsError(f"{path}: unreadable endpoints file: {exc}") from None


def require_nats(settings: Settings) -> str:
    if not settings.nats_url:
        raise SettingsError(
            f"no NATS server: set {env_name('nats_url')}, or start one with `wake up` "
            f"(looked for {settings.data_path / 'endpoints.json'})"
        )
    return settings.nats_url


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every option, for the README and --help."""
    defaults = Settings()
    return [
        (env_name(option), str(getattr(defaults, option)), DESCRIPTIONS[option])
        for option in Settings.__struct_fields__
    ]
