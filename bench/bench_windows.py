"""Benchmark of sync windows, against a baseline measured in the same run.

What a run pays to ask its stack's windows (`window_gate.windowed`, which finds the next opening
when the run must wait), and what the wake-up job pays per tick for N waiting runs
(`scheduler.due_window_runs`), against what every run already pays to read its plan: `summarize`
of a `show -json` document of R resources. Windows: the issue's freeze and office hours in
Europe/Berlin, asked on a Saturday (closed: the next opening is looked for), and a pathological
deny window that starts every minute. Medians of several repetitions. Usage:

    .venv/bin/python bench/bench_windows.py [--resources 50] [--waiting 500] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from bench_policy_rules import show_json

from tfops.models import (
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
from tfops.policy import Action, Decision
from tfops.scheduler import due_window_runs
from tfops.terraform.plan import summarize
from tfops.window_gate import windowed

SATURDAY = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
ISSUE = StackWindows(
    (
        SyncWindow(WindowKind.DENY, "0 17 * * FRI", 64 * 3600.0),
        SyncWindow(WindowKind.ALLOW, "0 8 * * MON-FRI", 36000.0, (WindowAction.APPLY,)),
    ),
    "Europe/Berlin",
)
EVERY_MINUTE = StackWindows((SyncWindow(WindowKind.DENY, "* * * * *", 3600.0),), "Europe/Berlin")


def median_ms(work: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resources", type=int, default=50)
    parser.add_argument("--waiting", type=int, default=500)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    document = show_json(args.resources, 10)
    apply = Decision(Action.APPLY, "on_merge: apply", RunReason.POLICY_APPLY)
    run = Run(1, "s0", RunKind.DEPLOY, RunStatus.PLANNING, Trigger(TriggerSource.POLL), commit_sha="c" * 40)
    stacks = {f"s{n}": Stack(name=f"s{n}", path=f"stacks/s{n}", windows=ISSUE) for n in range(args.waiting)}
    # Each stack its own freeze (another minute): nothing is shared between them.
    own = {
        name: replace(
            stack, windows=StackWindows((replace(ISSUE.windows[0], schedule=f"{n % 60} 17 * * FRI"),))
        )
        for n, (name, stack) in enumerate(stacks.items())
    }
    waiting = [
        replace(run, id=n, stack=f"s{n}", status=RunStatus.AWAITING_WINDOW) for n in range(args.waiting)
    ]

    baseline = median_ms(lambda: summarize(document), args.reps)
    rows = [
        (
            "one run, issue's windows (waits)",
            median_ms(lambda: windowed(apply, stacks["s0"], run, SATURDAY), args.reps),
        ),
        (
            "one run, a deny every minute (waits)",
            median_ms(
                lambda: windowed(apply, replace(stacks["s0"], windows=EVERY_MINUTE), run, SATURDAY), args.reps
            ),
        ),
        (
            f"wake-up tick, {args.waiting} waiting runs, the defaults' windows",
            median_ms(lambda: due_window_runs(waiting, stacks, SATURDAY), args.reps),
        ),
        (
            f"wake-up tick, {args.waiting} waiting runs, windows of their own",
            median_ms(lambda: due_window_runs(waiting, own, SATURDAY), args.reps),
        ),
    ]
    print(f"baseline: summarize of {args.resources} resources: {baseline:.2f} ms")
    print("| case | windows | summarize (baseline) | ratio |")
    print("| --- | --- | --- | --- |")
    for name, spent in rows:
        print(f"| {name} | {spent:.2f} ms | {baseline:.2f} ms | {spent / baseline:.3f} |")


if __name__ == "__main__":
    main()
