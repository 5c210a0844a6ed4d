"""The AWS side of one run: the phase's role credentials and the stack's secrets, for Terraform.

A stack's roles and secret references come from tfops' config only. For each phase, tfops assumes
the phase's role from its own identity with a session name that names the run (so CloudTrail
shows which tfops run did what) and gives Terraform only those temporary credentials; the
daemon's own `AWS_*` never reach a stack that has roles. Secrets are read once per run, with the
plan role (or tfops' own identity when the stack has none). Every value handed out is also
returned for the run's redaction. A drift run of a stack with `aws.attribution` asks CloudTrail,
with the plan role too, who wrote to its drifted resources.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from tfops.attribution import ResourceAttribution
from tfops.aws.attribution import attribute
from tfops.aws.clients import AwsClients
from tfops.aws.roles import RoleAssumer, TemporaryCredentials, session_name
from tfops.aws.secrets import SecretReader
from tfops.aws.trail import TrailLookup
from tfops.models import Stack

# CloudTrail requests one drift run may make (2 a second: at most 10 s of a run); the resources
# beyond the bound say "attribution unavailable: lookup bound reached".
LOOKUPS_PER_RUN = 20

Phase = Literal["plan", "apply"]  # plan: init, plan, show and drift; apply: the apply of a saved plan


@dataclass(frozen=True, repr=False)  # no repr: it holds credentials and secret values
class CloudEnv:
    env: Mapping[str, str]  # what Terraform gets on top of its allow-listed environment
    values: frozenset[str]  # what the run's redaction must hold from now on


class RunIdentities:
    """Hands each run its AWS environment (one instance for the daemon; thread-safe)."""

    def __init__(self, clients: AwsClients, environ: Mapping[str, str]) -> None:
        self._clients = clients
        self._assumer = RoleAssumer(clients)
        self._reader = SecretReader(clients)
        self._region = clients.region
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

    def trail(self, stack: Stack, credentials: TemporaryCredentials | None) -> TrailLookup:
        """A CloudTrail lookup for one run, with the plan role's credentials (or tfops' own).
        Its cache is scoped to the account the role lives in: identifiers are unique per account."""
        role = _role_for(stack, "plan")
        account = role.split(":")[4] if role else "tfops"
        return TrailLookup(
            self._clients.client("cloudtrail", credentials),
            max_lookups=LOOKUPS_PER_RUN,
            scope=f"{account}:{self._region or ''}",
        )


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

    def who_changed(
        self, drifted: Sequence[Mapping[str, Any]], since: datetime | None
    ) -> tuple[ResourceAttribution, ...]:
        """Who wrote to each drifted resource (`resource_drift` entries of the plan) since `since`,
        the moment the stack was last seen in sync. A lookup that fails says why in its entry;
        only a role that cannot be assumed raises (AwsRoleError)."""
        credentials = self.identities.credentials(self.stack, self.run_id, "plan")
        found = attribute(drifted, since, self.identities.trail(self.stack, credentials))
        return tuple(found.values())

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
