"""tfops configuration: one YAML file plus ``TFOPS_*`` environment overrides, validated once at start.

Where settings come from, highest precedence first:

1. the environment: ``TFOPS_`` + the dotted path with ``__`` between levels
   (``TFOPS_REPO__BRANCH=dev``, ``TFOPS_TERRAFORM__MAX_PARALLEL=8``); lists and
   mappings are JSON (``TFOPS_TERRAFORM__ENV_PASSTHROUGH='["AWS_*"]'``);
2. the YAML file: the ``path`` given to :func:`load_settings`, else ``$TFOPS_CONFIG``,
   else ``./tfops.yaml`` when it exists (only this last one may be absent);
3. the defaults below (config/tfops.example.yaml lists every option with its default).

Relative paths in the file resolve against the file's directory, relative paths in the
environment against the working directory; ``~`` expands in both. Unknown keys are
errors, so a typo never silently falls back to a default.

Every problem found is reported at once, one per line, as
``<file>: <dotted.field.path>: <reason>`` (``environment TFOPS_X`` instead of the file
for values from the environment). Messages never show the value of a field that can
hold a secret. Secrets themselves are never configuration values: ``repo.token_env``
names an environment variable and ``repo.token_file`` a file, read by
:meth:`Settings.repo_token` when a fetch needs them.

``Settings(...)`` validates exactly what it is given; :func:`load_settings` is the one
place that reads files and the environment.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from tfops.errors import ConfigError, StackPathError
from tfops.models import OnDrift, OnMerge
from tfops.stacks import validate_stack_name, validate_stack_path

__all__ = [
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "Duration",
    "RepoSettings",
    "Settings",
    "SlackSettings",
    "StackDefaults",
    "StackEntry",
    "StoreSettings",
    "TerraformSettings",
    "default_data_dir",
    "describe",
    "format_duration",
    "load_settings",
    "parse_duration",
]

ENV_PREFIX = "TFOPS_"
CONFIG_ENV_VAR = "TFOPS_CONFIG"
DEFAULT_CONFIG_FILE = "tfops.yaml"


# --------------------------------------------------------------------------- durations

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_TEXT = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90"``, ``"1500ms"``, ``"30s"``, ``"10m"``, ``"2h"``, ``"1h30m"``, ``"1d"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        # ValueError, not TypeError: pydantic turns only ValueError into a field error.
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    seconds = float(value) if not isinstance(value, str) else _parse_duration_text(value)
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    if seconds < 0:
        raise ValueError(f"a duration must not be negative — got {value!r}")
    return seconds


_DURATION_HELP = "use seconds (90) or a number with a unit: 1500ms, 30s, 10m, 2h, 1h30m, 1d"


def _parse_duration_text(value: str) -> float:
    text = value.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    magnitude = text.removeprefix("-")
    if not _DURATION_TEXT.fullmatch(magnitude):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(magnitude))
    return -seconds if magnitude != text else seconds


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration` for display: 5400 → ``"1h30m"``, 0.5 → ``"500ms"``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole, fraction = int(seconds), seconds - int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    rest = round(whole + fraction, 3)
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]


# --------------------------------------------------------------------------- field types


def _absolute_path(value: object) -> object:
    if isinstance(value, str | Path):
        if not str(value).strip():
            raise ValueError("must not be empty")
        return Path(os.path.abspath(Path(value).expanduser()))
    return value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _env_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{name!r} is not an environment variable name (letters, digits and '_')")
    return name


def _env_name_pattern(pattern: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", pattern):
        raise ValueError(f"{pattern!r} must be an environment variable name, or a prefix ending in '*'")
    return pattern


def _regex(pattern: str) -> str:
    # The pattern is not echoed: people put literal secrets in redaction lists.
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc.msg} at position {exc.pos})") from None
    if compiled.fullmatch(""):
        raise ValueError("the pattern matches the empty string, so it would redact everything")
    return pattern


def _stack_path(value: str) -> str:
    try:
        return validate_stack_path(value)
    except StackPathError as exc:
        raise PydanticCustomError("stack_path", "{reason}", {"reason": str(exc.args[0])}) from None


def _stack_name(value: str) -> str:
    try:
        return validate_stack_name(value)
    except ConfigError as exc:
        raise ValueError(str(exc.args[0])) from None


def _scalars_as_text(env: object) -> object:
    # YAML reads `TF_VAR_count: 3` as a number and `TF_VAR_on: true` as a boolean;
    # Terraform reads both back from text, and HCL spells booleans in lower case.
    if not isinstance(env, Mapping):
        return env
    return {
        key: (str(value).lower() if isinstance(value, bool) else str(value))
        if isinstance(value, bool | int | float)
        else value
        for key, value in env.items()
    }


class FrozenDict(dict):
    """A dict that refuses changes, so that a frozen model cannot be edited through its mappings."""

    def _read_only(self, *args: object, **kwargs: object) -> None:
        raise TypeError("tfops settings are read-only after loading")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only  # type: ignore[assignment]

    def __deepcopy__(self, memo: dict) -> FrozenDict:
        return self

    def __reduce__(self) -> tuple:
        return (FrozenDict, (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


ConfigPath = Annotated[Path, BeforeValidator(_absolute_path)]
EnvName = Annotated[str, AfterValidator(_env_name)]
EnvNamePattern = Annotated[str, AfterValidator(_env_name_pattern)]
RegexPattern = Annotated[str, AfterValidator(_regex)]
StackPath = Annotated[str, AfterValidator(_stack_path)]
StackName = Annotated[str, AfterValidator(_stack_name)]
EnvMapping = Annotated[dict[EnvName, str], BeforeValidator(_scalars_as_text), AfterValidator(FrozenDict)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- repo

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
        return str(_absolute_path(url))
    return url


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


def _token_env(name: str) -> str:
    # Not echoed either: the usual mistake is pasting the token itself here.
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(
            "must be the NAME of an environment variable holding the token (letters, digits and '_'), "
            "not the token itself"
        )
    return name


class RepoSettings(_Section):
    url: Annotated[str, AfterValidator(_repo_url)] | None = None
    branch: Annotated[str, AfterValidator(_branch)] = "main"
    poll_interval: PositiveDuration = 60.0
    checkout_dir: ConfigPath | None = None
    fetch_timeout: PositiveDuration = 120.0
    ssh_key_file: ConfigPath | None = None
    username: Annotated[str, AfterValidator(_username)] | None = None
    token_env: Annotated[str, AfterValidator(_token_env)] | None = None
    token_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _one_token_source(self) -> RepoSettings:
        if self.token_env and self.token_file:
            raise ValueError("set repo.token_env or repo.token_file, not both")
        return self


# --------------------------------------------------------------------------- terraform, store


def _binary(binary: str) -> str:
    binary = binary.strip()
    if not binary or binary.startswith("-"):
        raise ValueError("must be a command name such as terraform or tofu, or a path to one")
    # A bare name is looked up on PATH when a run starts; anything with a slash is a path.
    return str(_absolute_path(binary)) if "/" in binary or binary.startswith("~") else binary


class TerraformSettings(_Section):
    binary: Annotated[str, AfterValidator(_binary)] = "terraform"
    cli_config: ConfigPath | None = None
    plugin_cache_dir: ConfigPath | None = None
    max_parallel: int = Field(default=4, ge=1)
    timeout: PositiveDuration = 1800.0
    lock_timeout: Duration = 300.0  # 0 is Terraform's own default: fail at once when the state is locked
    stop_grace: PositiveDuration = 60.0
    env_passthrough: tuple[EnvNamePattern, ...] = ()


_DATABASE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+_-]*://")
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def mask_url_password(url: str) -> str:
    """``postgresql://tfops:s3cret@db/tfops`` → ``postgresql://tfops:***@db/tfops``."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def _database_url(url: str) -> str:
    url = url.strip()
    if not _DATABASE_URL.match(url):
        raise ValueError(
            "must be a database URL such as sqlite:////var/lib/tfops/tfops.db or postgresql://host/db"
        )
    return url


