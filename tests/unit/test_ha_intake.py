"""What reaches an instance from the others: queued runs (fetching the commits it lacks first),
approved runs whose plan it holds (or, for the leader, whose instance is gone), runs released by
the leader's window wake-up for the instance holding their plan, and webhook hints left by a
follower for the leader."""

from __future__ import annotations

import pytest

from tfops.ha.hints import FETCH_HINT_META, HintRelay
from tfops.ha.intake import Intake
from tfops.ha.routing import PlanHolderRouting
from tfops.models import RunKind, RunReason, RunStatus, Trigger, TriggerSource
from tfops.notify import MultiNotifier
from tfops.reconcile import Transitions
from tfops.store import Store
from tfops.triggers import FetchHint, HintBatch

POLL = Trigger(source=TriggerSource.POLL, actor="poll")
OLD, NEW = "1" * 40, "2" * 40


class Clone:
    """`GitSource` as the intake sees it: the commits it has, and the fetches it was asked for."""

    def __init__(self, *, has: set[str], remote: set[str]) -> None:
        self.has, self.remote, self.fetches = has, remote, 0

    def is_on_branch(self, sha: str) -> bool:
        return sha in self.has

    def fetch(self, *, checkout: bool = True) -> None:
        self.fetches += 1
        self.has |= self.remote


class Stacks:
    def __init__(self) -> None:
        self.refreshes = 0

    def refresh(self):
        self.refreshes += 1
        return {}


class Queue:
    def __init__(self) -> None:
        self.adopted: list[int] = []

    def adopt(self, runs):
        self.adopted.extend(run.id for run in runs)
        return list(runs)


@pytest.fixture
def store(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("app", "stacks/app"), ("db", "stacks/db"), ("dns", "stacks/dns")])
    yield store
    store.close()


def _approved(store: Store, stack: str, instance: str):
    run = store.create_run(stack, RunKind.DEPLOY, POLL, OLD)
    for status in (RunStatus.PLANNING, RunStatus.AWAITING_APPROVAL, RunStatus.APPROVED):
        run = store.transition(run.id, status, instance_id=instance)
    return run


def test_a_follower_fetches_the_commit_of_a_run_queued_by_the_leader_before_taking_it_in(store):
    old = store.create_run("app", RunKind.DEPLOY, POLL, OLD)
    new = store.create_run("db", RunKind.DEPLOY, POLL, NEW)  # the leader fetched NEW; we have not
    clone, stacks, queue = Clone(has={OLD}, remote={OLD, NEW}), Stacks(), Queue()
    intake = Intake(store, queue, clone, stacks, "vm-2")

    intake()
    intake()  # a commit known once is not asked about again, nor fetched

    assert queue.adopted == [old.id, new.id, old.id, new.id]  # the queue itself skips what it holds
    assert (clone.fetches, stacks.refreshes) == (1, 1)


def test_approved_runs_go_to_the_instance_holding_the_plan_or_to_the_leader_when_it_is_gone(store):
    store.register_instance("vm-1", "host-1", 1)
    store.register_instance("vm-2", "host-2", 2)
    held_by_me = _approved(store, "app", "vm-2")
    held_by_other = _approved(store, "db", "vm-1")
    orphaned = _approved(store, "dns", "vm-9")  # vm-9 died and was settled: no row any more
    clone = Clone(has={OLD}, remote={OLD})

    follower = Intake(store, Queue(), clone, Stacks(), "vm-2", leading=lambda: False)
    leader = Intake(store, Queue(), clone, Stacks(), "vm-1", leading=lambda: True)

    assert [run.id for run in follower.runnable()] == [held_by_me.id]
    assert [run.id for run in leader.runnable()] == [held_by_other.id, orphaned.id]


class Poller:
    def __init__(self) -> None:
        self.polls: list[tuple[str, str, str]] = []

    def poll(self, source=TriggerSource.POLL, actor="poll", *, note=""):
        self.polls.append((source.value, actor, note))
        return []


def _hints() -> HintBatch:
    return HintBatch([FetchHint("github", "push", "d-1", None, "refs/heads/main")])


def test_a_webhook_on_a_follower_makes_the_leader_poll_once(store):
    follower_poller, leader_poller = Poller(), Poller()
    follower = HintRelay(store, follower_poller, leading=lambda: False)
    leader = HintRelay(store, leader_poller, leading=lambda: True)
    leader.check()  # the leader's first look: nothing left yet

    follower(_hints())

    assert follower_poller.polls == []  # a follower never polls
    assert store.get_meta(FETCH_HINT_META)["source"] == "github"
    assert leader.check() is True
    assert leader.check() is False  # once per hint
    [(source, actor, note)] = leader_poller.polls
    assert (source, actor) == ("webhook", "github") and "d-1" in note


def test_a_webhook_on_the_leader_polls_at_once_and_leaves_no_row(store):
    poller = Poller()
    HintRelay(store, poller, leading=lambda: True)(_hints())

    assert len(poller.polls) == 1
    assert store.get_meta(FETCH_HINT_META) is None


class Resumed:
    def __init__(self) -> None:
        self.runs: list[int] = []

    def submit(self, stack, kind, trigger, commit_sha):
        raise AssertionError("not asked here")

    def resume(self, runs) -> None:
        self.runs.extend(run.id for run in runs)


def _waiting_for_window(store: Store, stack: str, instance: str):
    run = store.create_run(stack, RunKind.DEPLOY, POLL, OLD)
    for status in (RunStatus.PLANNING, RunStatus.AWAITING_WINDOW):
        run = store.transition(run.id, status, instance_id=instance)
    return run


def test_a_window_opening_releases_another_instances_plan_for_it_and_runs_ours_here(store):
    ours = _waiting_for_window(store, "app", "vm-1")
    theirs = _waiting_for_window(store, "db", "vm-2")
    queue = Resumed()
    router = PlanHolderRouting(queue, Transitions(store, MultiNotifier()), "vm-1")

    router.resume([ours, theirs])

    assert queue.runs == [ours.id]  # applied here, from the plan this instance holds
    released = store.get_run(theirs.id)
    assert (released.status, released.reason) == (RunStatus.APPROVED, RunReason.WINDOW_OPENED)
    holder = Intake(store, Queue(), Clone(has={OLD}, remote={OLD}), Stacks(), "vm-2")
    assert [run.id for run in holder.runnable()] == [theirs.id]  # its instance takes it in
