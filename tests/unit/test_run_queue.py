"""RunQueue: at most N runs at once, never two on one stack, newer commits supersede queued runs."""

from __future__ import annotations

import threading

import pytest

from tfops.models import RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify import MultiNotifier
from tfops.reconcile import Transitions
from tfops.scheduler import RunQueue
from tfops.store import Store

TRIGGER = Trigger(source=TriggerSource.CLI, actor="test")
SHA1, SHA2 = "1" * 40, "2" * 40


class GatedExecutor:
    """Stands in for the reconciler: each run waits until the test opens its gate."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.running: dict[int, str] = {}
        self.max_seen = 0
        self.overlap_on_a_stack = False
        self.started = threading.Condition(self.lock)
        self.gates: dict[int, threading.Event] = {}
        self.cancels = {}

    def __call__(self, run_id, cancel):
        run = self.store.get_run(run_id)
        if run.status is not RunStatus.QUEUED:
            return run
        self.store.transition(run_id, RunStatus.PLANNING, message="planning")  # as the reconciler does
        gate = threading.Event()
        with self.lock:
            if run.stack in self.running.values():
                self.overlap_on_a_stack = True
            self.running[run_id] = run.stack
            self.max_seen = max(self.max_seen, len(self.running))
            self.gates[run_id] = gate
            self.cancels[run_id] = cancel
            self.started.notify_all()
        while not gate.wait(0.01):
            if cancel.is_cancelled:
                break
        with self.lock:
            del self.running[run_id]
        status = RunStatus.INTERRUPTED if cancel.is_cancelled else RunStatus.NO_CHANGES
        return self.store.transition(run_id, status, message="test")

    def wait_started(self, count: int) -> None:
        with self.started:
            assert self.started.wait_for(lambda: len(self.running) >= count, timeout=5)

    def release_all(self) -> None:
        with self.lock:
            for gate in self.gates.values():
                gate.set()


@pytest.fixture
def setup(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("a", "stacks/a"), ("b", "stacks/b"), ("c", "stacks/c")])
    executor = GatedExecutor(store)
    queue = RunQueue(store, Transitions(store, MultiNotifier()), executor, max_parallel=2)
    yield store, executor, queue
    executor.release_all()
    queue.shutdown(wait=5)
    store.close()


def test_at_most_n_runs_at_once_and_never_two_on_one_stack(setup):
    store, executor, queue = setup
    kinds = (RunKind.PLAN, RunKind.DEPLOY, RunKind.PLAN, RunKind.PLAN, RunKind.DRIFT)
    for stack, kind in zip(("a", "a", "b", "c", "a"), kinds, strict=True):
        queue.submit(stack, kind, TRIGGER, SHA1)
    executor.wait_started(2)
    assert queue.depth == 3
    executor.release_all()
    while not queue.wait_idle(0.05):
        executor.release_all()

    assert executor.max_seen == 2
    assert not executor.overlap_on_a_stack
    assert {run.status for run in store.list_runs(limit=10)} == {RunStatus.NO_CHANGES}


def test_a_newer_commit_supersedes_the_queued_runs_of_its_stack(setup):
    store, executor, queue = setup
    queue.submit("a", RunKind.PLAN, TRIGGER, SHA1)  # occupies stack a
    queue.submit("b", RunKind.PLAN, TRIGGER, SHA1)  # occupies the second slot
    executor.wait_started(2)
    old_deploy = queue.submit("a", RunKind.DEPLOY, TRIGGER, SHA1)
    new_deploy = queue.submit("a", RunKind.DEPLOY, TRIGGER, SHA2)

    assert store.get_run(old_deploy.id).status is RunStatus.SUPERSEDED
    assert "superseded by commit 2222222222" in store.events(old_deploy.id)[-1].message
    assert store.get_run(new_deploy.id).status is RunStatus.QUEUED


def test_a_drift_check_is_not_queued_twice(setup):
    _store, executor, queue = setup
    queue.submit("a", RunKind.PLAN, TRIGGER, SHA1)
    executor.wait_started(1)
    first = queue.submit("a", RunKind.DRIFT, TRIGGER, SHA1)
    second = queue.submit("a", RunKind.DRIFT, TRIGGER, SHA1)

    assert first is not None
    assert second is None


def test_shutdown_interrupts_running_runs_and_leaves_queued_ones_for_the_next_start(setup):
    store, executor, queue = setup
    running = queue.submit("a", RunKind.DEPLOY, TRIGGER, SHA1)
    queue.submit("b", RunKind.DEPLOY, TRIGGER, SHA1)
    executor.wait_started(2)
    waiting = queue.submit("c", RunKind.DEPLOY, TRIGGER, SHA1)

    queue.shutdown(wait=5)

    assert executor.cancels[running.id].is_cancelled
    assert store.get_run(running.id).status is RunStatus.INTERRUPTED
    assert store.get_run(waiting.id).status is RunStatus.QUEUED
    assert queue.submit("c", RunKind.DEPLOY, TRIGGER, SHA2) is None  # no new work while stopping


def test_repeated_plan_requests_for_a_stack_are_one_queued_plan(setup):
    _store, executor, queue = setup
    queue.submit("a", RunKind.PLAN, TRIGGER, SHA1)  # occupies stack a
    queue.submit("b", RunKind.PLAN, TRIGGER, SHA1)
    executor.wait_started(2)

    first = queue.submit("a", RunKind.PLAN, TRIGGER, SHA1)
    repeats = [queue.submit("a", RunKind.PLAN, TRIGGER, SHA1) for _ in range(20)]
    deploy = queue.submit("a", RunKind.DEPLOY, TRIGGER, SHA2)

    assert first is not None and repeats == [None] * 20, "an API retry loop cannot pile plans up"
    assert deploy is not None and queue.depth == 2, "a merge waits behind one plan at most"
    executor.release_all()
    while not queue.wait_idle(0.05):
        executor.release_all()


# -- drift sweeps and deploys ------------------------------------------------------------------------

SWEEP = [f"s{i:02d}" for i in range(12)]


class OrderedExecutor(GatedExecutor):
    """Also remembers the order in which the queue handed runs over."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.calls: list[int] = []

    def __call__(self, run_id, cancel):
        with self.lock:
            self.calls.append(run_id)
            self.started.notify_all()
        return super().__call__(run_id, cancel)


