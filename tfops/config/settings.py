"""``Settings``: every section in one immutable object, the paths derived from it, and the
readers of the secrets it names (read when needed, never stored on it)."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
)

from tfops.config.api import ApiSettings
from tfops.config.aws import AwsSettings, inherit_attribution
from tfops.config.fields import ConfigPath, RegexPattern, lowercase
from tfops.config.ha import HaSettings
from tfops.config.http import HttpSettings
from tfops.config.repo import RepoSettings
from tfops.config.slack import SlackSettings
from tfops.config.stacks import StackDefaults, StackEntry, check_stack_order
from tfops.config.store import StoreSettings
from tfops.config.terraform import TerraformSettings
from tfops.config.webhooks import WebhookSettings
from tfops.errors import AwsSecretError, ConfigError
from tfops.logs import LogFormat, LogLevel

ENV_PREFIX = "TFOPS_"
CONFIG_ENV_VAR = "TFOPS_CONFIG"
DEFAULT_CONFIG_FILE = "tfops.yaml"


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


class Settings(BaseModel):
    """Everything tfops reads from tfops.yaml and TFOPS_* variables. Immutable once loaded.

    A new section is a module holding its model plus one field here: loading, error messages
    and path anchoring find its fields through the model.
    """

    # A plain model, not pydantic-settings' BaseSettings: load_settings reads the file and the
    # environment itself (to say which value came from where), and every command that loads the
    # config then does not pay for importing pydantic-settings (tfops.config.loading does, only
    # when a TFOPS_* variable is set).
    # validate_default: as BaseSettings did, so validators run on sections left out (the
    # `defaults` validator folds aws.attribution in even when tfops.yaml has no `defaults:`).
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    data_dir: ConfigPath = Field(default_factory=lambda: default_data_dir(os.environ))
    log_level: Annotated[LogLevel, BeforeValidator(lowercase)] = "info"
    log_format: Annotated[LogFormat, BeforeValidator(lowercase)] = "text"
    repo: RepoSettings = Field(default_factory=RepoSettings)
    terraform: TerraformSettings = Field(default_factory=TerraformSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ha: HaSettings = Field(default_factory=HaSettings)
    aws: AwsSettings = Field(default_factory=AwsSettings)  # before `defaults`: its validator reads it
    redact_patterns: tuple[RegexPattern, ...] = Field(default=(), repr=False)  # may hold literal secrets
    defaults: StackDefaults = Field(default_factory=StackDefaults)
    stacks: tuple[StackEntry, ...] = ()

    _config_file: Path | None = PrivateAttr(default=None)
    _environ: Mapping[str, str] = PrivateAttr(default_factory=lambda: os.environ)
    _aws_clients: Any = PrivateAttr(default=None)  # tfops' own AWS clients, made at the first AWS secret

    @field_validator("defaults")
    @classmethod
    def _inherit_aws_attribution(cls, defaults: StackDefaults, info: ValidationInfo) -> StackDefaults:
        # Stacks are built from `defaults` alone: fold the global switch in once, here.
        aws = info.data.get("aws")
        return (
            defaults
            if aws is None
            else defaults.model_copy(update={"aws": inherit_attribution(defaults.aws, aws)})
        )

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
        check_stack_order(stacks)
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

    # ---- secrets, read at each call so a rotated one is picked up without a restart, and so
    # the value never sits on the settings object (which is logged and printed)

    def repo_token(self) -> str | None:
        """The HTTPS token for the repository, read now from ``repo.token_env`` or ``repo.token_file``."""
        return self._secret("repo.token", self.repo, "token")

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
        return self._secret(f"webhooks.{source}.secret", ref, "secret")

    def api_tokens(self) -> list[tuple[str, str, Literal["read", "write"]]]:
        """(name, token, scope) for every configured API token, read now."""
        tokens = []
        for index, entry in enumerate(self.api.tokens):
            field = f"api.tokens.{index}.token"
            token = self._secret(field, entry, "token")
            if token is None:
                raise ConfigError(f"{field}_env: set token_env or token_file for API token {entry.name!r}")
            tokens.append((entry.name, token, entry.scope))
        return tokens

    def _secret(self, field: str, section: BaseModel, name: str) -> str | None:
        """A secret from the variable NAMED by `<field>_env`, the file `<field>_file`, the SSM
        parameter `<field>_ssm` or the Secrets Manager secret `<field>_secretsmanager`; None when
        none is set. ConfigError names the field (never the value) when it cannot be read."""
        env_name = getattr(section, f"{name}_env")
        if env_name:
            value = (self._environ.get(env_name) or "").strip()
            if not value:
                raise ConfigError(f"{field}_env: the environment variable {env_name} is not set or empty")
            return value
        file = getattr(section, f"{name}_file")
        if file:
            return _read_token_file(file, f"{field}_file")
        for service in ("ssm", "secretsmanager"):
            reference = getattr(section, f"{name}_{service}", None)
            if reference:
                return self._aws_secret(f"{field}_{service}", f"{service}:{reference}")
        return None

    def _aws_secret(self, field: str, reference: str) -> str:
        """Read with tfops' own AWS identity, now (a rotated value is read at the next use)."""
        from tfops.aws.clients import AwsClients, AwsEndpoint  # boto3 only when a secret is in AWS
        from tfops.aws.secrets import SecretReader

        if self._aws_clients is None:  # one boto3 session for every read, not one per read
            self._aws_clients = AwsClients(AwsEndpoint.of(self.aws), self._environ)
        try:
            value = SecretReader(self._aws_clients).read(reference).strip()
        except AwsSecretError as exc:
            raise ConfigError(f"{field}: {exc.args[0]}", hint=exc.hint) from None
        if not value:
            raise ConfigError(f"{field}: {reference} is empty")
        return value

    def _slack_secret(self, name: str) -> str | None:
        return self._secret(f"slack.{name}", self.slack, name)


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
