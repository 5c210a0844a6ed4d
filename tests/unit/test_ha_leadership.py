"""Leadership: one leader among the daemons on one PostgreSQL database, never two; a lost
connection ends the leadership (and another instance takes it); SQLite always leads.

Real PostgreSQL (tests/pgserver.py); time is a fake clock where the lease is the subject.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import empty_postgres_url
from ha_fakes import Queue, Roles
from sqlalchemy import create_engine, text

from tfops.ha.instances import Heartbeat, Me
from tfops.ha.leadership import LEADER_LOCK_KEY, PostgresLeadership, SqliteLeadership
from tfops.ha.serve_lock import AlreadyServing, ServeLock
from tfops.models import InstanceRole
from tfops.notify import MultiNotifier
from tfops.reconcile import Transitions
from tfops.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_for(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    return empty_postgres_url(postgres_url)


def _leadership(url: str, data_dir: Path, clock: Clock | None = None) -> PostgresLeadership:
    extra = {"clock": clock} if clock is not None else {}
    return PostgresLeadership(url, ServeLock(url, data_dir), heartbeat=3.0, failover=15.0, **extra)


def _leads(leadership: PostgresLeadership) -> bool:
    """Check until the database answered (a loaded machine may miss a connect timeout)."""
    wait_for(lambda: leadership.check() or leadership.is_leader(), timeout=30, what="the leadership")
    return leadership.is_leader()


def _end_sessions_holding_the_lock(url: str) -> int:
    """What a lost connection looks like from the server: the leader's session is ended."""
    engine = create_engine(url)
    with engine.begin() as connection:
        ended = connection.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND objid = :low"
            ),
            {"low": LEADER_LOCK_KEY & 0xFFFFFFFF},
        ).scalar_one()
    engine.dispose()
    return ended


def test_two_daemons_on_one_database_have_one_leader_and_the_other_takes_over_when_it_goes(pg_url, tmp_path):
    first, second = _leadership(pg_url, tmp_path / "a"), _leadership(pg_url, tmp_path / "b")
    try:
        assert _leads(first)
        assert second.check() is False
        assert (first.is_leader(), second.is_leader()) == (True, False)

        first.close()  # a clean stop ends the session, and with it the lock

        assert _leads(second)
        assert first.is_leader() is False
    finally:
        first.close()
        second.close()


def test_a_leader_whose_connection_is_lost_stops_leading_and_the_other_takes_over(pg_url, tmp_path):
    first, second = _leadership(pg_url, tmp_path / "a"), _leadership(pg_url, tmp_path / "b")
    try:
        assert _leads(first)
        assert _end_sessions_holding_the_lock(pg_url) == 1

        assert first.check() is False  # its confirmation fails: it steps down at once
        assert _leads(second)
        assert first.check() is False  # and cannot take it back while the other holds it
    finally:
        first.close()
        second.close()


def test_a_leader_that_cannot_confirm_its_lock_stops_leading_when_the_lease_runs_out(pg_url, tmp_path):
    clock = Clock()
    leader = _leadership(pg_url, tmp_path, clock)
    try:
        assert _leads(leader)
        clock.now += leader.lease * 0.9
        assert leader.is_leader() is True
        clock.now += leader.lease * 0.2  # no check confirmed the lock for a whole lease (a hung query)
        assert leader.is_leader() is False
        assert leader.check() is True  # confirmed again: the session still holds the lock
    finally:
        leader.close()


def test_the_lease_is_shorter_than_the_time_the_server_needs_to_free_a_lost_session():
    from tfops.ha.leadership import LEASE_BEATS, _keepalives

    for failover in [3.0, 3.5, 4.0, 5.0, 7.0, 10.0, 15.0, 30.0, 60.0, 599.0, 600.0]:
        heartbeat = failover / 5
        idle, interval, count = _keepalives(failover)
        server_gives_up = idle + interval * count
        # The old leader stops before the server frees its lock, and a follower's next beat takes
        # the lock within `failover`.
        assert LEASE_BEATS * heartbeat < server_gives_up, failover
        assert server_gives_up + heartbeat <= failover, failover


def test_a_second_daemon_on_one_sqlite_file_is_refused_with_a_pointer_to_postgresql(tmp_path):
    url = Store.sqlite_url(tmp_path / "state" / "tfops.db")
    first = SqliteLeadership(ServeLock(url, tmp_path / "one"))
    second = SqliteLeadership(ServeLock(url, tmp_path / "two"))
    first.start()
    try:
        with pytest.raises(AlreadyServing) as refused:
            second.start()
        assert "already uses the SQLite store" in str(refused.value)
        assert "PostgreSQL" in str(refused.value)
        first.close()
        second.start()  # once the first is gone, the next one starts
    finally:
        first.close()
        second.close()


def _instance(url: str, store: Store, name: str, data_dir: Path) -> tuple[Heartbeat, Roles]:
    roles = Roles()
    heartbeat = Heartbeat(
        store,
        _leadership(url, data_dir),
        Me(name, f"host-{name}", 1),
        interval=0.05,
        failover=15.0,
        roles=roles,
        transitions=Transitions(store, MultiNotifier()),
        queue=Queue(),
    )
    return heartbeat, roles


def test_the_instances_table_follows_the_leadership_from_one_daemon_to_the_other(pg_url, tmp_path):
    store = Store(pg_url)
    store.upgrade()
    one = _instance(pg_url, store, "vm-1", tmp_path / "one")
    two = _instance(pg_url, store, "vm-2", tmp_path / "two")
    try:
        one[0].start()
        two[0].start()
        wait_for(
            lambda: sorted(i.role for i in store.instances()) == [InstanceRole.FOLLOWER, InstanceRole.LEADER],
            timeout=30,
            what="one leader and one follower",
        )
        [(leader, leader_roles)] = [pair for pair in (one, two) if pair[0].leading]
        [(follower, follower_roles)] = [pair for pair in (one, two) if not pair[0].leading]

        leader.stop()  # a clean stop: it stops leading and leaves
        leader.leadership.close()

        wait_for(lambda: follower.leading, timeout=30, what="the follower to lead")
        wait_for(
            lambda: [(i.id, i.role) for i in store.instances()] == [(follower.me.id, InstanceRole.LEADER)],
            timeout=30,
            what="the instances table to show it",
        )
        assert leader_roles.heard == ["lead", "follow"]
        assert follower_roles.heard == ["lead"]
    finally:
        for heartbeat, _ in (one, two):
            heartbeat.stop()
            heartbeat.leadership.close()
        store.close()
