"""Scale-out: several instances' run queues on one store take each queued run exactly once, and
never two runs of one stack at once. One design: every instance runs the same `RunQueue`; the
store's claim (`queued -> planning`) and its one-working-run-per-stack index decide.

On SQLite and on PostgreSQL (`store_url`); each instance has its own Store (engine and pool).
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

from tfops.models import WORKING_STATUSES, RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify import MultiNotifier
from tfops.reconcile import Transitions
from tfops.run_queue import RunQueue
from tfops.store import InvalidTransition, Store

TRIGGER = Trigger(source=TriggerSource.CLI, actor="test")
SHA = "1" * 40
STACKS = ("a", "b", "c", "d")
SEEN_LOCK = threading.Lock()


class ClaimingExecutor:
    """Does what the reconciler does with a run: claim it (`mark_planning`), work, finish."""

    def __init__(self, store: Store, instance: str, seen: Counter, problems: list[str]) -> None:
        self.store = store
        self.transitions = Transitions(store, MultiNotifier(), instance_id=instance)
        self.seen = seen
        self.problems = problems

    def __call__(self, run_id: int, cancel) -> None:
        run = self.store.get_run(run_id)
        try:
            run = self.transitions.mark_planning(run, log_path=Path("/dev/null"))
        except InvalidTransition:  # another instance took it, or its stack is busy (StackBusy)
            return
        with SEEN_LOCK:
            self.seen[run_id] += 1
        working = [r for r in self.store.open_runs(run.stack) if r.status in WORKING_STATUSES]
        if len(working) != 1:
            self.problems.append(f"stack {run.stack}: {len(working)} working runs")
        self.store.transition(run_id, RunStatus.NO_CHANGES, message="done")


def test_three_instances_take_each_of_a_hundred_queued_runs_exactly_once(store_url):
    stores = [Store(store_url) for _ in range(3)]
    stores[0].upgrade()
    stores[0].sync_stacks([(name, f"stacks/{name}") for name in STACKS])
    seen: Counter = Counter()
    problems: list[str] = []
    queues = [
        RunQueue(
            store, Transitions(store, MultiNotifier()), ClaimingExecutor(store, f"i{n}", seen, problems), 2
        )
        for n, store in enumerate(stores)
    ]
    # The leader queues the runs without running them (as if busy); they wait in the store.
    created = [stores[0].create_run(STACKS[n % 4], RunKind.PLAN, TRIGGER, SHA).id for n in range(100)]
    done = threading.Event()

    def heartbeat(store: Store, queue: RunQueue) -> None:
        while not done.is_set():  # what `take_in_queued` does at every heartbeat
            queue.adopt(store.runs_with_status({RunStatus.QUEUED}))
            if not store.runs_with_status({RunStatus.QUEUED, RunStatus.PLANNING}):
                done.set()
            done.wait(0.02)

    beats = [threading.Thread(target=heartbeat, args=pair) for pair in zip(stores, queues, strict=True)]
    for beat in beats:
        beat.start()
    finished = done.wait(120)
    for beat in beats:
        beat.join(10)
    for queue in queues:
        queue.shutdown(wait=10)

    assert finished
    assert problems == []
    assert sorted(seen) == sorted(created) and set(seen.values()) == {1}  # each exactly once
    statuses = {stores[0].get_run(run_id).status for run_id in created}
    assert statuses == {RunStatus.NO_CHANGES}
    workers = Counter(stores[0].get_run(run_id).instance_id for run_id in created)
    assert set(workers) <= {"i0", "i1", "i2"}
    for store in stores:
        store.close()


def test_adopt_takes_in_only_the_runs_the_queue_does_not_hold(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("a", "stacks/a")])
    gate = threading.Event()
    ran: list[int] = []

    def execute(run_id: int, cancel) -> None:
        ran.append(run_id)
        gate.wait(10)

    queue = RunQueue(store, Transitions(store, MultiNotifier()), execute, 1)
    first = queue.submit("a", RunKind.PLAN, TRIGGER, SHA)
    second = store.create_run("a", RunKind.DRIFT, TRIGGER, SHA)  # queued by another instance

    taken = queue.adopt([first, second])
    again = queue.adopt([first, second])

    assert [run.id for run in taken] == [second.id]
    assert again == []
    assert queue.depth == 1  # the second waits for the stack's running first
    gate.set()
    queue.wait_idle(10)
    assert ran == [first.id, second.id]
    queue.shutdown(wait=5)
    store.close()
