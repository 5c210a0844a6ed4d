"""``slack:``: where tfops posts, who it pages, and how button clicks come back."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from tfops.config.durations import PositiveDuration
from tfops.config.fields import (
    ConfigPath,
    FrozenDict,
    SecretEnvName,
    SecretsManagerSecret,
    Section,
    SsmParameter,
    at_most_one_source,
    has_source,
    lowercase,
)


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
_SECRETS = ("bot_token", "app_token", "signing_secret")


class SlackSettings(Section):
    """Slack delivery; enabled exactly when a bot token source is set."""

    inline_secret_hints: ClassVar[Mapping[str, str]] = {
        "token": _slack_secret_hint("bot_token"),
        **{name: _slack_secret_hint(name) for name in _SECRETS},
    }

    bot_token_env: SecretEnvName | None = None
    bot_token_file: ConfigPath | None = None
    bot_token_ssm: SsmParameter | None = None
    bot_token_secretsmanager: SecretsManagerSecret | None = None
    channel: SlackChannel | None = None  # the default channel for every stack
    channels: Annotated[dict[str, SlackChannel], AfterValidator(FrozenDict)] = Field(
        default_factory=FrozenDict
    )
    mention: Annotated[str, AfterValidator(_slack_mention)] | None = None  # paged on failures
    base_url: Annotated[str, AfterValidator(_slack_base_url)] = "https://slack.com/api/"
    timeout: PositiveDuration = 30.0
    # How button clicks reach tfops: Socket Mode needs no inbound port; HTTP mode needs `http.listen`.
    mode: Annotated[Literal["socket", "http"], BeforeValidator(lowercase)] = "socket"
    app_token_env: SecretEnvName | None = None  # Socket Mode (xapp-…)
    app_token_file: ConfigPath | None = None
    app_token_ssm: SsmParameter | None = None
    app_token_secretsmanager: SecretsManagerSecret | None = None
    signing_secret_env: SecretEnvName | None = None  # HTTP mode
    signing_secret_file: ConfigPath | None = None
    signing_secret_ssm: SsmParameter | None = None
    signing_secret_secretsmanager: SecretsManagerSecret | None = None
    usergroup_cache: PositiveDuration = 300.0  # how long approver group members are trusted

    @property
    def enabled(self) -> bool:
        return has_source(self, "bot_token")

    @property
    def interactive(self) -> bool:
        """Whether button clicks can reach tfops (the other transport's settings are ignored)."""
        if self.mode == "http":
            return has_source(self, "signing_secret")
        return has_source(self, "app_token")

    @model_validator(mode="after")
    def _one_token_source(self) -> SlackSettings:
        for name in _SECRETS:
            at_most_one_source(self, "slack", name)
        return self

    def channel_for(self, stack: str) -> str | None:
        return self.channels.get(stack, self.channel)
