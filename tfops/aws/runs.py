"""The AWS side of one run: the phase's role credentials and the stack's secrets, for Terraform.

A stack's roles and secret references come from tfops' config only. For each phase, tfops assumes
the phase's role from its own identity with a session name that names the run (so CloudTrail
shows which tfops run did what) and gives Terraform only those temporary credentials; the
daemon's own `AWS_*` never reach a stack that has roles. Secrets are read once per run, with the
plan role (or tfops' own identity when the stack has none). Every value handed out is also
returned for the run's redaction.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from tfops.aws.roles import RoleAssumer, TemporaryCredentials, session_name
from tfops.aws.secrets import SecretReader
from tfops.models import Stack

Phase = Literal["plan", "apply"]  # plan: init, plan, show and drift; apply: the apply of a saved plan


@dataclass(frozen=True, repr=False)  # no repr: it holds credentials and secret values
class CloudEnv:
    env: Mapping[str, str]  # what Terraform gets on top of its allow-listed environment
    values: frozenset[str]  # what the run's redaction must hold from now on


def needs_aws(stack: Stack) -> bool:
    """Does a run of this stack need anything from AWS before Terraform starts?"""
    return stack.aws.has_roles or bool(stack.secrets)


class RunIdentities:
    """Hands each run its AWS environment (one instance for the daemon; thread-safe)."""

    def __init__(
        self, assumer: RoleAssumer, reader: SecretReader, region: str | None, environ: Mapping[str, str]
    ) -> None:
        self._assumer = assumer
        self._reader = reader
        self._region = region
        self._environ = environ  # tfops' own: where external ids are read

    def for_run(self, stack: Stack, run_id: int) -> RunCloud:
        return RunCloud(self, stack, run_id)

    def credentials(self, stack: Stack, run_id: int, phase: Phase) -> TemporaryCredentials | None:
        role = _role_for(stack, phase)
        if role is None:
            return None
        return self._assumer.credentials(
            role,
            session_name=session_name(stack.name, run_id),
            external_id=_external_id(stack, self._environ),
            duration_seconds=int(stack.aws.session_duration),
        )

    def secrets(self, stack: Stack, credentials: TemporaryCredentials | None) -> dict[str, str]:
        return self._reader.read_all(dict(stack.secrets), credentials) if stack.secrets else {}

    def env(self, credentials: TemporaryCredentials | None) -> dict[str, str]:
        return credentials.env(self._region) if credentials is not None else {}


@dataclass(repr=False)  # no repr: it holds the run's secret values
class RunCloud:
    """One run's AWS environment per phase; secrets are read once, with the plan phase's identity."""

    identities: RunIdentities
    stack: Stack
    run_id: int
    _secrets: dict[str, str] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def environment(self, phase: Phase) -> CloudEnv:
        """Raises AwsRoleError or AwsSecretError (naming the role or reference) before Terraform runs."""
        credentials = self.identities.credentials(self.stack, self.run_id, phase)
        secrets = self._read_secrets(phase, credentials)
        env = {**secrets, **self.identities.env(credentials)}  # the role's credentials win
        values = frozenset(secrets.values()) | (credentials.values() if credentials else frozenset())
        return CloudEnv(env=env, values=values)

    def _read_secrets(self, phase: Phase, credentials: TemporaryCredentials | None) -> dict[str, str]:
        with self._lock:
            if self._secrets is None:
                reader = (
                    credentials
                    if phase == "plan"
                    else self.identities.credentials(self.stack, self.run_id, "plan")
                )
                self._secrets = self.identities.secrets(self.stack, reader)
            return self._secrets


def _role_for(stack: Stack, phase: Phase) -> str | None:
    # A stack that names only one role uses it for both phases: it chose not to inherit the
    # daemon's identity, and the daemon's identity must not come back for the other phase.
    aws = stack.aws
    if phase == "apply":
        return aws.apply_role or aws.plan_role
    return aws.plan_role or aws.apply_role


def _external_id(stack: Stack, environ: Mapping[str, str]) -> str | None:
    name = stack.aws.external_id_env
    return environ.get(name) if name else None
