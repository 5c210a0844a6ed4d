"""An instance takes others' queued runs in as soon as it has a free worker, not only at its
heartbeat: when a worker ends with nothing left to start, and again shortly while a batch keeps
arriving. The heartbeat interval in these scenarios is an hour: only a wake can explain a look."""

from __future__ import annotations

import threading

import pytest
from ha_fakes import Queue, Roles

from tfops.ha.instances import Heartbeat, Me
from tfops.ha.intake import Intake
from tfops.ha.intake_wake import IntakeWake, next_look
from tfops.ha.leadership import SqliteLeadership
from tfops.ha.serve_lock import ServeLock
from tfops.models import RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify import MultiNotifier
from tfops.reconcile import Transitions
from tfops.run_queue import RunQueue
from tfops.store import Store

HOUR = 3600.0
BOUND = 30.0  # generous: a loaded machine is slow, never wrong
SHA = "a" * 40
OTHERS = Trigger(source=TriggerSource.API, actor="another instance")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Slots:
    def __init__(self, free: bool) -> None:
        self.free = free

    def has_free_slot(self) -> bool:
        return self.free


class Clone:
    def is_on_branch(self, sha: str) -> bool:
        return True

    def fetch(self, *, checkout: bool = True) -> None:
        raise AssertionError("every commit is here")


class Stacks:
    def refresh(self):
        return {}


class Gated:
    """The reconciler as the queue sees it: claims the run, waits for its gate, ends it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.gates: dict[int, threading.Event] = {}

    def gate(self, run_id: int) -> threading.Event:
        return self.gates.setdefault(run_id, threading.Event())

    def __call__(self, run_id, cancel):
        self.store.transition(run_id, RunStatus.PLANNING, allowed_from={RunStatus.QUEUED})
        self.gate(run_id).wait(BOUND)
        return self.store.transition(run_id, RunStatus.NO_CHANGES)


@pytest.fixture
def store(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("app", "stacks/app"), ("db", "stacks/db")])
    yield store
    store.close()


def test_the_next_look_comes_soon_only_while_runs_keep_arriving_and_a_worker_is_free():
    assert next_look(took_in=3, free=True, interval=HOUR, soon=0.25) == 0.25
    assert next_look(took_in=0, free=True, interval=HOUR, soon=0.25) == HOUR  # nothing came: idle
    assert next_look(took_in=3, free=False, interval=HOUR, soon=0.25) == HOUR  # every worker busy


def test_a_wake_ends_the_wait_and_wakes_in_a_burst_are_spaced_by_soon():
    clock = Clock()
    wake = IntakeWake(Slots(free=False), soon=0.25, clock=clock, sleep=clock.sleep)
    wake.wake()
    assert wake.wait(0, HOUR) is True  # at once, not after an hour
    clock.now += 0.1
    wake.wake()  # a worker whose claim was lost ends at once: no spinning on it
    assert wake.wait(0, HOUR) is True
    assert clock.slept == [pytest.approx(0.15)]
    assert wake.wait(0, 0.01) is False  # nothing woke it: the interval passed


def test_a_run_queued_by_another_instance_starts_when_a_worker_frees_without_waiting_for_the_heartbeat(
    store, tmp_path
):
    executor = Gated(store)
    wake = IntakeWake()
    queue = RunQueue(store, Transitions(store, MultiNotifier()), executor, max_parallel=1, on_free=wake.wake)
    wake.slots = queue
    intake = Intake(store, queue, Clone(), Stacks(), "vm-1")
    heartbeat = Heartbeat(
        store,
        SqliteLeadership(ServeLock(Store.sqlite_url(tmp_path / "lock.db"), tmp_path)),
        Me("vm-1", "host-1", 1),
        interval=HOUR,
        failover=3 * HOUR,
        roles=Roles(),
        transitions=Transitions(store, MultiNotifier()),
        queue=Queue(),
        intake=intake,
        wake=wake,
    )
    mine = queue.submit("app", RunKind.DRIFT, OTHERS, SHA)
    assert mine is not None
    heartbeat.start()
    try:
        theirs = store.create_run("db", RunKind.DRIFT, OTHERS, SHA)  # queued in the store elsewhere
        executor.gate(theirs.id).set()
        executor.gate(mine.id).set()  # the only worker frees

        assert queue.wait_idle(BOUND)
        assert _wait(lambda: store.get_run(theirs.id).status is RunStatus.NO_CHANGES)
        assert wake.wakes >= 1
    finally:
        heartbeat.stop()
        queue.shutdown(wait=5)
    assert heartbeat._intake_thread is not None and not heartbeat._intake_thread.is_alive()


def test_the_intake_leaves_a_stack_alone_while_one_of_its_runs_is_planning_anywhere(store):
    busy = store.create_run("app", RunKind.DEPLOY, OTHERS, SHA)
    store.transition(busy.id, RunStatus.PLANNING, instance_id="vm-2")
    waiting = store.create_run("app", RunKind.DRIFT, OTHERS, SHA)
    free = store.create_run("db", RunKind.DRIFT, OTHERS, SHA)

    taken = Intake(store, _Adopting(), Clone(), Stacks(), "vm-1")()

    assert [run.id for run in taken] == [free.id]  # the claim would refuse `waiting` until app frees
    store.transition(busy.id, RunStatus.APPLYING)
    store.transition(busy.id, RunStatus.APPLIED)
    again = Intake(store, _Adopting(), Clone(), Stacks(), "vm-1")()
    assert [run.id for run in again] == [waiting.id, free.id]


def test_a_queue_reports_a_free_worker_only_when_nothing_it_holds_can_use_it(store):
    executor = Gated(store)
    frees: list[bool] = []
    queue = RunQueue(store, Transitions(store, MultiNotifier()), executor, max_parallel=1)
    queue.on_free = lambda: frees.append(queue.has_free_slot())
    first = queue.submit("app", RunKind.DRIFT, OTHERS, SHA)
    second = queue.submit("db", RunKind.DRIFT, OTHERS, SHA)
    assert first is not None and second is not None
    try:
        assert not queue.has_free_slot()
        executor.gate(first.id).set()  # the worker goes straight on to the second run: not free
        executor.gate(second.id).set()
        assert queue.wait_idle(BOUND)
        assert _wait(lambda: frees == [True])
        assert queue.has_free_slot()
    finally:
        queue.shutdown(wait=5)


class _Adopting:
    def adopt(self, runs):
        return list(runs)


def _wait(condition) -> bool:
    done = threading.Event()
    for _ in range(int(BOUND * 20)):
        if condition():
            return True
        done.wait(0.05)
    return bool(condition())
