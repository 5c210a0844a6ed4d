"""The checks every App makes before it opens or writes anything, and `tfops check-config`'s.

A configuration these refuse leaves no database, directory or file behind: each failure is a
ConfigError that names the field.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from tfops.config import Settings, check_serving, check_slack_channel
from tfops.errors import ConfigError

_T = TypeVar("_T")


def preflight(settings: Settings, environ: Mapping[str, str]) -> str:
    """The checks every App makes before it opens anything: the Terraform binary, the repository,
    its credentials and Slack's. Returns the binary's path. ConfigError names the field."""
    binary = resolve_binary(settings.terraform.binary, dict(environ))
    settings.require_repo_url()
    settings.repo_token()
    check_slack_channel(settings)
    if settings.slack.enabled:
        settings.slack_token()
    return binary


def check_startable(settings: Settings, environ: Mapping[str, str]) -> str:
    """Everything `tfops serve` checks before it starts (`App`, then `build_listeners`), for
    `tfops check-config`: its exit 0 means the daemon will start. Returns the binary's path."""
    binary = preflight(settings, environ)
    check_serving(settings)
    return binary


def needed(value: _T | None, what: str) -> _T:
    """A value the configuration checks (`preflight`, `check_serving`) already required."""
    if value is None:
        raise ConfigError(f"{what}: not set", hint="run tfops check-config")
    return value


def resolve_binary(binary: str, environ: dict) -> str:
    """An absolute path to Terraform (or OpenTofu), or a ConfigError that says what to install."""
    if os.sep in binary:
        path = Path(binary).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ConfigError(f"terraform.binary: {binary} is not an executable file")
        return str(path)
    found = shutil.which(binary, path=environ.get("PATH"))
    if found is None:
        raise ConfigError(
            f"terraform.binary: {binary!r} was not found on PATH",
            hint="install Terraform or OpenTofu, or set terraform.binary to its absolute path",
        )
    return found
