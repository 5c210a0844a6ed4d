"""Stack order (`depends_on`), pure: topological order, cycles, unknown names, and whether a deploy
may start given its upstreams' deploy runs."""

from __future__ import annotations

import pytest

from tfops.models import Run, RunKind, RunStatus, Trigger, TriggerSource
from tfops.ordering import (
    Verdict,
    admit,
    ancestors,
    find_cycle,
    refuse_broken_order,
    topological,
    unknown_upstreams,
)

TRIGGER = Trigger(source=TriggerSource.POLL)
C1, C2 = "1" * 40, "2" * 40


def run(run_id: int, stack: str, status: RunStatus, sha: str = C1, kind: RunKind = RunKind.DEPLOY) -> Run:
    return Run(id=run_id, stack=stack, kind=kind, status=status, trigger=TRIGGER, commit_sha=sha)


def test_upstreams_come_before_their_downstreams_whatever_the_names_sort_to():
    graph = {"app": ["network"], "network": [], "dns": ["app"], "zeta": []}
    assert topological(graph, graph) == ["network", "zeta", "app", "dns"]


def test_a_chain_orders_its_ends_even_when_the_middle_is_not_among_the_names():
    graph = {"a": [], "b": ["a"], "c": ["b"]}
    assert topological(graph, ["c", "a"]) == ["a", "c"]
    assert ancestors(graph, "c") == ["a", "b"]
    assert ancestors(graph, "a") == []


def test_a_cycle_is_found_and_named_in_order():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["a"]}) == ["a", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_a_long_chain_is_no_recursion_problem():
    graph = {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(3000)}
    assert find_cycle(graph) is None
    graph["s0"] = ["s2999"]
    assert len(find_cycle(graph) or []) == 3001


def test_topological_order_does_not_loop_on_a_cycle():
    assert sorted(topological({"a": ["b"], "b": ["a"]}, ["a", "b"])) == ["a", "b"]


def test_unknown_upstreams_are_listed_per_stack():
    graph = {"app": ["network", "dns"], "network": []}
    assert unknown_upstreams(graph, graph) == {"app": ["dns"]}


def test_discovery_refuses_unknown_upstreams_cycles_and_what_depends_on_them():
    graph = {"app": ["netwrk"], "web": ["app"], "x": ["y"], "y": ["x"], "z": ["x"], "ok": []}
    broken = {item.name: item for item in refuse_broken_order(graph)}
    assert sorted(broken) == ["app", "web", "x", "y", "z"]
    assert "'netwrk'" in broken["app"].detail and not broken["app"].cycle
    assert "'app'" in broken["web"].detail, "web would go without app"
    assert broken["x"].cycle and "x -> y -> x" in broken["x"].detail
    assert "'x'" in broken["z"].detail


def test_a_deploy_waits_while_an_upstream_deploy_is_open_and_says_for_which_run():
    app = run(3, "app", RunStatus.QUEUED)
    for status in (RunStatus.QUEUED, RunStatus.PLANNING, RunStatus.AWAITING_APPROVAL, RunStatus.APPLYING):
        verdict = admit(app, ["network"], {"network": [run(2, "network", status)]})
        assert verdict.verdict is Verdict.WAIT
        waits = ", awaiting approval" if status is RunStatus.AWAITING_APPROVAL else ""
        assert verdict.reason == f"waiting for upstream network (run 2{waits})"
        assert verdict.upstream_run == 2


@pytest.mark.parametrize("status", [RunStatus.APPLIED, RunStatus.NO_CHANGES, RunStatus.SUPERSEDED])
def test_a_deploy_goes_once_its_upstream_deploy_landed(status):
    app = run(3, "app", RunStatus.QUEUED)
    assert admit(app, ["network"], {"network": [run(2, "network", status)]}).verdict is Verdict.GO
    assert admit(app, ["network"], {"network": []}).verdict is Verdict.GO, (
        "no upstream deploy: nothing to wait for"
    )


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (RunStatus.FAILED, "failed"),
        (RunStatus.REJECTED, "was rejected"),
        (RunStatus.EXPIRED, "expired unapproved"),
        (RunStatus.BLOCKED, "was blocked"),
        (RunStatus.TIMED_OUT, "timed out"),
        (RunStatus.INTERRUPTED, "was interrupted"),
    ],
)
def test_a_deploy_is_blocked_when_its_upstream_deploy_did_not_land(status, words):
    verdict = admit(run(3, "app", RunStatus.QUEUED), ["network"], {"network": [run(2, "network", status)]})
    assert verdict.verdict is Verdict.BLOCKED
    assert verdict.reason == f"upstream network {words} in run 2"


def test_the_newest_upstream_deploy_decides():
    app = run(5, "app", RunStatus.QUEUED, C2)
    failed_then_fixed = [run(2, "network", RunStatus.FAILED), run(4, "network", RunStatus.APPLIED, C2)]
    assert admit(app, ["network"], {"network": failed_then_fixed}).verdict is Verdict.GO
    fixed_then_failed = [run(2, "network", RunStatus.APPLIED), run(4, "network", RunStatus.FAILED, C2)]
    assert admit(app, ["network"], {"network": fixed_then_failed}).verdict is Verdict.BLOCKED


def test_an_upstream_that_only_plans_blocks_the_deploy_of_the_same_commit_only():
    planned = {"network": [run(2, "network", RunStatus.PLANNED, C1)]}
    assert admit(run(3, "app", RunStatus.QUEUED, C1), ["network"], planned).verdict is Verdict.BLOCKED
    assert admit(run(3, "app", RunStatus.QUEUED, C2), ["network"], planned).verdict is Verdict.GO


def test_a_chain_blocks_on_its_root_cause_first():
    deploys = {"a": [run(1, "a", RunStatus.FAILED)], "b": [run(2, "b", RunStatus.BLOCKED)]}
    verdict = admit(run(3, "c", RunStatus.QUEUED), ["a", "b"], deploys)
    assert (verdict.verdict, verdict.reason) == (Verdict.BLOCKED, "upstream a failed in run 1")


def test_drift_checks_and_plans_are_not_ordered():
    open_upstream = {"network": [run(2, "network", RunStatus.PLANNING)]}
    for kind in (RunKind.DRIFT, RunKind.PLAN):
        app = run(3, "app", RunStatus.QUEUED, kind=kind)
        assert admit(app, ["network"], open_upstream).verdict is Verdict.GO