class StoreSettings(_Section):
    url: Annotated[str, AfterValidator(_database_url)] | None = None

    def __repr_args__(self):  # a PostgreSQL URL may hold a password
        yield "url", mask_url_password(self.url) if self.url else None


# --------------------------------------------------------------------------- slack


def _slack_secret_hint(name: str) -> str:
    return (
        f"put it in an environment variable and set slack.{name}_env to its NAME, "
        f"or in a file and set slack.{name}_file to its path"
    )


_SLACK_CHANNEL = re.compile(r"[A-Za-z0-9#][A-Za-z0-9._#-]{0,79}")  # an id (C0123...) or a #name
_SLACK_MENTION = re.compile(r"S[A-Z0-9]{1,30}")
_SLACK_APPROVER = re.compile(r"[UWS][A-Z0-9]{1,30}")  # a user id (U…, W… on Enterprise Grid) or a group (S…)


def _slack_channel(channel: str) -> str:
    channel = channel.strip()
    if not _SLACK_CHANNEL.fullmatch(channel):
        raise ValueError("must be a Slack channel id such as C0123ABCD (or a channel name)")
    return channel


def _slack_mention(group: str) -> str:
    if not _SLACK_MENTION.fullmatch(group):
        raise ValueError("must be a Slack user group id such as S0123ABCD")
    return group


def _slack_base_url(url: str) -> str:
    if urlsplit(url).scheme not in ("https", "http") or not url.endswith("/"):
        raise ValueError("must be an http(s) URL ending in '/', such as https://slack.com/api/")
    return url


def _slack_approver(approver: str) -> str:
    approver = approver.strip()
    if not _SLACK_APPROVER.fullmatch(approver):
        raise ValueError(
            f"{approver!r} is not a Slack user id (U0123ABCD) or user group id (S0123ABCD); "
            "names and @handles can be renamed, ids cannot"
        )
    return approver


SlackChannel = Annotated[str, AfterValidator(_slack_channel)]
SlackApprover = Annotated[str, AfterValidator(_slack_approver)]


class SlackSettings(_Section):
    """Slack delivery; enabled exactly when a bot token source is set."""

    bot_token_env: Annotated[str, AfterValidator(_token_env)] | None = None
    bot_token_file: ConfigPath | None = None
    channel: SlackChannel | None = None  # the default channel for every stack
    channels: Annotated[dict[str, SlackChannel], AfterValidator(FrozenDict)] = Field(
        default_factory=FrozenDict
    )
    mention: Annotated[str, AfterValidator(_slack_mention)] | None = None  # paged on failures
    base_url: Annotated[str, AfterValidator(_slack_base_url)] = "https://slack.com/api/"
    timeout: PositiveDuration = 30.0
    # How button clicks reach tfops: Socket Mode needs no inbound port; HTTP mode needs `http.listen`.
    mode: Annotated[Literal["socket", "http"], BeforeValidator(_lower)] = "socket"
    app_token_env: Annotated[str, AfterValidator(_token_env)] | None = None  # Socket Mode (xapp-…)
    app_token_file: ConfigPath | None = None
    signing_secret_env: Annotated[str, AfterValidator(_token_env)] | None = None  # HTTP mode
    signing_secret_file: ConfigPath | None = None
    usergroup_cache: PositiveDuration = 300.0  # how long approver group members are trusted

    @property
    def enabled(self) -> bool:
        return bool(self.bot_token_env or self.bot_token_file)

    @property
    def interactive(self) -> bool:
        """Whether button clicks can reach tfops (the other transport's settings are ignored)."""
        if self.mode == "http":
            return bool(self.signing_secret_env or self.signing_secret_file)
        return bool(self.app_token_env or self.app_token_file)

    @model_validator(mode="after")
    def _one_token_source(self) -> SlackSettings:
        for name in ("bot_token", "app_token", "signing_secret"):
            if getattr(self, f"{name}_env") and getattr(self, f"{name}_file"):
                raise ValueError(f"set slack.{name}_env or slack.{name}_file, not both")
        return self

    def channel_for(self, stack: str) -> str | None:
        return self.channels.get(stack, self.channel)


