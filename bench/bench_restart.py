"""Benchmark: a restart of the daemon at N in-sync stacks with a 1 h drift interval.

What it counts: the drift runs started in the first 5 minutes after the restart, against the
stacks actually due in those 5 minutes (checked more than 55 minutes before). Target: none
started beyond those due (the ratio started/due <= 1.0, and 0 stacks started that were not due).

How: a real SQLite store seeded through tfops' API (stacks synced, applied, drift-checked in
sync); then each stack's `drift_checked_at` is aged so the checks are spread over the last hour,
as an hour of 1 h timers leaves them (one UPDATE through `Store.engine`: the store's API stamps
"now" and has no way to write the past). The restart is the real code path: a fresh `Scheduler`
over that store syncs its drift timers (what its first poll does), with a fake clock; the timers
that fall in the first 5 minutes are fired through `Scheduler.check_drift` into a real
`RunQueue`, whose executor finishes each run at once. Runs created in the store are counted.

Baselines in the same run: the stacks due (from the store), and the rule before issue 12 (each
first check at a uniform moment within 10 % of the interval), recomputed with the same random
generator. Medians of several restarts (a fresh scheduler and seed each). Usage:

    .venv/bin/python bench/bench_restart.py [--stacks 500] [--interval 3600] [--reps 5]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from tfops import proc
from tfops.models import DriftState, RunKind, RunStatus, Stack
from tfops.notify import MultiNotifier
from tfops.reconcile import Transitions
from tfops.run_queue import RunQueue
from tfops.scheduler import Scheduler, StackRegistry
from tfops.stacks import Discovery
from tfops.store import Store, schema

SHA = "b" * 40
WINDOW = timedelta(minutes=5)


OPTIONS = (
    ("--stacks", int, 500, "in-sync stacks in the estate"),
    ("--interval", float, 3600.0, "their drift interval, seconds"),
    ("--reps", int, 5, "restarts, each with a fresh scheduler and seed"),
)


def main() -> None:
    layout = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=layout)
    for flag, kind, default, meaning in OPTIONS:
        parser.add_argument(flag, type=kind, default=default, help=meaning)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="tfops-bench-restart-"))
    try:
        names = [f"stack{i:04d}" for i in range(args.stacks)]
        now = seed(root / "seed.db", names, args.interval)
        results = [restart(root, rep, names, args.interval, now) for rep in range(args.reps)]
        report(args, results)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def seed(path: Path, names: list[str], interval: float) -> datetime:
    """Stacks deployed and found in sync, their last checks spread over the last interval."""
    store = Store(Store.sqlite_url(path))
    store.upgrade()
    store.sync_stacks([(name, f"stacks/{name}") for name in names])
    store.set_head_all(SHA)
    for name in names:
        store.mark_stack_applied(name, SHA)
        store.set_drift(name, DriftState.IN_SYNC)
    now = datetime.now(UTC)
    with store.engine.begin() as connection:
        for i, name in enumerate(names):
            checked = now - timedelta(seconds=interval * (i + 0.5) / len(names))
            connection.execute(
                update(schema.stacks).where(schema.stacks.c.name == name).values(drift_checked_at=checked)
            )
    store.close()
    return now


class InstantExecutor:
    """Stands in for the reconciler: a drift run finds nothing, at once."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, run_id: int, cancel: proc.Cancel) -> object:
        self.store.transition(run_id, RunStatus.PLANNING)
        return self.store.transition(run_id, RunStatus.NO_CHANGES)


def restart(root: Path, rep: int, names: list[str], interval: float, now: datetime) -> dict:
    path = root / f"restart{rep}.db"
    shutil.copy(root / "seed.db", path)
    store = Store(Store.sqlite_url(path))
    queue = RunQueue(store, Transitions(store, MultiNotifier()), InstantExecutor(store), max_parallel=4)
    stacks = tuple(Stack(name=name, path=f"stacks/{name}", drift_interval=interval) for name in names)
    registry = StackRegistry(discover=lambda _root: Discovery(stacks=stacks), root=root)
    rng = random.Random(rep)
    scheduler = Scheduler(
        poller=_NoPoll(), queue=queue, registry=registry, store=store, poll_interval=60.0,
        clock=lambda: now, rng=rng,
    )  # fmt: skip
    started = time.perf_counter()
    scheduler.sync_drift_timers()
    sync_seconds = time.perf_counter() - started
    fired = [name for name in names if _next(scheduler, name) <= now + WINDOW]
    for name in fired:
        scheduler.check_drift(name)
    queue.wait_idle()
    runs = store.list_runs(limit=len(names) + 1)
    drift_started = {run.stack for run in runs if run.kind is RunKind.DRIFT}
    due = {
        s.name
        for s in store.list_stacks()
        if s.drift_checked_at + timedelta(seconds=interval) <= now + WINDOW
    }
    old_rule = sum(1 for _ in names if rng.uniform(0, interval * 0.1) <= WINDOW.total_seconds())
    queue.shutdown(wait=5)
    store.close()
    return {
        "started": len(drift_started),
        "beyond_due": len(drift_started - due),
        "due": len(due),
        "old_rule": old_rule,
        "sync_ms": sync_seconds * 1000,
    }


class _NoPoll:
    def poll(self) -> object:
        return None


def _next(scheduler: Scheduler, name: str) -> datetime:
    when = scheduler.next_drift_check(name)
    assert when is not None, f"no drift timer for {name}"
    return when


def report(args, results: list[dict]) -> None:
    med = {key: statistics.median(r[key] for r in results) for key in results[0]}
    print(f"# tfops restart benchmark ({args.stacks} in-sync stacks, drift interval {args.interval:.0f}s)")
    print()
    print(f"first 5 minutes after a restart, medians of {args.reps} restarts:")
    print(f"  stacks due (checked > interval - 5 min ago) : {med['due']:.0f}")
    print(f"  rule before issue 12 (first check in 10 %)   : {med['old_rule']:.0f} drift runs")
    print(
        f"  tfops drift runs started                      : {med['started']:.0f}  "
        f"{med['started'] / max(med['due'], 1):.2f}x due (target <= 1.0), "
        f"{med['beyond_due']:.0f} not due (target 0)"
    )
    print(f"  placing the {args.stacks} timers from the store   : {med['sync_ms']:.0f} ms")
    print()
    print("samples:", results)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
