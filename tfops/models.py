"""Plain data shared by every part of tfops.

Nothing here does I/O. Enums are ``StrEnum`` so that their values are what the
store, the CLI's ``--json`` output and the logs show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from tfops.attribution import ResourceAttribution


class RunKind(StrEnum):
    DEPLOY = "deploy"  # a new commit touches the stack
    DRIFT = "drift"  # scheduled check against the real infrastructure; may revert drift itself
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
    EXPIRED = "expired"
    # a change guard refused the plan and nobody can approve it, or an upstream stack's deploy did
    # not land (`depends_on`): nothing applied
    BLOCKED = "blocked"
    # the plan may be applied, but not now: it waits, with its plan, for the stack's sync window
    AWAITING_WINDOW = "awaiting_window"

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
        RunStatus.EXPIRED,
        RunStatus.BLOCKED,
    }
)

# Statuses a run passes through while a worker owns it; finding one of these at
# start-up means the previous daemon died mid-run.
IN_FLIGHT_STATUSES = frozenset({RunStatus.PLANNING, RunStatus.APPROVED, RunStatus.APPLYING})

# A run that works on its stack: at most one per stack, enforced by the store's unique index.
WORKING_STATUSES = frozenset({RunStatus.PLANNING, RunStatus.APPLYING})

# The runs that went wrong: exit code 1 of the CLI, red in the terminal, a page in Slack with the
# error in the thread. The one definition every consumer reads.
FAILURE_STATUSES = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED})

# Ways out of any status that is not terminal: whatever a run was doing, it can fail, run out of
# time, be stopped, or be replaced by a newer commit (Terraform may call the plan stale at apply).
_SIDE_EXITS = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED, RunStatus.SUPERSEDED})

# Every move a run may make; `Store.transition` refuses any other. Terminal statuses lead nowhere.
ALLOWED_TRANSITIONS: Mapping[RunStatus, frozenset[RunStatus]] = MappingProxyType(
    {
        # queued -> blocked: an upstream's deploy (`depends_on`) did not land; it is never planned
        RunStatus.QUEUED: _SIDE_EXITS | {RunStatus.PLANNING, RunStatus.BLOCKED},
        RunStatus.PLANNING: _SIDE_EXITS
        | {
            RunStatus.NO_CHANGES,
            RunStatus.PLANNED,
            RunStatus.AWAITING_APPROVAL,
            RunStatus.APPLYING,
            RunStatus.BLOCKED,
            RunStatus.AWAITING_WINDOW,
        },
        RunStatus.AWAITING_APPROVAL: _SIDE_EXITS
        | {RunStatus.APPROVED, RunStatus.REJECTED, RunStatus.EXPIRED},
        # Approved outside a sync window: it waits for one, its approvals kept.
        RunStatus.APPROVED: _SIDE_EXITS | {RunStatus.APPLYING, RunStatus.AWAITING_WINDOW},
        # The window opened: cleared to apply, as an approved run is (tfops.windows).
        RunStatus.AWAITING_WINDOW: _SIDE_EXITS | {RunStatus.APPROVED},
        RunStatus.APPLYING: _SIDE_EXITS | {RunStatus.APPLIED},
        **{status: frozenset() for status in TERMINAL_STATUSES},
    }
)

# Statuses in which a run's saved plan may still be applied, so the plan file is kept. A
# `planned` run is never applied (`ask` is the way to apply a reviewed plan): its file goes.
PLAN_KEPT_STATUSES = frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.APPROVED, RunStatus.AWAITING_WINDOW})


class RunReason(StrEnum):
    """Why a run is in its status: a small fixed set that metrics and Slack can group by.

    The status says where a run is; the reason says why, in one word a dashboard can count
    (tofu-controller's `*Reason` constants). The event's message carries the detail text.
    New values are added at the end; a value this version does not know reads as None.
    """

    STARTED = "started"  # a worker took it: planning
    NO_CHANGES = "no_changes"  # the plan changes nothing
    CODE_PENDING = "code_pending"  # a drift plan of code not deployed yet: its deploy decides
    PLAN_REQUESTED = "plan_requested"  # a person asked for a plan; plans never apply by themselves
    PLAN_ERRORED = "plan_errored"  # Terraform marked the plan as errored
    POLICY_APPLY = "policy_apply"  # on_merge: apply / on_drift: remediate
    POLICY_ASK = "policy_ask"  # on_merge / on_drift: ask
    # on_merge: plan / on_drift: notify or ignore: the plan is recorded, nothing applied
    POLICY_RECORD = "policy_record"
    APPROVED = "approved"  # approvers approved: the approved plan is (being) applied
    REJECTED = "rejected"
    APPROVAL_EXPIRED = "approval_expired"  # nobody decided in time, or the stack is gone
    APPLIED = "applied"
    NEWER_COMMIT = "newer_commit"  # superseded: a newer commit of the stack is queued
    STALE_PLAN = "stale_plan"  # superseded: the saved plan no longer matches the branch or the state
    TERRAFORM_FAILED = "terraform_failed"  # a Terraform command exited non-zero
    ERROR = "error"  # another classified error (git, the plan's format, the stack's files)
    INTERNAL_ERROR = "internal_error"  # a bug in tfops
    STACK_REMOVED = "stack_removed"  # the stack is no longer configured
    TIMEOUT = "timeout"  # terraform.timeout ran out
    STOPPED = "stopped"  # the daemon stopped while the run was working
    DAEMON_RESTARTED = "daemon_restarted"  # the previous daemon died mid-run; found at start-up
    # Change guards (tfops.guards): the plan destroys or replaces more than the stack allows, or a
    # protected address; a person must approve it, or it ends `blocked`.
    GUARD_MAX_DESTROY = "guard_max_destroy"
    GUARD_MAX_REPLACE = "guard_max_replace"
    GUARD_PROTECTED = "guard_protected"
    GUARD_OVERRIDDEN = "guard_overridden"  # tripped, but `tfops deploy --allow-destroy` said apply
    DRIFT_IGNORED = "drift_ignored"  # every drift found matches the stack's drift ignore rules
    # the drift plan would also revert ignored attributes: never remediated by itself
    IGNORED_IN_PLAN = "ignored_in_plan"
    # Sync windows (tfops.windows): outside one a plan waits (`awaiting_window`) and goes on at the
    # window's start; `tfops deploy --override-window` applies it at once.
    WINDOW_CLOSED = "window_closed"
    WINDOW_OPENED = "window_opened"
    WINDOW_OVERRIDDEN = "window_overridden"
    # `depends_on`: an upstream stack's deploy failed, was rejected, expired or was blocked; this
    # deploy ends `blocked` before planning rather than apply against the upstream's stale outputs
    UPSTREAM_FAILED = "upstream_failed"


class DriftState(StrEnum):
    IN_SYNC = "in_sync"
    DRIFTED = "drifted"  # something changed outside Terraform (`resource_drift`)
    PENDING = "pending"  # no drift, but the stack's code at the head is not deployed yet
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
class StackAws:
    """The AWS identities a stack's Terraform runs with: roles from tfops' config, never the repo.

    tfops assumes `plan_role` for plan, drift and show and `apply_role` for the apply of a saved
    plan, from its own identity, and gives Terraform only that process's temporary credentials.
    A stack without roles (None) inherits the daemon's environment as before.
    """

    plan_role: str | None = None
    apply_role: str | None = None
    external_id_env: str | None = None  # the environment variable holding the external id
    session_duration: float = 3600.0  # seconds
    attribution: bool = False  # look up who caused a drift in CloudTrail

    @property
    def has_roles(self) -> bool:
        return self.plan_role is not None or self.apply_role is not None


@dataclass(frozen=True)
class DriftIgnoreRule:
    """Drift that is meant to happen (`drift.ignore`): resources by address or type glob, and
    attribute paths into them (`*` matches one step); no attributes: the whole resource."""

    address: str | None = None  # glob over the resource address, e.g. "aws_autoscaling_group.*"
    type: str | None = None  # glob over the resource type, e.g. "aws_instance"
    attributes: tuple[str, ...] = ()  # e.g. "desired_capacity", "tags.LastScanned", "rule.*.port"


@dataclass(frozen=True)
class StackGuards:
    """Limits a plan must stay within to be applied without a person (`guards`)."""

    max_destroy: int | None = None  # None: no limit
    max_replace: int | None = None
    protect: tuple[str, ...] = ()  # address globs never destroyed or replaced without a person

    @property
    def active(self) -> bool:
        return self.max_destroy is not None or self.max_replace is not None or bool(self.protect)


class WindowKind(StrEnum):
    ALLOW = "allow"  # with any allow window, the actions happen only inside one
    DENY = "deny"  # never inside one; deny wins over allow


class WindowAction(StrEnum):
    APPLY = "apply"  # a deploy's apply (approved or not)
    REMEDIATE = "remediate"  # a drift run's apply, reverting drift


@dataclass(frozen=True)
class SyncWindow:
    """When applies may happen (`windows:`): from each time `schedule` (cron, in the stack's
    timezone) fires, for `duration` seconds of real time."""

    kind: WindowKind
    schedule: str  # five cron fields, day of week by name: "0 17 * * FRI"
    duration: float  # seconds
    actions: tuple[WindowAction, ...] = (WindowAction.APPLY, WindowAction.REMEDIATE)


@dataclass(frozen=True)
class StackWindows:
    windows: tuple[SyncWindow, ...] = ()
    timezone: str = "UTC"  # an IANA name; the schedules' clock


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
    aws: StackAws = StackAws()
    # Terraform variables read from AWS at each run: (environment name, "ssm:/path" or
    # "secretsmanager:name#key"), sorted pairs. Their values join the run's redaction.
    secrets: tuple[tuple[str, str], ...] = ()
    backend_config: tuple[str, ...] = ()  # files relative to the stack, passed to init as -backend-config
    drift_ignore: tuple[DriftIgnoreRule, ...] = ()
    guards: StackGuards = StackGuards()
    windows: StackWindows = StackWindows()
    # `depends_on`: stacks whose deploys of the same commit go first (tfops.ordering)
    depends_on: tuple[str, ...] = ()

    @property
    def needs_aws(self) -> bool:
        """Does a run of this stack ask AWS for anything: a role, a secret, who caused a drift?"""
        return self.aws.has_roles or bool(self.secrets) or self.aws.attribution


@dataclass(frozen=True)
class Trigger:
    """Why a run exists. Recorded with the run; never a source of code."""

    source: TriggerSource
    actor: str = "tfops"  # who or what asked: "poll", a user name, a webhook delivery id
    previous_sha: str | None = None  # the commit the stack was last applied at, if known
    forced: bool = False  # the remote head was rewritten (force-push)
    note: str = ""
    # `tfops deploy --allow-destroy`: a person applies a plan the change guards would stop
    allow_destroy: bool = False
    # `tfops deploy --override-window`: a person applies now, outside the stack's sync windows
    override_window: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = {
            "source": self.source.value,
            "actor": self.actor,
            "previous_sha": self.previous_sha,
            "forced": self.forced,
            "note": self.note,
        }
        if self.allow_destroy:  # only then: triggers recorded before keep their shape
            data["allow_destroy"] = True
        if self.override_window:
            data["override_window"] = True
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trigger:
        return cls(
            source=TriggerSource(data["source"]),
            actor=data.get("actor", "tfops"),
            previous_sha=data.get("previous_sha"),
            forced=bool(data.get("forced", False)),
            note=data.get("note", ""),
            allow_destroy=bool(data.get("allow_destroy", False)),
            override_window=bool(data.get("override_window", False)),
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
    # The plan's changes were left out: they would also deploy code that is not deployed yet, which
    # its own deploy run shows. Set on drift runs, whose report is the drift alone.
    pending_code: bool = False
    # Who changed each drifted resource (CloudTrail), on drift reports of stacks with
    # `aws.attribution`; None: not looked up.
    attribution: tuple[ResourceAttribution, ...] | None = None
    # Drift matching the stack's ignore rules (tfops.drift_ignore): the ignored part of each
    # drifted resource, and the planned changes (or parts) that would only revert it. Kept out of
    # `drift` and `changes`, so they neither make a stack drifted nor get applied by themselves.
    ignored: tuple[ResourceChange, ...] = ()
    ignored_changes: tuple[ResourceChange, ...] = ()

    def attribution_of(self, address: str) -> ResourceAttribution | None:
        for found in self.attribution or ():
            if found.address == address:
                return found
        return None

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

    def drift_only(self) -> PlanSummary:
        """This summary without the changes, which carry code not deployed yet."""
        return replace(self, changes=(), output_changes=(), ignored_changes=(), pending_code=True)


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
    reason: RunReason | None = None  # why it is in its status (None: before 0004, or unknown)
    instance_id: str | None = None  # the `tfops serve` instance that works on it (0007)


@dataclass
class StackState:
    """What the store remembers about a stack between runs."""

    name: str
    path: str
    head_sha: str | None = None  # the branch head at the last fetch
    applied_sha: str | None = None  # commit of the last successful apply (or no-change deploy)
    drift: DriftState = DriftState.UNKNOWN
    drift_checked_at: datetime | None = None
    in_sync_at: datetime | None = None  # when it was last seen in sync (a drift check's start, an apply)
    updated_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# -- Slack delivery and approvals ------------------------------------------------------------------
# Stored by the outbox, decisions and audit tables of the store; used by the notifiers and approvals.


class OutboxKind(StrEnum):
    POST = "post"  # chat.postMessage: the one message of a run
    UPDATE = "update"  # chat.update of the run's message
    EPHEMERAL = "ephemeral"  # chat.postEphemeral, e.g. "you are not an approver"
    FILE = "file"  # files_upload_v2 into the run's thread
    THREAD = "thread"  # a reply in the run's thread


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # given up on: it no longer holds back the items behind it


class DecisionKind(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"


class DecisionSource(StrEnum):
    SLACK = "slack"
    CLI = "cli"


class DecisionOutcome(StrEnum):
    COUNTED = "counted"  # counts towards approvals_required (or rejects the run)
    REFUSED = "refused"  # not an approver, stale binding, run no longer awaiting approval
    DUPLICATE = "duplicate"  # the same person's same decision already counts


# -- Instances of `tfops serve` sharing one store (tfops.ha) ------------------------------------------


class InstanceRole(StrEnum):
    LEADER = "leader"  # runs the poller, the drift timers, approval expiry and Slack delivery
    FOLLOWER = "follower"  # runs what it claims from the queue


@dataclass(frozen=True)
class Instance:
    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    role: InstanceRole
    runs_in_flight: int = 0  # runs planning, approved or applying that it took
