"""Reading the notify file and the credentials it points at (the shell of `notifyfile`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from services.notifier.notifyfile import (
    Credential,
    NotifyConfig,
    NotifyConfigError,
    parse_notify_config,
)
from services.wiring.settings import Settings, env_name

log = logging.getLogger(__name__)


def load_notify_config(settings: Settings) -> NotifyConfig:
    """The notify file of `settings` (an empty config without one); NotifyConfigError if it
    cannot be read or is wrong."""
    if not settings.notify_config.strip():
        return NotifyConfig()
    path = Path(settings.notify_config).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise NotifyConfigError(
            f"{env_name('notify_config')}: cannot read {path}: {exc.strerror}"
        ) from None
    return _relative_to(parse_notify_config(text, source=str(path)), path.resolve().parent)


def _relative_to(config: NotifyConfig, directory: Path) -> NotifyConfig:
    """`config` with its credentials' relative `*_file` paths taken from `directory`
    (the notify file's), as a reader of the file expects."""
    channels = {
        name: replace(
            spec,
            credentials={
                what: replace(c, file=str(directory / Path(c.file).expanduser()))
                if c.file and not Path(c.file).expanduser().is_absolute()
                else c
                for what, c in spec.credentials.items()
            },
        )
        for name, spec in config.channels.items()
    }
    return replace(config, channels=channels)


def groups_of(settings: Settings) -> Mapping[str, tuple[str, ...]]:
    """The groups of approvers of the notify file; none (and an error logged) if it is wrong:
    a group approval is then refused, and everything else goes on."""
    try:
        return load_notify_config(settings).groups
    except NotifyConfigError as exc:
        log.error("groups of approvers unavailable, `group:` approvers match nobody: %s", exc)
        return {}


def read_credential(credential: Credential, environ: Mapping[str, str] | None = None) -> str:
    """The secret `credential` points at; NotifyConfigError naming the field if it is absent
    or empty. The secret itself never appears in a message."""
    environ = os.environ if environ is None else environ
    if credential.env:
        value = environ.get(credential.env, "").strip()
        if not value:
            raise NotifyConfigError(
                f"{credential.field}: environment variable {credential.env} is unset or empty"
            )
        return value
    path = Path(credential.file).expanduser()
    try:
        value = path.read_text().strip()
    except OSError as exc:
        raise NotifyConfigError(f"{credential.field}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise NotifyConfigError(f"{credential.field}: {path} is empty")
    return value
