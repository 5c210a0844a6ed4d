"""`tfops check-config --aws`: assume every configured role once and say which fail and why.

The roles come from the configuration alone (defaults and each stack entry), so the check needs
no checkout; a discovered stack uses the defaults' roles, which are checked too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tfops.aws.clients import AwsClients, AwsEndpoint
from tfops.aws.roles import RoleAssumer
from tfops.config import Settings
from tfops.config.aws import StackAwsSettings, merge_stack_aws


@dataclass(frozen=True)
class RoleCheck:
    role: str
    external_id_env: str | None
    used_by: tuple[str, ...]  # "plan: network", "apply: defaults", ...
    problem: str | None  # None: STS let tfops assume it


def check_roles(settings: Settings, environ: Mapping[str, str]) -> list[RoleCheck]:
    """Every distinct (role, external id variable) of the configuration, assumed once."""
    clients = AwsClients(AwsEndpoint.of(settings.aws), environ)
    assumer = RoleAssumer(clients)
    checks = []
    for (role, id_env), used_by in _role_uses(settings).items():
        external_id = environ.get(id_env) if id_env else None
        problem = assumer.check(role, external_id)
        if id_env and external_id is None:
            problem = f"{id_env} is not set (the external id); {problem or 'STS accepted it without one'}"
        checks.append(RoleCheck(role, id_env, tuple(used_by), problem))
    return checks


def _role_uses(settings: Settings) -> dict[tuple[str, str | None], list[str]]:
    uses: dict[tuple[str, str | None], list[str]] = {}
    owners: list[tuple[str, StackAwsSettings]] = [("defaults", settings.defaults.aws)]
    for entry in settings.stacks:
        if entry.aws is not None:
            label = entry.name or entry.discover or entry.path or "?"
            owners.append((label, merge_stack_aws(settings.defaults.aws, entry.aws)))
    for owner, aws in owners:
        for phase, role in (("plan", aws.plan_role), ("apply", aws.apply_role)):
            if role is not None:
                uses.setdefault((role, aws.external_id_env), []).append(f"{phase}: {owner}")
    return uses
