"""``api:``: the tokens that open the JSON API, each read-only or allowed to write."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, field_validator, model_validator

from tfops.config.fields import (
    ConfigPath,
    SecretEnvName,
    SecretsManagerSecret,
    Section,
    SsmParameter,
    exactly_one_source,
    lowercase,
)

_API_TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


def _api_token_name(name: str) -> str:
    if not _API_TOKEN_NAME.fullmatch(name):
        raise ValueError(
            "must be 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
        )
    return name


class ApiToken(Section):
    name: Annotated[str, AfterValidator(_api_token_name)]
    token_env: SecretEnvName | None = None
    token_file: ConfigPath | None = None
    token_ssm: SsmParameter | None = None
    token_secretsmanager: SecretsManagerSecret | None = None
    scope: Annotated[Literal["read", "write"], BeforeValidator(lowercase)] = "read"

    @model_validator(mode="after")
    def _exactly_one(self) -> ApiToken:
        exactly_one_source(self, "token")
        return self


class ApiSettings(Section):
    """The JSON API under /api; on only when at least one token is configured."""

    tokens: tuple[ApiToken, ...] = ()

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, tokens: tuple[ApiToken, ...]) -> tuple[ApiToken, ...]:
        names = [token.name for token in tokens]
        if len(names) != len(set(names)):
            raise ValueError("token names must be unique")
        return tokens
