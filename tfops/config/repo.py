"""``repo:``: the Git repository tfops follows, and how it fetches it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

from pydantic import AfterValidator, model_validator

from tfops.config.durations import PositiveDuration
from tfops.config.fields import (
    ConfigPath,
    FileRelative,
    SecretEnvName,
    SecretsManagerSecret,
    Section,
    SsmParameter,
    absolute_path,
    at_most_one_source,
)

_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_LIKE = re.compile(r"^[^/]*:")  # git: a colon before the first slash means user@host:path
_URL_SCHEMES = ("https", "http", "ssh", "git", "file")
_SECRET_HINT = (
    "put the token in an environment variable and set repo.token_env to its NAME, "
    "or in a file and set repo.token_file to its path"
)


def is_local_repo_path(url: str) -> bool:
    """True when ``url`` is a filesystem path rather than a URL or ``user@host:path``."""
    return not _URL_SCHEME.match(url) and not _SCP_LIKE.match(url)


def _repo_url(url: str) -> str:
    # The URL is never echoed: a pasted https URL may carry a token.
    url = url.strip()
    if not url:
        raise ValueError("must not be empty")
    if url.startswith("-") or "::" in url:
        raise ValueError(
            "must be a URL, user@host:path or a local path (git options and remote helpers are refused)"
        )
    scheme = _URL_SCHEME.match(url)
    if scheme:
        if scheme.group(1).lower() not in _URL_SCHEMES:
            raise ValueError(
                f"URL scheme {scheme.group(1)!r} is not supported; use one of {', '.join(_URL_SCHEMES)}"
            )
        parts = urlsplit(url)
        embeds_credentials = parts.password is not None or (
            parts.scheme.lower() in ("http", "https") and parts.username is not None
        )
        if embeds_credentials:
            raise ValueError(f"the URL must not carry credentials; set repo.username and {_SECRET_HINT}")
        return url
    if is_local_repo_path(url):
        return str(absolute_path(url))
    return url


def _anchor_local_path(value: Any, anchor: Callable[[Any], Any]) -> Any:
    return anchor(value) if isinstance(value, str) and is_local_repo_path(value.strip()) else value


def _branch(branch: str) -> str:
    branch = branch.strip()
    valid = re.fullmatch(r"[A-Za-z0-9._/-]+", branch) and not (
        branch.startswith(("-", "/", "."))
        or branch.endswith(("/", ".lock", "."))
        or ".." in branch
        or "//" in branch
    )
    if not valid:
        raise ValueError(f"{branch!r} is not a usable branch name")
    return branch


def _username(username: str) -> str:
    if not username or re.search(r"[\s:@/]", username):
        raise ValueError(f"must be a plain user name; {_SECRET_HINT}")
    return username


class RepoSettings(Section):
    inline_secret_hints: ClassVar[Mapping[str, str]] = {"token": _SECRET_HINT, "password": _SECRET_HINT}

    url: Annotated[str, AfterValidator(_repo_url), FileRelative(_anchor_local_path)] | None = None
    branch: Annotated[str, AfterValidator(_branch)] = "main"
    poll_interval: PositiveDuration = 60.0
    checkout_dir: ConfigPath | None = None
    fetch_timeout: PositiveDuration = 120.0
    ssh_key_file: ConfigPath | None = None
    username: Annotated[str, AfterValidator(_username)] | None = None
    token_env: SecretEnvName | None = None
    token_file: ConfigPath | None = None
    token_ssm: SsmParameter | None = None
    token_secretsmanager: SecretsManagerSecret | None = None

    @model_validator(mode="after")
    def _one_token_source(self) -> RepoSettings:
        at_most_one_source(self, "repo", "token")
        return self
