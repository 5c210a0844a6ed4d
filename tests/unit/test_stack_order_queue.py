"""The run queue keeps `depends_on`: a downstream deploy waits (queued, saying for what) while an
upstream's deploy is open, goes once it landed, and ends `blocked` when it did not. Real store and
transitions; the executor stands in for the reconciler, ending each run as the test says."""

from __future__ import annotations

import threading
import time

import pytest

from tfops.models import RunKind, RunReason, RunStatus, Stack, Trigger, TriggerSource
from tfops.notify import MultiNotifier, RunNotice
from tfops.run_queue import RunQueue, StackOrder
from tfops.store import Store
from tfops.transitions import Transitions

TRIGGER = Trigger(source=TriggerSource.POLL, actor="test")
SHA = "1" * 40
STACKS = {
    "network": Stack("network", "stacks/network"),
    "app": Stack("app", "stacks/app", depends_on=("network",)),
    "web": Stack("web", "stacks/web", depends_on=("app",)),
}


class Outcomes:
    """Each run plans, then waits until the test ends it with a status."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cond = threading.Condition()
        self.started: list[str] = []
        self.ends: dict[str, RunStatus] = {}

    def __call__(self, run_id, cancel):
        run = self.store.get_run(run_id)
        self.store.transition(run_id, RunStatus.PLANNING, message="planning")
        with self.cond:
            self.started.append(run.stack)
            self.cond.notify_all()
            self.cond.wait_for(lambda: run.stack in self.ends or cancel.is_cancelled, timeout=10)
            status = self.ends.get(run.stack, RunStatus.INTERRUPTED)
        if status is RunStatus.APPLIED:
            self.store.transition(run_id, RunStatus.APPLYING, message="applying")
        return self.store.transition(run_id, status, message=status.value)

    def end(self, stack: str, status: RunStatus) -> None:
        with self.cond:
            self.ends[stack] = status
            self.cond.notify_all()

    def wait_started(self, stack: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: stack in self.started, timeout=10), f"{stack} never started"


def eventually(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.02)
    return True


class Heard:
    def __init__(self) -> None:
        self.notices: list[RunNotice] = []

    def run_changed(self, notice: RunNotice) -> None:
        self.notices.append(notice)

    def said(self, run_id: int) -> list[str]:
        return [notice.message for notice in self.notices if notice.run.id == run_id]


@pytest.fixture
def store(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks((stack.name, stack.path) for stack in STACKS.values())
    yield store
    store.close()


@pytest.fixture
def make_queue(store):
    made = []

    def make(outcomes, heard=None, stacks=lambda: STACKS):
        transitions = Transitions(store, MultiNotifier(heard or Heard()))
        order = StackOrder(stacks, transitions, recheck=0.05)
        queue = RunQueue(store, transitions, outcomes, max_parallel=3, order=order)
        made.append(queue)
        return queue

    yield make
    for queue in made:
        queue.shutdown(wait=5)


def test_a_downstream_deploy_waits_for_its_upstream_and_says_so_then_goes_once_it_is_applied(
    store, make_queue
):
    outcomes, heard = Outcomes(store), Heard()
    queue = make_queue(outcomes, heard)
    network = queue.submit("network", RunKind.DEPLOY, TRIGGER, SHA)
    app = queue.submit("app", RunKind.DEPLOY, TRIGGER, SHA)
    outcomes.wait_started("network")

    assert queue.depth == 1 and outcomes.started == ["network"], "three workers, yet app waits"
    assert store.get_run(app.id).status is RunStatus.QUEUED
    assert heard.said(app.id) == [f"waiting for upstream network (run {network.id})"]

    outcomes.end("network", RunStatus.APPLIED)
    outcomes.wait_started("app")
    outcomes.end("app", RunStatus.APPLIED)
    assert queue.wait_idle(10)
    assert store.get_run(app.id).status is RunStatus.APPLIED


def test_a_failed_upstream_blocks_the_whole_chain_naming_its_run(store, make_queue):
    outcomes = Outcomes(store)
    queue = make_queue(outcomes)
    network = queue.submit("network", RunKind.DEPLOY, TRIGGER, SHA)
    app = queue.submit("app", RunKind.DEPLOY, TRIGGER, SHA)
    web = queue.submit("web", RunKind.DEPLOY, TRIGGER, SHA)
    outcomes.wait_started("network")

    outcomes.end("network", RunStatus.FAILED)
    assert queue.wait_idle(10)

    for held in (app, web):
        blocked = store.get_run(held.id)
        assert (blocked.status, blocked.reason) == (RunStatus.BLOCKED, RunReason.UPSTREAM_FAILED)
        [event] = [e for e in store.events(held.id) if e.to_status is RunStatus.BLOCKED]
        assert event.message == f"upstream network failed in run {network.id}"
    assert outcomes.started == ["network"], "neither was planned"


def test_drift_checks_are_not_ordered(store, make_queue):
    outcomes = Outcomes(store)
    queue = make_queue(outcomes)
    queue.submit("network", RunKind.DEPLOY, TRIGGER, SHA)
    outcomes.wait_started("network")

    queue.submit("app", RunKind.DRIFT, TRIGGER, SHA)

    outcomes.wait_started("app")
    outcomes.end("app", RunStatus.NO_CHANGES)
    outcomes.end("network", RunStatus.APPLIED)
    assert queue.wait_idle(10)


def test_a_held_run_is_still_held_after_a_restart_and_is_blocked_when_its_upstream_is_rejected(
    store, make_queue
):
    outcomes = Outcomes(store)
    queue = make_queue(outcomes)
    network = queue.submit("network", RunKind.DEPLOY, TRIGGER, SHA)
    app = queue.submit("app", RunKind.DEPLOY, TRIGGER, SHA)
    outcomes.wait_started("network")
    outcomes.end("network", RunStatus.AWAITING_APPROVAL)
    assert queue.wait_idle(10), "a run held behind an approval counts as idle"
    assert store.get_run(app.id).status is RunStatus.QUEUED
    queue.shutdown(wait=5)

    looks = []  # one per time the restarted queue asks whether app may go

    def stacks():
        looks.append(1)
        return STACKS

    restarted = make_queue(Outcomes(store), stacks=stacks)
    restarted.resume(store.runs_with_status([RunStatus.QUEUED]))
    assert restarted.wait_idle(10)
    assert eventually(lambda: len(looks) >= 3), "it keeps looking while app is held"
    assert store.get_run(app.id).status is RunStatus.QUEUED, "still held"

    store.transition(network.id, RunStatus.REJECTED, message="rejected by alice")  # outside the queue

    assert eventually(lambda: store.get_run(app.id).status is RunStatus.BLOCKED), "the queue looks again"
    [event] = [e for e in store.events(app.id) if e.to_status is RunStatus.BLOCKED]
    assert event.message == f"upstream network was rejected in run {network.id}"
