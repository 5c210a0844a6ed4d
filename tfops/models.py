"""Plain data shared by every part of tfops.

Nothing here does I/O. Enums are ``StrEnum`` so that their values are what the
store, the CLI's ``--json`` output and the logs show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunKind(StrEnum):
    DEPLOY = "deploy"  # a new commit touches the stack
    DRIFT = "drift"  # scheduled check against the real infrastructure
    REMEDIATE = "remediate"  # apply a drift plan (reserved for runs created from a drift decision)
    PLAN = "plan"  # asked for by a person


class RunStatus(StrEnum):
    QUEUED = "queued"
    PLANNING = "planning"
    NO_CHANGES = "no_changes"
    PLANNED = "planned"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    APPLYING = "applying"
    APPLIED = "applied"
    FAILED = "failed"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"
    INTERRUPTED = "interrupted"
    TIMED_OUT = "timed_out"
    BLOCKED = "blocked"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


# ``planned`` is terminal for runs that stop at a plan (on_merge: plan, drift with
# notify); a later approval issue reopens it through a named transition, never by
# editing the row.
TERMINAL_STATUSES = frozenset(
    {
        RunStatus.NO_CHANGES,
        RunStatus.PLANNED,
        RunStatus.APPLIED,
        RunStatus.FAILED,
        RunStatus.REJECTED,
        RunStatus.SUPERSEDED,
        RunStatus.INTERRUPTED,
        RunStatus.TIMED_OUT,
        RunStatus.BLOCKED,
        RunStatus.EXPIRED,
    }
)

# Statuses a run passes through while a worker owns it; finding one of these at
# start-up means the previous daemon died mid-run.
IN_FLIGHT_STATUSES = frozenset({RunStatus.PLANNING, RunStatus.APPROVED, RunStatus.APPLYING})

# Statuses in which a run's saved plan may still be applied, so the plan file is kept. A
# `planned` run is never applied (`ask` is the way to apply a reviewed plan): its file goes.
PLAN_KEPT_STATUSES = frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.APPROVED})


class DriftState(StrEnum):
    IN_SYNC = "in_sync"
    DRIFTED = "drifted"
    UNKNOWN = "unknown"


class OnMerge(StrEnum):
    APPLY = "apply"
    PLAN = "plan"
    ASK = "ask"  # post the plan for approval; apply exactly that plan once approved


class OnDrift(StrEnum):
    REMEDIATE = "remediate"
    NOTIFY = "notify"
    IGNORE = "ignore"
    ASK = "ask"  # post the drift plan for approval; revert the drift once approved


class TriggerSource(StrEnum):
    POLL = "poll"  # the repo poll job saw a new head
    DRIFT_TIMER = "drift_timer"
    CLI = "cli"
    RECONCILE = "reconcile"  # `tfops reconcile` one-shot pass
    WEBHOOK = "webhook"  # a Git host said the branch moved: tfops fetched and looked itself
    API = "api"  # POST /api/stacks/{name}/plan or /drift


@dataclass(frozen=True)
class Stack:
    """A Terraform root module in the repository, with its policy."""

    name: str
    path: str  # relative to the repository root, POSIX separators, no leading ./
    workspace: str = "default"
    var_files: tuple[str, ...] = ()  # relative to the stack directory
    env: tuple[tuple[str, str], ...] = ()  # extra environment for Terraform, sorted pairs
    drift_interval: float = 900.0  # seconds; 0 disables scheduled drift checks
    on_merge: OnMerge = OnMerge.APPLY
    on_drift: OnDrift = OnDrift.NOTIFY
    approvers: tuple[str, ...] = ()  # Slack user ids (U…/W…) and user group ids (S…)
    approvals_required: int = 1  # distinct people
    approval_ttl: float = 86400.0  # seconds a plan may wait for approval before it expires


@dataclass(frozen=True)
class Trigger:
    """Why a run exists. Recorded with the run; never a source of code."""

    source: TriggerSource
    actor: str = "tfops"  # who or what asked: "poll", a user name, a webhook delivery id
    previous_sha: str | None = None  # the commit the stack was last applied at, if known
    forced: bool = False  # the remote head was rewritten (force-push)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.value,
            "actor": self.actor,
            "previous_sha": self.previous_sha,
            "forced": self.forced,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trigger:
        return cls(
            source=TriggerSource(data["source"]),
            actor=data.get("actor", "tfops"),
            previous_sha=data.get("previous_sha"),
            forced=bool(data.get("forced", False)),
            note=data.get("note", ""),
        )


@dataclass(frozen=True)
class AttributeChange:
    """One attribute that differs between before and after, already redacted."""

    path: str  # e.g. "tags.env" or "rule[0].port"
    before: Any
    after: Any


@dataclass(frozen=True)
class ResourceChange:
    address: str
    type: str
    action: str  # create | update | delete | replace | read | no-op
    attributes: tuple[AttributeChange, ...] = ()
    module_address: str | None = None


@dataclass(frozen=True)
class PlanSummary:
    """What a plan says, redacted: safe to store, log, print and post."""

    terraform_version: str
    format_version: str
    changes: tuple[ResourceChange, ...] = ()  # resource_changes that are not no-op/read
    drift: tuple[ResourceChange, ...] = ()  # resource_drift: changed outside Terraform
    output_changes: tuple[str, ...] = ()  # names of outputs whose value changes
    errored: bool = False

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)

    @property
    def counts(self) -> dict[str, int]:
        return {action: self.count(action) for action in ("create", "update", "delete", "replace")}

    @property
    def has_changes(self) -> bool:
        return bool(self.changes) or bool(self.output_changes)

    @property
    def has_drift(self) -> bool:
        return bool(self.drift)


@dataclass
class Run:
    id: int
    stack: str
    kind: RunKind
    status: RunStatus
    trigger: Trigger
    commit_sha: str | None = None
    plan_sha256: str | None = None
    summary: dict[str, Any] | None = None  # PlanSummary as JSON (redacted)
    log_path: str | None = None
    exit_code: int | None = None
    error: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    decided_by: str | None = None


@dataclass
class StackState:
    """What the store remembers about a stack between runs."""

    name: str
    path: str
    head_sha: str | None = None  # the branch head at the last fetch
    applied_sha: str | None = None  # commit of the last successful apply (or no-change deploy)
    drift: DriftState = DriftState.UNKNOWN
    drift_checked_at: datetime | None = None
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
