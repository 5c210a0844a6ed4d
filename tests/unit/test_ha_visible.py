"""The instances, visible: `tfops status` lists them, and a follower is ready without fetching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tfops.cli_status import instance_lines
from tfops.metrics import Metrics
from tfops.models import InstanceRole, RunKind, RunStatus, Trigger, TriggerSource
from tfops.store import Store
from tfops.web.health import ReadinessFacts, readiness

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_status_lists_the_instances_leader_first_with_heartbeat_and_runs_in_flight(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.sync_stacks([("app", "stacks/app")])
    store.register_instance("vm-a", "host-a", 11, now=START)
    store.register_instance("vm-b", "host-bb", 22, now=START)
    store.beat("vm-b", InstanceRole.LEADER, now=START + timedelta(seconds=8))
    run = store.create_run("app", RunKind.DEPLOY, Trigger(source=TriggerSource.POLL, actor="poll"), "a" * 40)
    store.transition(run.id, RunStatus.PLANNING, instance_id="vm-a")

    lines = instance_lines(store, now=START + timedelta(seconds=10), failover=15)
    later = instance_lines(store, now=START + timedelta(seconds=20), failover=15)

    assert lines == [
        "instances (2)",
        "  vm-b  host-bb  leader    heartbeat 2s ago  0 runs in flight",
        "  vm-a  host-a   follower  heartbeat 10s ago  1 run in flight",
    ]
    assert later[2].endswith("heartbeat 20s ago  1 run in flight  (silent: presumed dead)")
    assert "presumed dead" not in later[1]
    store.close()


def test_no_instance_line_when_no_daemon_serves_the_store(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    assert instance_lines(store) == []
    store.close()


def test_a_follower_is_ready_without_fetching_because_the_leader_polls():
    never_fetched = ReadinessFacts(
        store_ok=True,
        scheduler_running=True,
        last_fetch_ok_at=None,
        last_fetch_error=None,
        poll_interval=60.0,
        started_at=START,
        now=START + timedelta(hours=1),
    )

    assert readiness(never_fetched).ready is False  # the leader (or a lone daemon) must fetch
    follower = readiness(ReadinessFacts(**{**never_fetched.__dict__, "leader": False}))
    assert follower.ready is True and follower.checks["fetch"] is True


def test_leader_changes_are_counted_and_the_gauge_says_who_leads():
    metrics = Metrics(instance="vm-1")
    metrics.leader_changed(True)
    metrics.leader_changed(False)
    metrics.leader_changed(True)

    text = metrics.render()[0].decode()

    assert 'tfops_leader_changes_total{to="leader"} 2.0' in text
    assert 'tfops_leader_changes_total{to="follower"} 1.0' in text
    assert "tfops_leader 1.0" in text
    assert 'tfops_instance_info{instance="vm-1"} 1.0' in text
