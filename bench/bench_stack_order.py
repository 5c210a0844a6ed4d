"""Benchmark of stack order's cost in the run queue, against the same queue without order, in the
same run.

A commit touching N stacks queues N deploys. With `depends_on`, each dispatch asks the store
about the upstreams of every pending deploy that has some (`ordering.admit`). Measured: the wall
time from the first submit until the queue is idle, real SQLite store, an executor that ends each
run `no_changes` at once (so the queue and the store are all that is measured), for

- baseline: no order (`order=None`);
- order, no `depends_on` anywhere: what every estate pays once this ships;
- order, every stack but `network` depending on `network` (whose deploy is queued first);
- the same, with `network`'s deploy still running until every deploy is queued (as a real
  apply would be): every submit then looks at every held deploy.

Medians of several repetitions; these machines are noisy. Usage:

    .venv/bin/python bench/bench_stack_order.py [--stacks 300] [--parallel 4] [--reps 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from tfops.models import RunKind, RunStatus, Stack, Trigger, TriggerSource
from tfops.notify import MultiNotifier
from tfops.run_queue import RunQueue, StackOrder
from tfops.store import Store
from tfops.transitions import Transitions

TRIGGER = Trigger(source=TriggerSource.POLL, actor="bench")
SHA = "1" * 40


def estate(count: int, *, ordered: bool) -> dict[str, Stack]:
    upstream = ("network",) if ordered else ()
    stacks = {f"s{i:04d}": Stack(f"s{i:04d}", f"stacks/s{i:04d}", depends_on=upstream) for i in range(count)}
    return {"network": Stack("network", "stacks/network"), **stacks}


def drain(
    directory: Path, stacks: dict[str, Stack] | None, count: int, parallel: int, *, slow: bool = False
) -> float:
    """Seconds from the first submit until the queue is idle; `slow`: network's deploy runs until
    every deploy is queued."""
    store = Store(Store.sqlite_url(directory / "tfops.db"))
    store.upgrade()
    names = [
        "network",
        *sorted(name for name in (stacks or estate(count, ordered=False)) if name != "network"),
    ]
    store.sync_stacks((name, f"stacks/{name}") for name in names)

    queued = threading.Event()

    def execute(run_id, cancel):
        if slow and run_id == 1:
            queued.wait(600)
        store.transition(run_id, RunStatus.PLANNING, message="planning")
        return store.transition(run_id, RunStatus.NO_CHANGES, message="no changes")

    transitions = Transitions(store, MultiNotifier())
    order = StackOrder(lambda: stacks, transitions) if stacks is not None else None
    queue = RunQueue(store, transitions, execute, parallel, order=order)
    started = time.perf_counter()
    for name in names:
        queue.submit(name, RunKind.DEPLOY, TRIGGER, SHA)
    queued.set()
    assert queue.wait_idle(600)
    elapsed = time.perf_counter() - started
    assert not store.runs_with_status({RunStatus.QUEUED, RunStatus.BLOCKED}), "every deploy ran"
    queue.shutdown(wait=5)
    store.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    cases = {
        "no order (baseline)": None,
        "order, no depends_on": estate(args.stacks, ordered=False),
        "order, all after network": estate(args.stacks, ordered=True),
        "order, all after a running network": estate(args.stacks, ordered=True),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, stacks in cases.items():  # interleaved: drift of the machine hits every case alike
            with tempfile.TemporaryDirectory() as tmp:
                slow = "running" in name
                times[name].append(drain(Path(tmp), stacks, args.stacks, args.parallel, slow=slow))
    base = statistics.median(times["no order (baseline)"])
    print(f"{args.stacks + 1} deploys, max_parallel {args.parallel}, median of {args.reps}")
    print("| case | drain time | ratio to baseline |")
    print("| --- | --- | --- |")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"| {name} | {median * 1000:.0f} ms | {median / base:.2f} |")


if __name__ == "__main__":
    main()
