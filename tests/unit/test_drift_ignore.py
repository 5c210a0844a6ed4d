"""Drift ignore rules (tfops.drift_ignore and policy.decide) on real `terraform show -json` plans."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfops.drift_ignore import IgnoreRules, PathSyntaxError, glob_match, path_steps
from tfops.models import (
    AttributeChange,
    DriftIgnoreRule,
    DriftState,
    OnDrift,
    PlanSummary,
    ResourceChange,
    RunKind,
    RunReason,
    Stack,
)
from tfops.policy import Action, decide, drift_state_after_plan, without_ignored_drift
from tfops.terraform.plan import summarize
from tfops.terraform.summary import render_text, summary_from_dict, summary_to_dict

PLANS = Path(__file__).resolve().parents[1] / "fixtures" / "plans"
SHA = "b" * 40


def plan(name: str) -> PlanSummary:
    return summarize(json.loads((PLANS / f"{name}.json").read_text()))


def rule(address=None, type=None, attributes=()) -> DriftIgnoreRule:
    return DriftIgnoreRule(address=address, type=type, attributes=tuple(attributes))


def drift_stack(*rules: DriftIgnoreRule, on_drift=OnDrift.REMEDIATE, approvers=()) -> Stack:
    return Stack(name="site", path="stacks/site", on_drift=on_drift, drift_ignore=rules, approvers=approvers)


def drift_decision(stack: Stack, summary: PlanSummary):
    seen = without_ignored_drift(stack, RunKind.DRIFT, summary)
    return seen, decide(stack, RunKind.DRIFT, seen, commit_sha=SHA, code_applied=True)


# --- the matcher ----------------------------------------------------------------------------------


def test_attribute_paths_read_as_tfops_show_prints_them():
    assert path_steps("tags.env") == ("tags", "env")
    assert path_steps("rule[0].port") == ("rule", "0", "port")
    assert path_steps('tags["kubernetes.io/cluster"]') == ("tags", "kubernetes.io/cluster")
    assert path_steps("rule[*].port") == path_steps("rule.*.port") == ("rule", "*", "port")
    for bad in ("", "tags..env", ".tags", "tags[x]", "tags env"):
        with pytest.raises(PathSyntaxError):
            path_steps(bad)


def test_address_globs_take_brackets_literally_and_star_spans_dots():
    assert glob_match("aws_autoscaling_group.*", "aws_autoscaling_group.web[0]")
    assert glob_match("module.cache.*", "module.cache.aws_elasticache_cluster.this")
    assert glob_match("aws_instance.web[0]", "aws_instance.web[0]")
    assert not glob_match("aws_instance.web[0]", "aws_instance.web0")  # fnmatch would say yes
    assert not glob_match("aws_instance.*", "module.app.aws_instance.web")


def test_an_ignored_attribute_is_set_aside_and_the_rest_of_the_drift_stays():
    summary = IgnoreRules([rule(type="demo_object", attributes=["tags.env"])]).apply(plan("drift"))

    assert [a.path for a in summary.drift[0].attributes] == ["content"]
    assert [a.path for a in summary.ignored[0].attributes] == ["tags.env"]
    assert [a.path for a in summary.changes[0].attributes] == ["content"]
    assert [a.path for a in summary.ignored_changes[0].attributes] == ["tags.env"]


def test_a_rule_on_a_map_covers_the_keys_below_it_and_a_star_covers_any_one_step():
    for attributes in (["tags"], ["tags.*"], ["content", "tags.env"]):
        summary = IgnoreRules([rule(address="demo_object.*", attributes=attributes)]).apply(plan("drift"))
        kept = {a.path for change in summary.drift for a in change.attributes}
        assert kept == ({"content"} if attributes != ["content", "tags.env"] else set()), attributes


def test_a_rule_without_attributes_ignores_the_whole_resource_even_a_deletion():
    summary = IgnoreRules([rule(address="demo_object.site")]).apply(plan("deleted_outside"))

    assert summary.drift == () and summary.changes == ()
    assert [c.action for c in summary.ignored] == ["delete"]
    assert [c.action for c in summary.ignored_changes] == ["create"]


def test_attribute_rules_never_hide_a_deletion_or_a_recreation():
    summary = IgnoreRules([rule(type="demo_object", attributes=["content"])]).apply(plan("deleted_outside"))

    assert [c.action for c in summary.drift] == ["delete"]
    assert [c.action for c in summary.changes] == ["create"]
    # ... but the plan is known to touch the ignored attribute
    assert [a.path for a in summary.ignored_changes[0].attributes] == ["content"]


def test_rules_that_select_other_resources_change_nothing():
    original = plan("drift")
    for other in (
        rule(type="aws_instance"),
        rule(address="demo_object.other"),
        rule(type="demo_*", attributes=["x"]),
    ):
        assert IgnoreRules([other]).apply(original) == original


# --- what a drift run makes of it -----------------------------------------------------------------


def test_drift_that_is_all_ignored_is_no_drift_and_nothing_is_applied():
    stack = drift_stack(rule(address="demo_object.site", attributes=["content", "tags"]))

    seen, decision = drift_decision(stack, plan("drift"))

    assert decision.action is Action.NOTHING and decision.why is RunReason.DRIFT_IGNORED
    assert "demo_object.site" in decision.reason
    assert drift_state_after_plan(seen, code_applied=True) is DriftState.IN_SYNC


def test_partly_ignored_drift_is_not_remediated_when_the_plan_would_revert_the_ignored_part():
    stack = drift_stack(rule(type="demo_object", attributes=["tags.env"]))

    seen, decision = drift_decision(stack, plan("drift"))

    assert decision.action is Action.RECORD and decision.why is RunReason.IGNORED_IN_PLAN
    assert "demo_object.site (tags.env)" in decision.reason
    assert drift_state_after_plan(seen, code_applied=True) is DriftState.DRIFTED


def test_partly_ignored_drift_asks_the_approvers_when_there_are_some():
    stack = drift_stack(rule(type="demo_object", attributes=["tags.env"]), approvers=("U0ALICE",))

    _, decision = drift_decision(stack, plan("drift"))

    assert decision.action is Action.ASK and decision.why is RunReason.IGNORED_IN_PLAN


def test_drift_on_a_resource_the_rules_do_not_touch_is_remediated_as_before():
    other = ResourceChange(
        "demo_object.other", "demo_object", "update", (AttributeChange("content", "a", "b"),)
    )
    ignored = ResourceChange(
        "demo_object.site", "demo_object", "update", (AttributeChange("tags.scan", "1", "2"),)
    )
    summary = PlanSummary("1.0.3", "0.2", changes=(other,), drift=(other, ignored))

    seen, decision = drift_decision(drift_stack(rule(attributes=["tags.scan"], type="demo_object")), summary)

    assert decision.action is Action.APPLY
    assert [c.address for c in seen.drift] == ["demo_object.other"]
    assert [c.address for c in seen.ignored] == ["demo_object.site"]


def test_deploy_runs_are_not_filtered_by_drift_rules():
    stack = drift_stack(rule(address="demo_object.site"))
    assert without_ignored_drift(stack, RunKind.DEPLOY, plan("update")) == plan("update")


def test_ignored_drift_is_kept_in_the_record_and_shown_as_ignored():
    stack = drift_stack(rule(type="demo_object", attributes=["tags.env"]))
    seen = without_ignored_drift(stack, RunKind.DRIFT, plan("drift"))

    data = summary_to_dict(seen)
    text = render_text(seen)

    assert [item["address"] for item in data["ignored"]] == ["demo_object.site"]
    assert summary_from_dict(data) == seen
    assert "Ignored drift" in text and "tags.env" in text.split("Ignored drift", 1)[1]
    # summaries without ignored drift keep the shape readers knew
    assert "ignored" not in summary_to_dict(plan("drift"))
