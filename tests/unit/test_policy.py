"""policy.decide: apply or stop, with the reason recorded on the run."""

from __future__ import annotations

import pytest

from tfops.models import (
    AttributeChange,
    DriftState,
    OnDrift,
    OnMerge,
    PlanSummary,
    ResourceChange,
    RunKind,
    Stack,
)
from tfops.policy import Action, decide, drift_report, drift_state_after_plan

SHA = "a" * 40
CHANGE = ResourceChange(address="demo_object.web", type="demo_object", action="update")
DRIFT = ResourceChange(
    address="demo_object.web",
    type="demo_object",
    action="update",
    attributes=(AttributeChange("content", "v1", "edited"),),
)
WITH_CHANGES = PlanSummary(terraform_version="1.0.3", format_version="0.2", changes=(CHANGE,), drift=(DRIFT,))
EMPTY = PlanSummary(terraform_version="1.0.3", format_version="0.2")


def stack(on_merge=OnMerge.APPLY, on_drift=OnDrift.NOTIFY) -> Stack:
    return Stack(name="web", path="stacks/web", on_merge=on_merge, on_drift=on_drift)


def test_an_empty_plan_is_never_applied_whatever_the_policy():
    for kind in RunKind:
        assert decide(stack(), kind, EMPTY, commit_sha=SHA, code_applied=True).action is Action.NOTHING


def test_a_merged_change_is_applied_under_on_merge_apply():
    decision = decide(stack(), RunKind.DEPLOY, WITH_CHANGES, commit_sha=SHA, code_applied=False)
    assert (decision.action, decision.reason) == (Action.APPLY, "on_merge: apply")


def test_a_merged_change_waits_under_on_merge_plan():
    decision = decide(
        stack(on_merge=OnMerge.PLAN), RunKind.DEPLOY, WITH_CHANGES, commit_sha=SHA, code_applied=False
    )
    assert decision.action is Action.RECORD
    assert "on_merge: plan" in decision.reason


def test_a_plan_asked_for_by_a_person_is_never_applied():
    decision = decide(stack(), RunKind.PLAN, WITH_CHANGES, commit_sha=SHA, code_applied=True)
    assert decision.action is Action.RECORD


@pytest.mark.parametrize("on_drift", [OnDrift.NOTIFY, OnDrift.IGNORE])
def test_drift_is_only_recorded_unless_the_stack_says_remediate(on_drift):
    decision = decide(
        stack(on_drift=on_drift), RunKind.DRIFT, WITH_CHANGES, commit_sha=SHA, code_applied=True
    )
    assert decision.action is Action.RECORD
    assert on_drift.value in decision.reason


def test_drift_is_reverted_under_remediate_when_the_code_is_deployed():
    decision = decide(
        stack(on_drift=OnDrift.REMEDIATE), RunKind.DRIFT, WITH_CHANGES, commit_sha=SHA, code_applied=True
    )
    assert decision.action is Action.APPLY


def test_remediation_never_applies_code_that_was_not_deployed():
    decision = decide(
        stack(on_merge=OnMerge.PLAN, on_drift=OnDrift.REMEDIATE),
        RunKind.DRIFT,
        WITH_CHANGES,
        commit_sha=SHA,
        code_applied=False,
    )
    assert decision.action is Action.RECORD
    assert "not deployed yet" in decision.reason


def test_an_errored_plan_is_never_applied():
    errored = PlanSummary(terraform_version="1.0.3", format_version="0.2", changes=(CHANGE,), errored=True)
    decision = decide(stack(), RunKind.DEPLOY, errored, commit_sha=SHA, code_applied=True)
    assert decision.action is Action.RECORD


# --- drift is what changed outside Terraform; undeployed code is pending ----------------------------

PENDING_ONLY = PlanSummary(terraform_version="1.0.3", format_version="0.2", changes=(CHANGE,))


@pytest.mark.parametrize("on_drift", list(OnDrift))
def test_a_drift_plan_of_undeployed_code_alone_is_pending_not_drift(on_drift):
    decision = decide(
        stack(on_drift=on_drift), RunKind.DRIFT, PENDING_ONLY, commit_sha=SHA, code_applied=False
    )

    assert decision.action is Action.NOTHING, "nothing to report as drift, nothing to revert"
    assert "no drift" in decision.reason and "pending" in decision.reason
    assert drift_state_after_plan(PENDING_ONLY, code_applied=False) is DriftState.PENDING


def test_changes_on_a_deployed_stack_are_drift_even_without_resource_drift():
    assert drift_state_after_plan(PENDING_ONLY, code_applied=True) is DriftState.DRIFTED
    assert drift_report(PENDING_ONLY, code_applied=True) == PENDING_ONLY


def test_drift_beside_undeployed_code_is_drift_and_only_the_drift_is_reported():
    report = drift_report(WITH_CHANGES, code_applied=False)

    assert drift_state_after_plan(WITH_CHANGES, code_applied=False) is DriftState.DRIFTED
    assert (report.drift, report.changes, report.output_changes) == ((DRIFT,), (), ())
    assert report.pending_code and not report.has_changes


def test_an_empty_drift_plan_is_in_sync_whether_or_not_code_is_pending():
    for applied in (True, False):
        assert drift_state_after_plan(EMPTY, code_applied=applied) is DriftState.IN_SYNC
