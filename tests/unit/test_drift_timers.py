"""Drift timers resume from the store: a restart does not re-plan stacks checked recently.

The scheduler places each new timer with a fake clock (the store's timestamps are real, so the
clock says "this many minutes after those checks"); "the first five minutes after the restart"
are then the timers that fall in them, fired through the scheduler's own `check_drift`.
"""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event

from tfops.models import DriftState, RunKind, RunStatus, Stack, Trigger, TriggerSource
from tfops.scheduler import Scheduler, StackRegistry
from tfops.stacks import Discovery
from tfops.store import Store

HOUR = 3600.0
SHA = "a" * 40
TRIGGER = Trigger(source=TriggerSource.DRIFT_TIMER, actor="test")


class RecordingIntake:
    """Stands in for the RunQueue: records what the scheduler asks for."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, RunKind]] = []
        self.changed = threading.Condition()

    def submit(self, stack, kind, trigger, commit_sha):
        with self.changed:
            self.submitted.append((stack, kind))
            self.changed.notify_all()
        return None

    def wait_for(self, stack: str, timeout: float = 10.0) -> None:
        with self.changed:
            found = self.changed.wait_for(lambda: any(s == stack for s, _ in self.submitted), timeout)
        assert found, f"no drift check of {stack} was queued"


class NoPoll:
    def poll(self):
        return []


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    yield store
    store.close()


def applied_stacks(store: Store, names: list[str]) -> None:
    """Stacks tfops deployed once (drift checks need that), never drift-checked yet."""
    store.sync_stacks([(name, f"stacks/{name}") for name in names])
    store.set_head_all(SHA)
    for name in names:
        store.mark_stack_applied(name, SHA)


def scheduler_for(store, tmp_path, intervals: dict[str, float], clock=None, seed: int = 7):
    stacks = tuple(Stack(name=name, path=f"stacks/{name}", drift_interval=i) for name, i in intervals.items())
    registry = StackRegistry(discover=lambda root: Discovery(stacks=stacks), root=tmp_path)
    intake = RecordingIntake()
    scheduler = Scheduler(
        poller=NoPoll(),
        queue=intake,
        registry=registry,
        store=store,
        poll_interval=0.05,
        clock=clock or (lambda: datetime.now(UTC)),
        rng=random.Random(seed),
    )
    return scheduler, intake


def first_five_minutes(scheduler: Scheduler, names, now: datetime) -> list[str]:
    """Fire the timers that fall in the five minutes after `now`, as APScheduler would."""
    due = [name for name in names if scheduler.next_drift_check(name) <= now + timedelta(minutes=5)]
    for name in due:
        scheduler.check_drift(name)
    return due


def test_a_restart_does_not_start_drift_runs_for_stacks_checked_recently(store, tmp_path):
    names = [f"s{i}" for i in range(20)]
    applied_stacks(store, names)
    for name in names:
        store.set_drift(name, DriftState.IN_SYNC)
    checked = store.get_stack(names[0]).drift_checked_at
    clock = FakeClock(checked + timedelta(minutes=10))  # the daemon restarts ten minutes later
    scheduler, intake = scheduler_for(store, tmp_path, dict.fromkeys(names, HOUR), clock)

    scheduler.sync_drift_timers()

    assert first_five_minutes(scheduler, names, clock.now) == []
    assert intake.submitted == []
    for name in names:
        wait = scheduler.next_drift_check(name) - clock.now
        # 50 minutes left of the hour, plus up to 10 % of it as jitter
        assert timedelta(minutes=49) < wait <= timedelta(minutes=56, seconds=1), (name, wait)


def test_stacks_never_checked_are_spread_over_the_interval(store, tmp_path):
    names = [f"new{i}" for i in range(120)]
    applied_stacks(store, names)
    clock = FakeClock(datetime.now(UTC))
    scheduler, intake = scheduler_for(store, tmp_path, dict.fromkeys(names, HOUR), clock)

    scheduler.sync_drift_timers()

    offsets = [(scheduler.next_drift_check(name) - clock.now).total_seconds() for name in names]
    assert all(0 <= offset <= HOUR for offset in offsets)
    tenths = [sum(1 for o in offsets if k * HOUR / 10 <= o < (k + 1) * HOUR / 10) for k in range(10)]
    assert all(1 <= count <= 30 for count in tenths), tenths  # 12 expected in each tenth
    assert len(first_five_minutes(scheduler, names, clock.now)) <= 30
    assert {kind for _, kind in intake.submitted} <= {RunKind.DRIFT}


def test_a_stack_whose_last_drift_check_failed_is_retried_soon_not_an_interval_later(store, tmp_path):
    applied_stacks(store, ["broken", "fine"])
    for name in ("broken", "fine"):
        store.set_drift(name, DriftState.IN_SYNC)
    run = store.create_run("broken", RunKind.DRIFT, TRIGGER, SHA)
    store.transition(run.id, RunStatus.PLANNING)
    store.transition(run.id, RunStatus.FAILED, error="provider could not authenticate")
    clock = FakeClock(store.get_run(run.id).finished_at + timedelta(minutes=10))
    scheduler, intake = scheduler_for(store, tmp_path, {"broken": HOUR, "fine": HOUR}, clock)

    scheduler.sync_drift_timers()

    assert scheduler.next_drift_check("broken") <= clock.now + timedelta(minutes=6, seconds=1)
    assert scheduler.next_drift_check("fine") > clock.now + timedelta(minutes=45)
    assert first_five_minutes(scheduler, ["broken", "fine"], clock.now + timedelta(minutes=1)) == ["broken"]
    assert intake.submitted == [("broken", RunKind.DRIFT)]


def test_a_drift_check_still_queued_counts_as_this_intervals_check(store, tmp_path):
    applied_stacks(store, ["app"])
    store.set_drift("app", DriftState.IN_SYNC)
    queued = store.create_run("app", RunKind.DRIFT, TRIGGER, SHA)
    clock = FakeClock(queued.created_at + timedelta(minutes=5))
    scheduler, _ = scheduler_for(store, tmp_path, {"app": HOUR}, clock)

    scheduler.sync_drift_timers()

    assert scheduler.next_drift_check("app") == queued.created_at + timedelta(seconds=HOUR)


def test_checks_overdue_after_a_long_stop_are_spread_over_the_jitter_window(store, tmp_path):
    names = [f"s{i}" for i in range(30)]
    applied_stacks(store, names)
    for name in names:
        store.set_drift(name, DriftState.IN_SYNC)
    clock = FakeClock(datetime.now(UTC) + timedelta(hours=3))  # down for three hours
    scheduler, _ = scheduler_for(store, tmp_path, dict.fromkeys(names, HOUR), clock)

    scheduler.sync_drift_timers()

    waits = [scheduler.next_drift_check(name) - clock.now for name in names]
    assert all(timedelta(0) <= wait <= timedelta(minutes=6) for wait in waits)
    assert len(set(waits)) == len(waits)  # not all at one moment


def test_the_running_scheduler_fires_due_timers_and_leaves_recent_ones_alone(store, tmp_path):
    recent = [f"recent{i}" for i in range(5)]
    applied_stacks(store, [*recent, "fresh"])
    for name in recent:
        store.set_drift(name, DriftState.IN_SYNC)
    # Real clock: "fresh" was never checked and its 1 s interval makes it due at once.
    scheduler, intake = scheduler_for(store, tmp_path, {**dict.fromkeys(recent, HOUR), "fresh": 1.0})
    scheduler.start()
    try:
        intake.wait_for("fresh")
        waits = [scheduler.next_drift_check(name) - datetime.now(UTC) for name in recent]
    finally:
        scheduler.stop()

    assert not [stack for stack, _ in intake.submitted if stack in recent]
    assert all(wait > timedelta(minutes=55) for wait in waits), waits


def test_placing_the_timers_of_a_large_estate_reads_the_store_a_constant_number_of_times(store, tmp_path):
    names = [f"s{i:03d}" for i in range(200)]
    applied_stacks(store, names)
    for name in names[:100]:
        store.set_drift(name, DriftState.IN_SYNC)
    scheduler, _ = scheduler_for(store, tmp_path, dict.fromkeys(names, HOUR))
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    scheduler.sync_drift_timers()
    scheduler.sync_drift_timers()  # the next poll: every timer exists, nothing to read

    assert all(scheduler.next_drift_check(name) is not None for name in names)
    queries = [sql for sql in statements if sql.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 2, queries  # the stacks, and the newest drift run of each
