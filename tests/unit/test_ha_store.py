"""Several daemons on one store: one working run per stack, claims won once, instances and leases.

Each scenario runs on SQLite and on PostgreSQL (the `store_url` fixture); the claim races use two
Store objects (two engines, two pools), as two daemons would.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from ha_fakes import Queue, Roles

from tfops.ha.instances import Heartbeat, Me
from tfops.ha.leadership import SqliteLeadership
from tfops.ha.serve_lock import AlreadyServing, ServeLock
from tfops.models import (
    WORKING_STATUSES,
    InstanceRole,
    RunKind,
    RunReason,
    RunStatus,
    Trigger,
    TriggerSource,
)
from tfops.notify import MultiNotifier
from tfops.reconcile import Transitions
from tfops.store import InvalidTransition, StackBusy, Store
from tfops.store.engine import utc_now

POLL = Trigger(source=TriggerSource.POLL, actor="poll")
SHA = "a" * 40


def test_the_database_refuses_a_second_working_run_on_a_stack(store):
    first = store.create_run("network", RunKind.DEPLOY, POLL, SHA)
    second = store.create_run("network", RunKind.DRIFT, POLL, SHA)
    other_stack = store.create_run("dns", RunKind.DRIFT, POLL, SHA)
    store.transition(first.id, RunStatus.PLANNING)

    with pytest.raises(StackBusy):
        store.transition(second.id, RunStatus.PLANNING, allowed_from={RunStatus.QUEUED})

    assert store.get_run(second.id).status is RunStatus.QUEUED  # left to be taken later
    assert store.transition(other_stack.id, RunStatus.PLANNING).status is RunStatus.PLANNING
    store.transition(first.id, RunStatus.APPLYING)
    with pytest.raises(StackBusy):  # applying works on the stack as well
        store.transition(second.id, RunStatus.PLANNING)
    store.transition(first.id, RunStatus.APPLIED)
    assert store.transition(second.id, RunStatus.PLANNING).status is RunStatus.PLANNING


def test_racing_claimers_take_each_run_once_and_never_two_on_one_stack(store_url, store):
    # Two daemons (two Stores) with three workers each race for queued runs on two stacks.
    stores = [store, Store(store_url)]
    runs = [
        store.create_run(stack, RunKind.DRIFT, POLL, SHA).id for _ in range(6) for stack in ("network", "dns")
    ]
    claimed: list[tuple[int, str]] = []
    overlaps: list[str] = []
    lock = threading.Lock()

    def worker(me: str, mine: Store) -> None:
        for _ in range(200):
            pending = mine.runs_with_status({RunStatus.QUEUED})
            if not pending:
                return
            for run in pending:
                try:
                    taken = mine.transition(
                        run.id, RunStatus.PLANNING, allowed_from={RunStatus.QUEUED}, instance_id=me
                    )
                except InvalidTransition:  # StackBusy included
                    continue
                with lock:
                    claimed.append((taken.id, me))
                # What the database holds while this claimer works: one working run on the stack.
                if len([r for r in mine.open_runs(taken.stack) if r.status in WORKING_STATUSES]) != 1:
                    overlaps.append(taken.stack)
                mine.transition(taken.id, RunStatus.NO_CHANGES)

    threads = [threading.Thread(target=worker, args=(f"i{n}", stores[n % 2])) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    stores[1].close()

    assert sorted(run_id for run_id, _ in claimed) == sorted(runs)  # each run exactly once
    assert overlaps == []
    assert {store.get_run(run_id).status for run_id in runs} == {RunStatus.NO_CHANGES}
    assert {store.get_run(run_id).instance_id for run_id in runs} <= {f"i{n}" for n in range(6)}


def test_instances_are_listed_with_their_runs_in_flight_leader_first(store):
    store.register_instance("vm-b", "host-b", 22)
    store.register_instance("vm-a", "host-a", 11)
    store.beat("vm-b", InstanceRole.LEADER)
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA)
    store.transition(run.id, RunStatus.PLANNING, instance_id="vm-a")

    listed = store.instances()

    assert [(i.id, i.host, i.pid, i.role, i.runs_in_flight) for i in listed] == [
        ("vm-b", "host-b", 22, InstanceRole.LEADER, 0),
        ("vm-a", "host-a", 11, InstanceRole.FOLLOWER, 1),
    ]
    assert store.get_run(run.id).instance_id == "vm-a"


def test_an_instance_is_expired_once_its_heartbeat_is_older_than_the_lease(store):
    start = utc_now()
    store.register_instance("vm-a", "host-a", 1, now=start)
    store.register_instance("vm-b", "host-b", 2, now=start)
    store.beat("vm-b", InstanceRole.FOLLOWER, now=start + timedelta(seconds=20))

    assert store.expired_instances(15, now=start + timedelta(seconds=10)) == []
    assert store.expired_instances(15, now=start + timedelta(seconds=30)) == ["vm-a"]
    store.remove_instance("vm-a")
    assert store.beat("vm-a", InstanceRole.FOLLOWER) is False  # gone: the beat says so
    assert [i.id for i in store.instances()] == ["vm-b"]


def test_the_leader_interrupts_a_dead_instances_running_runs_and_requeues_what_it_had_taken(store, tmp_path):
    transitions = Transitions(store, MultiNotifier())
    long_ago = utc_now() - timedelta(minutes=5)
    store.register_instance("dead-vm", "host-d", 9, now=long_ago)
    running = store.create_run("network", RunKind.DEPLOY, POLL, SHA)
    store.transition(running.id, RunStatus.PLANNING, instance_id="dead-vm")
    approved = store.create_run("dns", RunKind.DEPLOY, POLL, SHA)
    for status in (RunStatus.PLANNING, RunStatus.AWAITING_APPROVAL, RunStatus.APPROVED):
        store.transition(approved.id, status, instance_id="dead-vm")
    queue, roles = Queue(), Roles()
    leader = SqliteLeadership(ServeLock(Store.sqlite_url(tmp_path / "x.db"), tmp_path))
    me = Me("live-vm", "host-l", 1)
    clock = [100.0]
    heartbeat = Heartbeat(
        store,
        leader,
        me,
        interval=1,
        failover=15,
        roles=roles,
        transitions=transitions,
        queue=queue,
        clock=lambda: clock[0],
    )
    store.register_instance(me.id, me.host, me.pid)

    heartbeat.beat()  # a new leader first gives every instance a whole failover to beat
    assert store.get_run(running.id).status is RunStatus.PLANNING
    clock[0] += 15
    heartbeat.beat()

    ended = store.get_run(running.id)
    assert ended.status is RunStatus.INTERRUPTED
    assert ended.reason is RunReason.DAEMON_RESTARTED
    assert "dead-vm stopped sending heartbeats" in ended.error
    assert [run.id for run in queue.resumed] == [approved.id]
    assert [i.id for i in store.instances()] == ["live-vm"]
    assert roles.heard == ["lead"]
    # The stack is free again: a new run of it may start.
    fresh = store.create_run("network", RunKind.DEPLOY, POLL, SHA)
    assert store.transition(fresh.id, RunStatus.PLANNING).status is RunStatus.PLANNING


def test_after_a_database_outage_the_leader_gives_live_instances_time_to_beat_before_judging(store, tmp_path):
    # Every heartbeat stopped while the database was away: the live follower's is as old as a
    # dead one's would be.
    outage_start = utc_now() - timedelta(minutes=2)
    store.register_instance("follower", "host-f", 2, now=outage_start)
    working = store.create_run("network", RunKind.DEPLOY, POLL, SHA)
    store.transition(working.id, RunStatus.PLANNING, instance_id="follower")
    clock = [0.0]
    leader = Heartbeat(
        store,
        SqliteLeadership(ServeLock(Store.sqlite_url(tmp_path / "x.db"), tmp_path)),
        Me("leader", "host-l", 1),
        interval=1,
        failover=15,
        roles=Roles(),
        transitions=Transitions(store, MultiNotifier()),
        queue=Queue(),
        clock=lambda: clock[0],
    )
    store.register_instance("leader", "host-l", 1)

    leader.beat()  # the database is back: the leader beats first
    clock[0] += 5
    store.beat("follower", InstanceRole.FOLLOWER)  # the follower's next beat
    clock[0] += 10
    leader.beat()

    assert store.get_run(working.id).status is RunStatus.PLANNING  # its run goes on
    assert sorted(i.id for i in store.instances()) == ["follower", "leader"]


def test_an_instance_id_in_use_on_another_host_is_refused_but_a_restart_here_is_not(store, tmp_path):
    def heartbeat_of(me: Me) -> Heartbeat:
        leadership = SqliteLeadership(ServeLock(Store.sqlite_url(tmp_path / "x.db"), tmp_path))
        return Heartbeat(
            store,
            leadership,
            me,
            interval=1,
            failover=15,
            roles=Roles(),
            transitions=Transitions(store, MultiNotifier()),
            queue=Queue(),
        )

    store.register_instance("vm-1", "host-a", 100)

    with pytest.raises(AlreadyServing) as refused:
        heartbeat_of(Me("vm-1", "host-b", 200)).check_id_free()
    assert "in use by tfops on host-a (pid 100)" in str(refused.value)
    heartbeat_of(Me("vm-1", "host-a", 300)).check_id_free()  # the same host: a restart
    store.beat("vm-1", InstanceRole.FOLLOWER, now=utc_now() - timedelta(seconds=30))
    heartbeat_of(Me("vm-1", "host-b", 200)).check_id_free()  # silent for longer than failover
