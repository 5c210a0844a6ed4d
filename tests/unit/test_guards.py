"""Change guards (tfops.guards) as policy.decide applies them, on real `terraform show -json` plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfops.app import PassResult
from tfops.guards import tripped
from tfops.models import (
    OnDrift,
    OnMerge,
    PlanSummary,
    Run,
    RunKind,
    RunReason,
    RunStatus,
    Stack,
    StackGuards,
    Trigger,
    TriggerSource,
)
from tfops.policy import Action, decide
from tfops.terraform.plan import summarize

PLANS = Path(__file__).resolve().parents[1] / "fixtures" / "plans"
SHA = "c" * 40


def plan(name: str) -> PlanSummary:
    return summarize(json.loads((PLANS / f"{name}.json").read_text()))


def stack(guards: StackGuards, *, on_merge=OnMerge.APPLY, approvers=()) -> Stack:
    return Stack(name="web", path="stacks/web", on_merge=on_merge, guards=guards, approvers=approvers)


def deploy(stack: Stack, name: str, *, allow_destroy: bool = False):
    return decide(
        stack, RunKind.DEPLOY, plan(name), commit_sha=SHA, code_applied=False, allow_destroy=allow_destroy
    )


def test_a_destroy_beyond_max_destroy_is_blocked_on_a_stack_nobody_can_approve():
    decision = deploy(stack(StackGuards(max_destroy=0)), "delete")

    assert decision.action is Action.BLOCK
    assert decision.why is RunReason.GUARD_MAX_DESTROY
    assert "guard max_destroy" in decision.reason and "null_resource.web" in decision.reason
    assert "--allow-destroy" in decision.reason


def test_a_guard_turns_apply_into_a_question_when_the_stack_has_approvers():
    decision = deploy(stack(StackGuards(max_destroy=0), approvers=("U0ALICE",)), "delete")

    assert decision.action is Action.ASK
    assert decision.why is RunReason.GUARD_MAX_DESTROY
    assert decision.reason.startswith("guard max_destroy")


def test_a_protected_address_is_named_whether_destroyed_or_replaced():
    guards = StackGuards(protect=("null_resource.w*",))
    for name in ("delete", "replace"):
        decision = deploy(stack(guards), name)
        assert (decision.action, decision.why) == (Action.BLOCK, RunReason.GUARD_PROTECTED), name
        assert "protected null_resource.web" in decision.reason


def test_max_replace_counts_replacements_only():
    guards = StackGuards(max_replace=0)
    assert deploy(stack(guards), "replace").why is RunReason.GUARD_MAX_REPLACE
    assert deploy(stack(guards), "delete").action is Action.APPLY


@pytest.mark.parametrize("name", ["create", "update", "module"])
def test_plans_within_the_guards_are_decided_by_the_policy_alone(name):
    guards = StackGuards(max_destroy=0, max_replace=0, protect=("*",))
    decision = deploy(stack(guards), name)
    assert (decision.action, decision.why) == (Action.APPLY, RunReason.POLICY_APPLY)


def test_a_limit_the_plan_stays_within_is_not_tripped():
    assert tripped(StackGuards(max_destroy=1, max_replace=1), plan("delete")) == []
    assert tripped(StackGuards(protect=("aws_db_instance.*",)), plan("delete")) == []


def test_every_guard_tripped_is_named_the_most_specific_first():
    trips = tripped(StackGuards(max_destroy=0, protect=("null_resource.*",)), plan("delete"))
    assert [trip.why for trip in trips] == [RunReason.GUARD_PROTECTED, RunReason.GUARD_MAX_DESTROY]


def test_an_ask_stack_still_asks_and_the_guard_is_the_reason():
    decision = deploy(stack(StackGuards(max_destroy=0), on_merge=OnMerge.ASK), "delete")
    assert (decision.action, decision.why) == (Action.ASK, RunReason.GUARD_MAX_DESTROY)


def test_a_plan_stack_records_as_before_guards_only_hold_back_applies():
    decision = deploy(stack(StackGuards(max_destroy=0), on_merge=OnMerge.PLAN), "delete")
    assert decision.action is Action.RECORD and decision.why is RunReason.POLICY_RECORD


def test_allow_destroy_applies_past_the_guards_and_says_so():
    decision = deploy(stack(StackGuards(max_destroy=0)), "delete", allow_destroy=True)

    assert (decision.action, decision.why) == (Action.APPLY, RunReason.GUARD_OVERRIDDEN)
    assert "guard max_destroy" in decision.reason and "--allow-destroy" in decision.reason


def test_allow_destroy_does_not_skip_an_approval_the_policy_asks_for():
    decision = deploy(stack(StackGuards(max_destroy=0), on_merge=OnMerge.ASK), "delete", allow_destroy=True)
    assert decision.action is Action.ASK


def test_drift_remediation_that_would_recreate_a_protected_resource_is_held():
    protected = Stack(
        name="site",
        path="stacks/site",
        on_drift=OnDrift.REMEDIATE,
        guards=StackGuards(protect=("demo_object.*",), max_destroy=0),
    )
    # deleted outside Terraform: reverting it creates, which no guard limits
    created = decide(protected, RunKind.DRIFT, plan("deleted_outside"), commit_sha=SHA, code_applied=True)
    assert created.action is Action.APPLY
    # a drift plan that would destroy is held like a deploy, whatever on_drift says
    destroy = decide(protected, RunKind.DRIFT, plan("delete"), commit_sha=SHA, code_applied=True)
    assert (destroy.action, destroy.why) == (Action.BLOCK, RunReason.GUARD_MAX_DESTROY)


def test_a_blocked_run_is_a_change_left_pending_for_tfops_reconcile_not_a_failure():
    blocked = Run(7, "web", RunKind.DEPLOY, RunStatus.BLOCKED, Trigger(TriggerSource.POLL), commit_sha=SHA)
    assert PassResult([blocked]).exit_code == 2
