"""``webhooks:``: which forges may ask for a fetch now, each with its own secret."""

from __future__ import annotations

from pydantic import model_validator

from tfops.config.durations import Duration
from tfops.config.fields import (
    ConfigPath,
    SecretEnvName,
    SecretsManagerSecret,
    Section,
    SsmParameter,
    exactly_one_source,
)


class SecretRef(Section):
    """Where a webhook secret is: an environment variable's NAME, or a file. Never the value."""

    secret_env: SecretEnvName | None = None
    secret_file: ConfigPath | None = None
    secret_ssm: SsmParameter | None = None
    secret_secretsmanager: SecretsManagerSecret | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        exactly_one_source(self, "secret")
        return self


class WebhookSettings(Section):
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
