"""Sync windows around `policy.decide` (tfops.window_gate), in tfops.yaml (resolution into Stack;
the errors are in test_policy_config), and the wake-up job's choice of runs (tfops.scheduler)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tfops.config import load_settings
from tfops.models import (
    OnDrift,
    PlanSummary,
    ResourceChange,
    Run,
    RunKind,
    RunReason,
    RunStatus,
    Stack,
    StackWindows,
    SyncWindow,
    Trigger,
    TriggerSource,
    WindowAction,
    WindowKind,
)
from tfops.policy import Action, decide
from tfops.scheduler import due_window_runs
from tfops.stacks import discover
from tfops.window_gate import RELEASE_GRACE, cleared_apply, windowed

SHA = "c" * 40
FREEZE = SyncWindow(WindowKind.DENY, "0 17 * * FRI", 64 * 3600.0)
FRIDAY_EVENING = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
MONDAY_NOON = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CHANGE = PlanSummary("1.9.0", "1.2", changes=(ResourceChange("aws_instance.web", "aws_instance", "update"),))
DRIFT = replace(CHANGE, drift=CHANGE.changes)


def stack(*windows: SyncWindow, **policy) -> Stack:
    return Stack(name="web", path="stacks/web", windows=StackWindows(windows, "UTC"), **policy)


def run(kind: RunKind = RunKind.DEPLOY, *, status=RunStatus.PLANNING, **trigger) -> Run:
    return Run(1, "web", kind, status, Trigger(TriggerSource.POLL, **trigger), commit_sha=SHA)


def decided(stack: Stack, run: Run, summary: PlanSummary, now: datetime):
    decision = decide(stack, run.kind, summary, commit_sha=SHA, code_applied=True)
    return windowed(decision, stack, run, now)


def test_a_deploy_that_would_apply_inside_a_deny_window_waits_and_says_why_and_until_when():
    decision = decided(stack(FREEZE), run(), CHANGE, FRIDAY_EVENING)

    assert (decision.action, decision.why) == (Action.WAIT, RunReason.WINDOW_CLOSED)
    assert decision.reason.startswith("on_merge: apply; inside the deny window `0 17 * * FRI` for 64h")
    assert "it may apply from 2026-11-30 09:00 UTC" in decision.reason


def test_outside_the_window_the_policy_decides_alone():
    assert decided(stack(FREEZE), run(), CHANGE, MONDAY_NOON).action is Action.APPLY


def test_remediation_is_held_by_a_window_over_remediate_and_planning_never_is():
    remediating = stack(FREEZE, on_drift=OnDrift.REMEDIATE)

    assert decided(remediating, run(RunKind.DRIFT), DRIFT, FRIDAY_EVENING).action is Action.WAIT
    apply_only = stack(replace(FREEZE, actions=(WindowAction.APPLY,)), on_drift=OnDrift.REMEDIATE)
    assert decided(apply_only, run(RunKind.DRIFT), DRIFT, FRIDAY_EVENING).action is Action.APPLY
    plan = decided(stack(FREEZE), run(RunKind.PLAN), CHANGE, FRIDAY_EVENING)
    assert (plan.action, plan.why) == (Action.RECORD, RunReason.PLAN_REQUESTED)


def test_override_window_applies_at_once_and_names_the_window_it_overrode():
    decision = decided(stack(FREEZE), run(override_window=True), CHANGE, FRIDAY_EVENING)

    assert (decision.action, decision.why) == (Action.APPLY, RunReason.WINDOW_OVERRIDDEN)
    assert "deny window" in decision.reason and "--override-window" in decision.reason


def test_an_approved_plan_waits_for_the_window_with_its_approver_named_then_applies_as_approved():
    approved = replace(run(status=RunStatus.APPROVED), decided_by="alice", reason=RunReason.APPROVED)

    waiting = cleared_apply(approved, stack(FREEZE), FRIDAY_EVENING)
    assert (waiting.action, waiting.why) == (Action.WAIT, RunReason.WINDOW_CLOSED)
    assert waiting.reason.startswith("approved by alice; inside the deny window")
    # Released by the wake-up job: not asked again (it saw the window open), the approver still named.
    released = replace(approved, reason=RunReason.WINDOW_OPENED)
    going = cleared_apply(released, stack(FREEZE), FRIDAY_EVENING, released_at=FRIDAY_EVENING)
    assert (going.action, going.why) == (Action.APPLY, RunReason.WINDOW_OPENED)
    assert "approved by alice" in going.reason
    assert cleared_apply(approved, stack(FREEZE), MONDAY_NOON).why is RunReason.APPROVED


def test_a_release_the_daemon_did_not_act_on_in_time_is_asked_again():
    # Released before a restart that came back inside the next freeze: it waits again.
    released = replace(run(status=RunStatus.APPROVED), reason=RunReason.WINDOW_OPENED)
    long_ago = FRIDAY_EVENING - RELEASE_GRACE - timedelta(seconds=1)

    assert cleared_apply(released, stack(FREEZE), FRIDAY_EVENING, released_at=long_ago).action is Action.WAIT
    assert cleared_apply(released, stack(FREEZE), FRIDAY_EVENING, released_at=None).action is Action.WAIT


def test_the_wake_up_job_takes_the_runs_whose_window_is_open_and_those_of_removed_stacks():
    waiting = [
        replace(run(status=RunStatus.AWAITING_WINDOW), id=1),
        replace(run(status=RunStatus.AWAITING_WINDOW), id=2, stack="gone"),
    ]
    stacks = {"web": stack(FREEZE)}

    assert [r.id for r in due_window_runs(waiting, stacks, FRIDAY_EVENING)] == [2]
    assert [r.id for r in due_window_runs(waiting, stacks, MONDAY_NOON)] == [1, 2]


def test_a_stack_that_writes_windows_replaces_the_defaults_and_its_timezone_too(tmp_path):
    for name in ("app", "db", "scratch"):
        (tmp_path / "repo" / name).mkdir(parents=True)
        (tmp_path / "repo" / name / "main.tf").write_text("# terraform\n")
    path = tmp_path / "tfops.yaml"
    path.write_text(
        """defaults:
  windows:
    - {kind: deny, schedule: "0 17 * * FRI", duration: 64h, actions: [apply, remediate]}
    - {kind: allow, schedule: "0 8 * * MON-FRI", duration: 10h, actions: [apply]}
  timezone: Europe/Berlin
stacks:
  - path: app
  - path: db
    windows: [{kind: deny, schedule: "0 0 1 * *", duration: 1d}]
    timezone: UTC
  - path: scratch
    windows: []
""",
    )
    settings = load_settings(path, {"TFOPS_DATA_DIR": str(tmp_path)})

    found = {s.name: s for s in discover(tmp_path / "repo", settings.stacks, settings.defaults).stacks}

    freeze = SyncWindow(WindowKind.DENY, "0 17 * * FRI", 64 * 3600.0)
    office = SyncWindow(WindowKind.ALLOW, "0 8 * * MON-FRI", 36000.0, (WindowAction.APPLY,))
    assert found["app"].windows == StackWindows((freeze, office), "Europe/Berlin")
    assert found["db"].windows == StackWindows((SyncWindow(WindowKind.DENY, "0 0 1 * *", 86400.0),), "UTC")
    assert found["scratch"].windows == StackWindows((), "Europe/Berlin")
