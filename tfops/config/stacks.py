"""``defaults:`` and ``stacks:``: which directories are stacks, and what tfops does with each."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from tfops.config.aws import SecretsMapping, StackAwsSettings
from tfops.config.drift import DriftSettings
from tfops.config.durations import Duration, PositiveDuration
from tfops.config.fields import EnvMapping, FrozenDict, Section, lowercase
from tfops.config.guards import GuardsSettings
from tfops.config.slack import SlackApprover
from tfops.config.windows import TimeZone, WindowEntry
from tfops.errors import ConfigError, StackPathError
from tfops.models import OnDrift, OnMerge
from tfops.naming import validate_stack_name, validate_stack_path
from tfops.ordering import find_cycle


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


StackPath = Annotated[str, AfterValidator(_stack_path)]
StackName = Annotated[str, AfterValidator(_stack_name)]


class StackDefaults(Section):
    """Policy for every stack entry that does not set its own."""

    on_merge: Annotated[OnMerge, BeforeValidator(lowercase)] = OnMerge.APPLY
    on_drift: Annotated[OnDrift, BeforeValidator(lowercase)] = OnDrift.NOTIFY
    drift_interval: Duration = 900.0  # 0 disables scheduled drift checks
    approvers: tuple[SlackApprover, ...] = ()  # who may approve `ask` runs from Slack
    approvals_required: Annotated[int, Field(ge=1, le=20)] = 1  # distinct people
    approval_ttl: PositiveDuration = 86400.0  # an unapproved plan expires after this
    aws: StackAwsSettings = Field(default_factory=StackAwsSettings)  # roles; none: the daemon's identity
    secrets: SecretsMapping = Field(default_factory=FrozenDict)  # TF_VAR_x: ssm:/… or secretsmanager:…
    drift: DriftSettings = Field(default_factory=DriftSettings)  # ignore: drift meant to happen
    guards: GuardsSettings = Field(default_factory=GuardsSettings)  # max_destroy, max_replace, protect
    windows: tuple[WindowEntry, ...] = ()  # sync windows: when plans may be applied
    timezone: TimeZone = "UTC"  # the clock of the windows' schedules


def _stack_file(kind: str) -> AfterValidator:
    """A file relative to the stack directory, kept in Git (discovery refuses one leaving the repository)."""

    def check(name: str) -> str:
        name = name.strip()
        if not name:
            raise ValueError("must not be empty")
        if name.startswith(("/", "~")):
            # Git is the only source of desired state: a host-local file would be a second one.
            raise ValueError(
                f"{kind} {name!r} must be relative to the stack directory and kept in the repository"
            )
        return os.path.normpath(name).replace(os.sep, "/")

    return AfterValidator(check)


def _workspace(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ValueError(f"{name!r} is not a Terraform workspace name (letters, digits, '_', '.', '-')")
    return name


class StackEntry(Section):
    """One item of ``stacks:``: either a glob (``discover``) or one directory (``path``)."""

    discover: StackPath | None = None
    path: StackPath | None = None
    name: StackName | None = None
    workspace: Annotated[str, AfterValidator(_workspace)] = "default"
    on_merge: Annotated[OnMerge, BeforeValidator(lowercase)] | None = None  # None: take it from `defaults`
    on_drift: Annotated[OnDrift, BeforeValidator(lowercase)] | None = None
    drift_interval: Duration | None = None
    approvers: tuple[SlackApprover, ...] | None = None  # None: take them from `defaults`
    approvals_required: Annotated[int, Field(ge=1, le=20)] | None = None
    approval_ttl: PositiveDuration | None = None
    var_files: tuple[Annotated[str, _stack_file("var file")], ...] = ()
    # -backend-config files, relative to the stack directory, in this order
    backend_config: tuple[Annotated[str, _stack_file("backend config file")], ...] = ()
    aws: StackAwsSettings | None = None  # the keys it writes override defaults.aws
    secrets: SecretsMapping = Field(default_factory=FrozenDict)  # merged over defaults.secrets
    env: EnvMapping = Field(default_factory=FrozenDict, repr=False)  # values may be secrets
    drift: DriftSettings | None = None  # its ignore rules are added to defaults.drift.ignore
    guards: GuardsSettings | None = None  # the keys it writes override defaults.guards
    windows: tuple[WindowEntry, ...] | None = None  # None: defaults.windows; [] frees the stack of them
    timezone: TimeZone | None = None
    # stacks (names) whose deploys of a commit are applied before this one's are planned
    depends_on: tuple[StackName, ...] = ()

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
        if self.name is not None and self.name in self.depends_on:
            raise ValueError(f"depends_on: stack {self.name!r} cannot depend on itself")
        return self


def check_stack_order(entries: Sequence[StackEntry]) -> None:
    """`depends_on` names stacks and forms no cycle, as far as the configuration alone can tell:
    with `discover` entries, a name that no entry spells may be a discovered stack's, which only
    discovery knows (it refuses the stack then: tfops.stacks)."""
    graph = {entry.name: entry.depends_on for entry in entries if entry.name is not None}
    if not any(entry.discover is not None for entry in entries):
        for index, entry in enumerate(entries):
            for name in entry.depends_on:
                if name not in graph:
                    raise ValueError(f"stacks.{index}.depends_on: {name!r} is not the name of a stack entry")
    cycle = find_cycle(graph)
    if cycle is not None:
        raise ValueError(f"depends_on forms a cycle: {' -> '.join(cycle)}")