# --------------------------------------------------------------------------- http


def _listen(value: str) -> str:
    value = value.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be HOST:PORT, such as 127.0.0.1:8080 or [::1]:8080")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError("put an IPv6 address in brackets, such as [::1]:8080")
    return value


class HttpSettings(_Section):
    """The daemon's HTTP server: health, metrics, webhooks, the API, Slack's HTTP mode. Off unless
    `listen` is set."""

    listen: Annotated[str, AfterValidator(_listen)] | None = None
    tls_cert: ConfigPath | None = None
    tls_key: ConfigPath | None = None
    max_body: Annotated[int, Field(gt=0)] = 1 << 20  # bytes; larger requests get 413

    @model_validator(mode="after")
    def _cert_with_key(self) -> HttpSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("set both http.tls_cert and http.tls_key, or neither")
        return self


# --------------------------------------------------------------------------- webhooks and API


class SecretRef(_Section):
    """Where a webhook secret is: an environment variable's NAME, or a file. Never the value."""

    secret_env: Annotated[str, AfterValidator(_token_env)] | None = None
    secret_file: ConfigPath | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if bool(self.secret_env) == bool(self.secret_file):
            raise ValueError("set exactly one of secret_env (a variable's NAME) or secret_file")
        return self


class WebhookSettings(_Section):
    """Webhooks ask for a fetch now; each route is on only when its secret is configured."""

    # Another name payloads may carry (repo.url and its owner/name path are always accepted);
    # needed when repo.url is a local path or a mirror, e.g. acme/infra.
    repository: str | None = None
    debounce: Duration = 0.1  # hints within this window after the first become one fetch
    github: SecretRef | None = None  # X-Hub-Signature-256
    gitlab: SecretRef | None = None  # X-Gitlab-Token
    gitea: SecretRef | None = None  # X-Gitea-Signature (Forgejo too)
    generic: SecretRef | None = None  # Authorization: Bearer

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(name for name in ("github", "gitlab", "gitea", "generic") if getattr(self, name))


_API_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def _api_token_name(name: str) -> str:
    if not _API_TOKEN_NAME.fullmatch(name):
        raise ValueError(
            "must be 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
        )
    return name


class ApiToken(_Section):
    name: Annotated[str, AfterValidator(_api_token_name)]
    token_env: Annotated[str, AfterValidator(_token_env)] | None = None
    token_file: ConfigPath | None = None
    scope: Annotated[Literal["read", "write"], BeforeValidator(_lower)] = "read"

    @model_validator(mode="after")
    def _exactly_one(self) -> ApiToken:
        if bool(self.token_env) == bool(self.token_file):
            raise ValueError("set exactly one of token_env (a variable's NAME) or token_file")
        return self


class ApiSettings(_Section):
    """The JSON API under /api; on only when at least one token is configured."""

    tokens: tuple[ApiToken, ...] = ()

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, tokens: tuple[ApiToken, ...]) -> tuple[ApiToken, ...]:
        names = [token.name for token in tokens]
        if len(names) != len(set(names)):
            raise ValueError("token names must be unique")
        return tokens


# --------------------------------------------------------------------------- stacks


class StackDefaults(_Section):
    """Policy for every stack entry that does not set its own."""

    on_merge: Annotated[OnMerge, BeforeValidator(_lower)] = OnMerge.APPLY
    on_drift: Annotated[OnDrift, BeforeValidator(_lower)] = OnDrift.NOTIFY
    drift_interval: Duration = 900.0  # 0 disables scheduled drift checks
    approvers: tuple[SlackApprover, ...] = ()  # who may approve `ask` runs from Slack
    approvals_required: Annotated[int, Field(ge=1, le=20)] = 1  # distinct people
    approval_ttl: PositiveDuration = 86400.0  # an unapproved plan expires after this