@pytest.fixture
def sweep(tmp_path, request):
    """A queue of two workers over twelve stacks and `app`; `drift_parallel` from the test's param."""
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([(name, f"stacks/{name}") for name in [*SWEEP, "app"]])
    executor = OrderedExecutor(store)
    drift_parallel = getattr(request, "param", None)
    queue = RunQueue(store, Transitions(store, MultiNotifier()), executor, 2, drift_parallel)
    yield store, executor, queue
    executor.release_all()
    queue.shutdown(wait=5)
    store.close()


def started_drift_runs(store: Store) -> list[int]:
    runs = store.list_runs(limit=100)
    return [run.id for run in runs if run.kind is RunKind.DRIFT and run.status is not RunStatus.QUEUED]


def test_a_deploy_takes_the_next_free_worker_ahead_of_a_waiting_drift_sweep(sweep):
    store, executor, queue = sweep
    drift = [queue.submit(name, RunKind.DRIFT, TRIGGER, SHA1) for name in SWEEP]
    executor.wait_started(2)  # by default a sweep may use every worker
    deploy = queue.submit("app", RunKind.DEPLOY, TRIGGER, SHA1)
    assert queue.depth == len(SWEEP) - 1  # ten drift checks and the deploy wait

    executor.gates[drift[0].id].set()  # one drift check ends: its worker is free

    with executor.started:
        assert executor.started.wait_for(lambda: deploy.id in executor.running, timeout=5)
    assert sorted(started_drift_runs(store)) == [drift[0].id, drift[1].id]
    assert queue.depth == len(SWEEP) - 2  # the deploy went first; every other drift check waits


@pytest.mark.parametrize("sweep", [1], indirect=True)
def test_with_drift_parallel_below_max_parallel_a_deploy_starts_at_once_during_a_sweep(sweep):
    store, executor, queue = sweep
    for name in SWEEP:
        queue.submit(name, RunKind.DRIFT, TRIGGER, SHA1)
    executor.wait_started(1)

    deploy = queue.submit("app", RunKind.DEPLOY, TRIGGER, SHA1)

    executor.wait_started(2)
    assert deploy.id in executor.running
    assert len(started_drift_runs(store)) == 1  # the sweep never held the second worker
    assert queue.depth == len(SWEEP) - 1


def test_an_approved_drift_remediation_is_not_held_back_as_a_drift_check(sweep):
    store, executor, queue = sweep
    first = [queue.submit(name, RunKind.DRIFT, TRIGGER, SHA1) for name in SWEEP]
    executor.wait_started(2)
    approved = store.create_run("app", RunKind.DRIFT, TRIGGER, SHA1, status=RunStatus.APPROVED)

    queue.resume([approved])
    executor.gates[first[0].id].set()

    with executor.started:
        assert executor.started.wait_for(lambda: len(executor.calls) >= 4, timeout=5)
    # two checks, then the approved apply (which this executor ends at once), then the next check
    assert set(executor.calls[:2]) == {first[0].id, first[1].id}
    assert executor.calls[2:4] == [approved.id, first[2].id]
