"""Benchmark of drift ignore rules and change guards, against a baseline measured in the same run.

What a drift run pays for the policy layer: `policy.without_ignored_drift` (the stack's ignore
rules over every drifted resource and planned change) and `policy.decide` with change guards,
against what the run already pays to read the plan: `summarize` of the same `show -json`
document. Both on a synthetic plan of N drifted resources with A attributes each (a tenth of
them matching the rules), in the shape Terraform 1.0.3 writes. Medians of several repetitions.
Usage:

    .venv/bin/python bench/bench_policy_rules.py [--resources 2000] [--attributes 10] [--rules 20] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from tfops.models import DriftIgnoreRule, OnDrift, RunKind, Stack, StackGuards
from tfops.policy import Decision, decide, without_ignored_drift
from tfops.terraform.plan import summarize


def show_json(resources: int, attributes: int) -> dict[str, Any]:
    """A drift plan: each resource changed outside Terraform, and the plan to put it back."""
    drift, changes = [], []
    for index in range(resources):
        kind = "aws_autoscaling_group" if index % 10 == 0 else "aws_instance"
        address = f"{kind}.r{index}"
        code: dict[str, Any] = {f"attr{a}": f"v{a}" for a in range(attributes)} | {
            "tags": {"Name": f"r{index}", "scan": "1"}
        }
        real: dict[str, Any] = {f"attr{a}": f"changed{a}" for a in range(attributes)} | {
            "tags": {"Name": f"r{index}", "scan": "2"}
        }
        if kind == "aws_autoscaling_group":
            code["desired_capacity"], real["desired_capacity"] = 2, 5
        common = {"address": address, "mode": "managed", "type": kind, "name": f"r{index}"}
        drift.append(common | {"change": {"actions": ["update"], "before": code, "after": real}})
        changes.append(common | {"change": {"actions": ["update"], "before": real, "after": code}})
    return {
        "format_version": "0.2",
        "terraform_version": "1.0.3",
        "resource_drift": drift,
        "resource_changes": changes,
    }


def stack_with(rules: int) -> Stack:
    ignore = [DriftIgnoreRule(address="aws_autoscaling_group.*", attributes=("desired_capacity",))]
    ignore += [DriftIgnoreRule(type=f"aws_other_{n}", attributes=("tags.scan",)) for n in range(rules - 1)]
    return Stack(
        name="bench",
        path="stacks/bench",
        on_drift=OnDrift.REMEDIATE,
        drift_ignore=tuple(ignore),
        guards=StackGuards(max_destroy=0, max_replace=2, protect=("aws_db_instance.*", "aws_s3_bucket.*")),
    )


def median_seconds(work: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=2000)
    parser.add_argument("--attributes", type=int, default=10)
    parser.add_argument("--rules", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    shown = show_json(args.resources, args.attributes)
    stack = stack_with(args.rules)
    summary = summarize(shown)

    def policy() -> Decision:
        seen = without_ignored_drift(stack, RunKind.DRIFT, summary)
        return decide(stack, RunKind.DRIFT, seen, commit_sha="a" * 40, code_applied=True)

    baseline = median_seconds(lambda: summarize(shown), args.reps)
    added = median_seconds(policy, args.reps)
    decision = policy()
    print(
        f"{args.resources} drifted resources x {args.attributes} attributes, {args.rules} rules, "
        f"medians of {args.reps}: summarize {baseline * 1000:.1f} ms (baseline), "
        f"ignore rules + guards + decide {added * 1000:.1f} ms, ratio {added / baseline:.3f}; "
        f"decision: {decision.action.value} ({decision.why.value})"
    )


if __name__ == "__main__":
    main()