def _var_file(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValueError("must not be empty")
    if name.startswith(("/", "~")):
        # Git is the only source of desired state: host-local tfvars would be a second one.
        raise ValueError(
            f"var file {name!r} must be relative to the stack directory and kept in the repository"
        )
    return os.path.normpath(name).replace(os.sep, "/")


def _workspace(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"{name!r} is not a Terraform workspace name (letters, digits, '_', '.', '-')")
    return name


class StackEntry(_Section):
    """One item of ``stacks:``: either a glob (``discover``) or one directory (``path``)."""

    discover: StackPath | None = None
    path: StackPath | None = None
    name: StackName | None = None
    workspace: Annotated[str, AfterValidator(_workspace)] = "default"
    on_merge: Annotated[OnMerge, BeforeValidator(_lower)] | None = None  # None: take it from `defaults`
    on_drift: Annotated[OnDrift, BeforeValidator(_lower)] | None = None
    drift_interval: Duration | None = None
    approvers: tuple[SlackApprover, ...] | None = None  # None: take them from `defaults`
    approvals_required: Annotated[int, Field(ge=1, le=20)] | None = None
    approval_ttl: PositiveDuration | None = None
    var_files: tuple[Annotated[str, AfterValidator(_var_file)], ...] = ()
    env: EnvMapping = Field(default_factory=FrozenDict, repr=False)  # values may be secrets

    @model_validator(mode="before")
    @classmethod
    def _name_from_path(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and isinstance(data.get("path"), str) and not data.get("name"):
            try:
                name = Path(validate_stack_path(data["path"])).name
            except StackPathError:
                return data  # the path itself is reported
            if name:
                return {**data, "name": name}
        return data

    @model_validator(mode="after")
    def _discover_or_path(self) -> StackEntry:
        if (self.discover is None) == (self.path is None):
            raise ValueError(
                "a stack entry needs exactly one of `discover` (a glob) or `path` (one directory)"
            )
        if self.discover is not None and self.name is not None:
            raise ValueError("`name` names one directory; use `path` with it, not `discover`")
        if self.path == "." and self.name is None:
            raise ValueError('a stack at the repository root (path: ".") needs a `name`')
        return self


# --------------------------------------------------------------------------- settings

# One definition for tfops.yaml, TFOPS_* and the command line's --log-level/--log-format.
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["text", "json"]


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$STATE_DIRECTORY`` (systemd), else ``$XDG_STATE_HOME/tfops``, else ``~/.local/state/tfops``."""
    state_directory = environ.get("STATE_DIRECTORY", "")
    if state_directory.strip():
        return Path(state_directory.split(":")[0])  # systemd joins several StateDirectory= with ':'
    xdg_state = environ.get("XDG_STATE_HOME", "")
    if os.path.isabs(xdg_state):  # the XDG spec says to ignore relative values
        return Path(xdg_state) / "tfops"
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "tfops"


class Settings(BaseSettings):
    """Everything tfops reads from tfops.yaml and TFOPS_* variables. Immutable once loaded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False, extra="forbid", frozen=True
    )

    data_dir: ConfigPath = Field(default_factory=lambda: default_data_dir(os.environ))
    log_level: Annotated[LogLevel, BeforeValidator(_lower)] = "info"
    log_format: Annotated[LogFormat, BeforeValidator(_lower)] = "text"
    repo: RepoSettings = Field(default_factory=RepoSettings)
    terraform: TerraformSettings = Field(default_factory=TerraformSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    redact_patterns: tuple[RegexPattern, ...] = Field(default=(), repr=False)  # may hold literal secrets
    defaults: StackDefaults = Field(default_factory=StackDefaults)
    stacks: tuple[StackEntry, ...] = ()

    _config_file: Path | None = PrivateAttr(default=None)
    _environ: Mapping[str, str] = PrivateAttr(default_factory=lambda: os.environ)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        # load_settings gathers the file and the environment itself (it needs to know
        # which value came from where to report errors); constructors get no hidden inputs.
        return (init_settings,)

    @field_validator("stacks")
    @classmethod
    def _unique_names(cls, stacks: tuple[StackEntry, ...]) -> tuple[StackEntry, ...]:
        first_index: dict[str, int] = {}
        for index, entry in enumerate(stacks):
            if entry.name is None:
                continue
            if entry.name in first_index:
                raise ValueError(
                    f"stack name {entry.name!r} is used by entries {first_index[entry.name]} and {index}; "
                    "names must be unique (set `name:` on one of them)"
                )
            first_index[entry.name] = index
        return stacks

    # ---- derived values

    @property
    def config_file(self) -> Path | None:
        """The YAML file these settings were read from, if any."""
        return self._config_file

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{self.data_dir / 'tfops.db'}"

    @property
    def checkout_dir(self) -> Path:
        return self.repo.checkout_dir or self.data_dir / "repo"

    @property
    def plugin_cache_dir(self) -> Path:
        return self.terraform.plugin_cache_dir or self.data_dir / "plugin-cache"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def stacks_dir(self) -> Path:
        return self.data_dir / "stacks"

    @functools.cached_property
    def compiled_redact_patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(pattern) for pattern in self.redact_patterns)

    def require_repo_url(self) -> str:
        """``repo.url``, or a ConfigError for commands that cannot work without a repository."""
        if not self.repo.url:
            if self._config_file is None:
                raise ConfigError(
                    f"repo.url: not set, and no config file was read ({DEFAULT_CONFIG_FILE} does not exist "
                    f"and {CONFIG_ENV_VAR} is not set)",
                    hint=f"pass --config /path/to/tfops.yaml, or set {CONFIG_ENV_VAR}",
                )
            raise ConfigError(f"repo.url: not set; set it in tfops.yaml or {ENV_PREFIX}REPO__URL")
        return self.repo.url

    def repo_token(self) -> str | None:
        """The HTTPS token for the repository, read now from ``repo.token_env`` or ``repo.token_file``.

        Read at each call so a rotated token is picked up without a restart, and so the
        value never sits on the settings object (which is logged and printed).
        """
        return self._secret("repo.token", self.repo.token_env, self.repo.token_file)

    def slack_token(self) -> str | None:
        """The Slack bot token from ``slack.bot_token_env`` or ``slack.bot_token_file``; None when off."""
        return self._slack_secret("bot_token")

    def slack_app_token(self) -> str | None:
        """The app-level token (Socket Mode) from ``slack.app_token_env`` or ``_file``; None when unset."""
        return self._slack_secret("app_token")

    def slack_signing_secret(self) -> str | None:
        """The signing secret (HTTP mode) from ``slack.signing_secret_env`` or ``_file``; None when unset."""
        return self._slack_secret("signing_secret")

    def webhook_secret(self, source: str) -> str | None:
        """The secret of one webhook route, read now; None when that route is off."""
        ref = getattr(self.webhooks, source)
        if ref is None:
            return None
        return self._secret(f"webhooks.{source}.secret", ref.secret_env, ref.secret_file)

    def api_tokens(self) -> list[tuple[str, str, Literal["read", "write"]]]:
        """(name, token, scope) for every configured API token, read now."""
        tokens = []
        for index, entry in enumerate(self.api.tokens):
            field = f"api.tokens.{index}.token"
            token = self._secret(field, entry.token_env, entry.token_file)
            if token is None:
                raise ConfigError(f"{field}_env: set token_env or token_file for API token {entry.name!r}")
            tokens.append((entry.name, token, entry.scope))
        return tokens

    def _secret(self, field: str, env_name: str | None, file: Path | None) -> str | None:
        """A secret from the variable NAMED by `<field>_env` or the file `<field>_file`; None when
        neither is set. ConfigError names the field (never the value) when it is unset or empty."""
        if env_name:
            value = (self._environ.get(env_name) or "").strip()
            if not value:
                raise ConfigError(f"{field}_env: the environment variable {env_name} is not set or empty")
            return value
        if file:
            return _read_token_file(file, f"{field}_file")
        return None

    def _slack_secret(self, name: str) -> str | None:
        return self._secret(
            f"slack.{name}", getattr(self.slack, f"{name}_env"), getattr(self.slack, f"{name}_file")
        )


def _read_token_file(path: Path, field: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError(f"{field}: {path} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{field}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{field}: cannot read {path} ({exc.strerror})") from None
    if not value:
        raise ConfigError(f"{field}: {path} is empty")
    return value


# --------------------------------------------------------------------------- loading


def load_settings(path: Path | None = None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Read the config file (see the module docstring for which one) and ``TFOPS_*`` variables.

    Raises :class:`ConfigError` listing every problem (:class:`StackPathError` when all
    of them are stack paths that are absolute or leave the repository).
    """
    config_file = _choose_config_file(path, environ)
    label = str(config_file) if config_file else None
    file_data, lines = _read_config_file(config_file) if config_file else ({}, {})
    env_data = _read_environment(environ)
    origins = _Origins(label, file_data, lines, env_data)

    merged = _deep_merge(file_data, env_data)
    merged.setdefault("data_dir", str(default_data_dir(environ)))
    # BaseSettings.__init__ takes options such as `_env_file`: keep such keys away from it.
    reserved = [key for key in merged if not isinstance(key, str) or key.startswith("_")]
    problems = [origins.problem((key,), "unknown key") for key in reserved]
    only_stack_paths = not reserved
    try:
        settings = Settings(**{key: value for key, value in merged.items() if key not in reserved})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        problems += [origins.problem(tuple(error["loc"]), _reason(error)) for error in errors]
        only_stack_paths = only_stack_paths and all(error["type"] == "stack_path" for error in errors)
    if problems:
        raise (StackPathError if only_stack_paths else ConfigError)(_problem_list(problems))
    settings._config_file = Path(os.path.abspath(config_file)) if config_file else None
    settings._environ = environ
    return settings


def _choose_config_file(path: Path | None, environ: Mapping[str, str]) -> Path | None:
    chosen = Path(path) if path is not None else None
    if chosen is None and environ.get(CONFIG_ENV_VAR, "").strip():
        chosen = Path(environ[CONFIG_ENV_VAR].strip())
    if chosen is None:
        default = Path(DEFAULT_CONFIG_FILE)
        return default if default.is_file() else None
    chosen = chosen.expanduser()
    if not chosen.exists():
        raise ConfigError(f"{chosen}: config file not found")
    if not chosen.is_file():
        raise ConfigError(f"{chosen}: not a file")
    return chosen


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: with plain YAML the last one silently wins."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"duplicate key {key_node.value!r}",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping)

Lines = dict[tuple[str | int, ...], int]


def _read_config_file(path: Path) -> tuple[dict[str, Any], Lines]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from None
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_problem(path, exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    finally:
        loader.dispose()
    if data is None or node is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the file must hold a mapping of settings, not a {type(data).__name__}")
    return _anchor_file_paths(data, Path(os.path.abspath(path)).parent), _key_lines(node)


def _yaml_problem(path: Path, exc: yaml.MarkedYAMLError) -> str:
    # Only the problem and its position: the quoted source line could hold a secret.
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
    context = f" ({exc.context})" if exc.context else ""
    return f"{path}: {where}: invalid YAML: {exc.problem or 'unreadable'}{context}"


def _key_lines(root: yaml.Node) -> Lines:
    lines: Lines = {}
    visited: set[int] = set()

    def walk(node: yaml.Node, prefix: tuple[str | int, ...]) -> None:
        if id(node) in visited:  # anchors may make the graph cyclic
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key = (*prefix, key_node.value)
                    lines.setdefault(key, key_node.start_mark.line + 1)
                    walk(value_node, key)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*prefix, index), item.start_mark.line + 1)
                walk(item, (*prefix, index))

    walk(root, ())
    return lines


_FILE_RELATIVE_PATHS = (
    ("data_dir",),
    ("repo", "checkout_dir"),
    ("repo", "ssh_key_file"),
    ("repo", "token_file"),
    ("slack", "bot_token_file"),
    ("slack", "app_token_file"),
    ("slack", "signing_secret_file"),
    ("http", "tls_cert"),
    ("http", "tls_key"),
    ("webhooks", "github", "secret_file"),
    ("webhooks", "gitlab", "secret_file"),
    ("webhooks", "gitea", "secret_file"),
    ("webhooks", "generic", "secret_file"),
    ("terraform", "cli_config"),
    ("terraform", "plugin_cache_dir"),
)


def _anchor_file_paths(data: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """Make relative paths in the file relative to the file's directory instead of the working directory."""

    def anchor(value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            return value
        path = Path(value.strip()).expanduser()
        return str(path if path.is_absolute() else base_dir / path)

    for keys in _FILE_RELATIVE_PATHS:
        _update_at(data, keys, anchor)
    api = data.get("api")
    tokens = api.get("tokens") if isinstance(api, dict) else None
    for entry in tokens if isinstance(tokens, list) else ():
        _update_at(entry, ("token_file",), anchor)
    _update_at(
        data, ("terraform", "binary"), lambda value: anchor(value) if _looks_like_path(value) else value
    )
    _update_at(
        data,
        ("repo", "url"),
        lambda value: (
            anchor(value) if isinstance(value, str) and is_local_repo_path(value.strip()) else value
        ),
    )
    _update_at(data, ("store", "url"), lambda value: _anchor_sqlite(value, anchor))
    return data


def _looks_like_path(value: Any) -> bool:
    return isinstance(value, str) and ("/" in value or value.strip().startswith("~"))


def _anchor_sqlite(value: Any, anchor) -> Any:
    prefix = "sqlite:///"
    if isinstance(value, str) and value.startswith(prefix) and value[len(prefix) :] not in ("", ":memory:"):
        return prefix + anchor(value[len(prefix) :])
    return value


def _update_at(data: dict[str, Any], keys: tuple[str, ...], change) -> None:
    node: Any = data
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    if isinstance(node, dict) and keys[-1] in node:
        node[keys[-1]] = change(node[keys[-1]])


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__(Settings)
        self.env_vars = {name.lower(): value for name, value in environ.items()}


def _read_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    try:
        return _MappingEnvSource(environ)()
    except SettingsError as exc:
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"{ENV_PREFIX}{field.group(1).upper()}" if field else f"{ENV_PREFIX}*"
        raise ConfigError(
            f"environment {name}: cannot parse the value; lists and mappings are given as JSON, "
            f"e.g. {ENV_PREFIX}TERRAFORM__ENV_PASSTHROUGH='[\"AWS_*\"]'"
        ) from None


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


# --------------------------------------------------------------------------- error messages


class _Origins:
    """Knows where each value came from, to say `<file>` or `environment TFOPS_X` in errors."""

    def __init__(self, file_label: str | None, file_data: dict, lines: Lines, env_data: dict) -> None:
        self.file_label, self.file_data, self.lines, self.env_data = file_label, file_data, lines, env_data

    def problem(self, loc: tuple[str | int, ...], reason: str) -> str:
        env_var = self._env_var(loc)
        where = f"environment {env_var}" if env_var else self.file_label or "defaults"
        field = ".".join(str(part) for part in loc)
        if not field:
            return f"{where}: {reason}"
        line = None if env_var else self._line(loc)
        return f"{where}: {field}: {reason}" + (f" (line {line})" if line else "")

    def _env_var(self, loc: tuple[str | int, ...]) -> str | None:
        node: Any = self.env_data
        names: list[str] = []
        for part in loc:
            if not isinstance(node, dict) or part not in node:
                return None
            names.append(str(part))
            node = node[part]
            if not isinstance(node, dict):
                break
        if not names or (isinstance(node, dict) and _lookup(self.file_data, loc) is not None):
            return None
        return ENV_PREFIX + "__".join(names).upper()

    def _line(self, loc: tuple[str | int, ...]) -> int | None:
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None


def _lookup(data: Any, loc: tuple[str | int, ...]) -> Any:
    for part in loc:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_dict or in_list):
            return None
        data = data[part]
    return data


# Error types whose input is a plain scalar of a non-secret field, safe and useful to show.
_SHOW_INPUT = {"int_parsing", "int_type", "int_from_float", "float_parsing", "float_type", "bool_parsing"}


# YAML 1.1 (PyYAML) reads these unquoted words as booleans, so `on_merge: yes` arrives as True.
_YAML_BOOLEAN = "YAML reads an unquoted yes, no, on, off, true or false as true/false"


def _reason(error: Mapping[str, Any]) -> str:
    kind, ctx, loc = error["type"], error.get("ctx") or {}, error["loc"]
    if kind == "extra_forbidden":
        return _unknown_key_reason(loc)
    if kind == "missing":
        return "required"
    if kind in ("enum", "literal_error"):
        choices = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        if isinstance(error.get("input"), bool):
            return f"must be one of {choices} — got a YAML boolean ({_YAML_BOOLEAN}); write one of the words"
        return f"must be one of {choices} — got {_show(error.get('input'))}"
    if kind == "string_type" and isinstance(error.get("input"), bool):
        return f"must be text — got a YAML boolean ({_YAML_BOOLEAN}); put the value in quotes"
    if kind in ("greater_than_equal", "greater_than"):
        bound = f">= {ctx['ge']}" if "ge" in ctx else f"> {ctx.get('gt')}"
        return f"must be {bound} — got {_show(error.get('input'))}"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    message = str(error["msg"])
    message = message[0].lower() + message[1:] if message[:2].istitle() else message
    return f"{message} — got {_show(error.get('input'))}" if kind in _SHOW_INPUT else message


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key_reason(loc: tuple[str | int, ...]) -> str:
    key = str(loc[-1])
    if loc[-2:] in (("repo", "token"), ("repo", "password")):
        return f"inline secrets are not accepted; {_SECRET_HINT}"
    if loc[-2:] in (
        ("slack", "token"),
        ("slack", "bot_token"),
        ("slack", "app_token"),
        ("slack", "signing_secret"),
    ):
        name = "bot_token" if key == "token" else key
        return f"inline secrets are not accepted; {_slack_secret_hint(name)}"
    allowed = _allowed_keys(loc[:-1])
    if not allowed:
        return "unknown key"
    close = difflib.get_close_matches(key, allowed, n=1)
    return (
        f"unknown key; did you mean {close[0]!r}?"
        if close
        else f"unknown key; expected one of {', '.join(allowed)}"
    )


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    model: type[BaseModel] | None = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = _model_in(field.annotation) if field else None
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found:
            return found
    return None


def _problem_list(problems: list[str]) -> str:
    count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
    return f"invalid configuration ({count}):\n" + "\n".join(f"  {problem}" for problem in problems)


# --------------------------------------------------------------------------- describe


def describe(settings: Settings) -> str:
    """A summary for `tfops check-config`. Shows where secrets come from, never their values."""
    terraform, repo = settings.terraform, settings.repo
    polling = (
        f"every {format_duration(repo.poll_interval)}, fetch timeout {format_duration(repo.fetch_timeout)}"
    )
    timeouts = ", ".join(
        f"{label} {format_duration(seconds)}"
        for label, seconds in (
            ("run", terraform.timeout),
            ("state lock", terraform.lock_timeout),
            ("stop grace", terraform.stop_grace),
        )
    )
    lines = [
        f"config file       {settings.config_file or 'none (built-in defaults and TFOPS_* environment)'}",
        f"data dir          {settings.data_dir}",
        f"logging           {settings.log_level}, {settings.log_format}",
        f"store             {mask_url_password(settings.store_url)}",
        f"redaction         {len(settings.redact_patterns)} configured pattern(s)",
        "repo",
        f"  url             {repo.url or 'not set (tfops serve needs it)'}",
        f"  branch          {repo.branch}",
        f"  polling         {polling}",
        f"  checkout        {settings.checkout_dir}",
        f"  credentials     {_describe_credentials(settings)}",
        "terraform",
        f"  binary          {terraform.binary}",
        f"  cli config      {terraform.cli_config or 'none'}",
        f"  plugin cache    {settings.plugin_cache_dir}",
        f"  parallel runs   {terraform.max_parallel}",
        f"  timeouts        {timeouts}",
        f"  env passthrough {', '.join(terraform.env_passthrough) or 'none'}",
        *_describe_slack(settings),
        f"http              {_describe_http(settings.http)}",
        f"  webhooks        {_describe_webhooks(settings)}",
        f"  api             {_describe_api(settings)}",
        f"stack defaults    {_describe_policy(settings.defaults)}",
        f"stacks            {len(settings.stacks)} entr{'y' if len(settings.stacks) == 1 else 'ies'}",
    ]
    lines.extend(f"  {_describe_entry(entry, settings.defaults)}" for entry in settings.stacks)
    return "\n".join(lines)


def _describe_secret(settings: Settings, section: str, name: str) -> str:
    holder = getattr(settings, section)
    return _describe_ref(settings, getattr(holder, f"{name}_env"), getattr(holder, f"{name}_file"))


def _describe_slack(settings: Settings) -> list[str]:
    slack = settings.slack
    if not slack.enabled:
        return ["slack             off (no bot token configured)"]
    channels = f"channel {slack.channel or 'none'}" + (
        f", {len(slack.channels)} per-stack channel(s)" if slack.channels else ""
    )
    lines = [
        f"slack             {channels}, mention {slack.mention or 'none'}",
        f"  bot token       {_describe_secret(settings, 'slack', 'bot_token')}",
    ]
    if slack.mode == "http":
        secret = _describe_secret(settings, "slack", "signing_secret")
        clicks = f"HTTP mode (POST /slack/interactions), signing secret {secret}"
    else:
        clicks = f"Socket Mode, app token {_describe_secret(settings, 'slack', 'app_token')}"
    return [*lines, f"  buttons         {clicks}"]


def _describe_http(http: HttpSettings) -> str:
    if not http.listen:
        return "off (http.listen not set)"
    tls = "TLS" if http.tls_cert else "plain HTTP (put a TLS proxy in front)"
    return f"listening on {http.listen}, {tls}, requests up to {http.max_body} bytes"


def http_needs(settings: Settings) -> list[str]:
    """What is configured that only the HTTP server can serve."""
    slack = settings.slack
    needs = {
        "slack.mode http": slack.enabled and slack.mode == "http" and slack.interactive,
        "webhooks": bool(settings.webhooks.sources),
        "api.tokens": bool(settings.api.tokens),
    }
    return [name for name, needed in needs.items() if needed]


def check_slack_channel(settings: Settings) -> None:
    """A Slack bot token needs a channel to post in."""
    slack = settings.slack
    if slack.enabled and not (slack.channel or slack.channels):
        raise ConfigError(
            "slack.channel: not set; a Slack bot token is configured but there is no channel to post in",
            hint="set slack.channel to a channel id such as C0123ABCD, or remove the slack token",
        )


def check_serving(settings: Settings) -> None:
    """What `tfops serve` checks before it starts: every secret it will read is there, and what
    needs the HTTP server has one. ConfigError names the field otherwise."""
    needs = http_needs(settings)
    if needs and not settings.http.listen:
        raise ConfigError(
            f"http.listen: not set, but {' and '.join(needs)} need the HTTP server",
            hint="set http.listen (e.g. 127.0.0.1:8080 behind a TLS proxy)",
        )
    slack = settings.slack
    if slack.enabled:
        settings.slack_token()
        if slack.mode == "socket":
            settings.slack_app_token()
        else:
            settings.slack_signing_secret()
    for source in settings.webhooks.sources:
        settings.webhook_secret(source)
    settings.api_tokens()


def _describe_webhooks(settings: Settings) -> str:
    sources = settings.webhooks.sources
    if not sources:
        return "off (no webhook secret configured)"
    refs = {source: getattr(settings.webhooks, source) for source in sources}
    return "; ".join(
        f"{source} secret {_describe_ref(settings, ref.secret_env, ref.secret_file)}"
        for source, ref in refs.items()
    )


def _describe_api(settings: Settings) -> str:
    if not settings.api.tokens:
        return "off (no token configured)"
    return "; ".join(
        f"{t.name} ({t.scope}) {_describe_ref(settings, t.token_env, t.token_file)}"
        for t in settings.api.tokens
    )


def _describe_ref(settings: Settings, env_name: str | None, file: Path | None) -> str:
    """Where a secret comes from and whether it is there; never its value."""
    if env_name:
        return f"from ${env_name} ({'set' if settings._environ.get(env_name, '').strip() else 'NOT SET'})"
    if file:
        return f"file {file} ({'readable' if os.access(file, os.R_OK) else 'NOT READABLE'})"
    return "not configured"


def warnings(settings: Settings) -> list[str]:
    """Settings that are valid but probably not what was meant."""
    found = []
    asking = False
    for where, policy in _effective_policies(settings):
        if OnMerge.ASK not in (policy.on_merge,) and OnDrift.ASK not in (policy.on_drift,):
            continue
        asking = True
        people = {a for a in policy.approvers if not a.startswith("S")}
        if not policy.approvers:
            found.append(
                f"{where}: asks for approval but lists no approvers; only `tfops approve` can decide"
            )
        elif len(people) == len(policy.approvers) and len(people) < policy.approvals_required:
            found.append(
                f"{where}: approvals_required is {policy.approvals_required} "
                f"but only {len(people)} approver(s) are listed"
            )
    found += _http_warnings(settings)
    slack = settings.slack
    if asking and not slack.enabled:
        found.append("an `ask` policy is set but Slack is off: approve with `tfops approve RUN_ID`")
    elif asking and not slack.interactive:
        found.append(
            f"slack.mode is {slack.mode} but its secret is not configured: buttons are shown, "
            "clicks cannot reach tfops, and only `tfops approve` decides"
        )
    return found


MIN_SECRET_CHARS = 16
_LOOPBACK_HOSTS = ("127.", "[::1]", "localhost")


def _http_warnings(settings: Settings) -> list[str]:
    """An exposed listener without TLS, and webhook secrets or API tokens short enough to guess."""
    found = []
    http = settings.http
    if http.listen and not http.tls_cert and not http.listen.startswith(_LOOPBACK_HOSTS):
        found.append(
            f"http.listen is {http.listen} without TLS: tokens and secrets would cross the network in "
            "clear; keep it on loopback behind a TLS proxy, or set http.tls_cert and http.tls_key"
        )
    secrets = [
        (f"webhooks.{source}", lambda s=source: settings.webhook_secret(s))
        for source in settings.webhooks.sources
    ]
    secrets += [
        (f"api.tokens.{i}", lambda i=i: settings.api_tokens()[i][1]) for i in range(len(settings.api.tokens))
    ]
    for where, read in secrets:
        try:
            value = read()
        except ConfigError:
            continue  # reported as an error elsewhere
        if value is not None and len(value) < MIN_SECRET_CHARS:
            found.append(
                f"{where}: the secret has {len(value)} characters; use {MIN_SECRET_CHARS} or more random ones"
            )
    return found


def _effective_policies(settings: Settings) -> list[tuple[str, StackDefaults]]:
    defaults = settings.defaults
    policies = [("defaults", defaults)]
    for index, entry in enumerate(settings.stacks):
        explicit = {
            key: value
            for key in ("on_merge", "on_drift", "approvers", "approvals_required")
            if (value := getattr(entry, key)) is not None
        }
        policies.append((f"stacks.{index}", defaults.model_copy(update=explicit)))
    return policies


def _describe_credentials(settings: Settings) -> str:
    repo, parts = settings.repo, []
    if repo.ssh_key_file:
        parts.append(f"ssh key {repo.ssh_key_file}" + ("" if repo.ssh_key_file.is_file() else " (MISSING)"))
    if repo.username:
        parts.append(f"user {repo.username}")
    if repo.token_env or repo.token_file:
        parts.append(f"token {_describe_ref(settings, repo.token_env, repo.token_file)}")
    return ", ".join(parts) or "none configured (ssh agent and git defaults)"


def _describe_policy(policy: StackDefaults | StackEntry, defaults: StackDefaults | None = None) -> str:
    on_merge = policy.on_merge or (defaults.on_merge if defaults else None)
    on_drift = policy.on_drift or (defaults.on_drift if defaults else None)
    interval = policy.drift_interval
    if interval is None and defaults is not None:
        interval = defaults.drift_interval
    drift = f"drift check every {format_duration(interval)}" if interval else "no scheduled drift check"
    return f"on merge {on_merge}, on drift {on_drift}, {drift}"


def _describe_entry(entry: StackEntry, defaults: StackDefaults) -> str:
    head = f"discover {entry.discover}" if entry.discover is not None else f"{entry.name}: {entry.path}"
    extras = [f"workspace {entry.workspace}"] if entry.workspace != "default" else []
    if entry.var_files:
        extras.append(f"var files {', '.join(entry.var_files)}")
    if entry.env:
        extras.append(f"env {', '.join(sorted(entry.env))}")  # names only: values may be secrets
    return f"{head} ({_describe_policy(entry, defaults)}{''.join('; ' + extra for extra in extras)})"
