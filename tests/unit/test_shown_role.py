"""A killed leader's row reads `leader` until the new leader settles it: `tfops status` and
`/readyz` show it as presumed dead, so that readers never see two leaders (tfops.ha.shown_role)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tfops.cli_status import instance_lines
from tfops.ha.shown_role import PRESUMED_DEAD, shown_role
from tfops.models import Instance, InstanceRole
from tfops.store import Store
from tfops.web.health import ReadinessFacts, health_router

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _instance(name: str, role: InstanceRole, beat: float) -> Instance:
    at = START + timedelta(seconds=beat)
    return Instance(id=name, host="h", pid=1, started_at=START, heartbeat_at=at, role=role)


def test_a_leader_silent_for_longer_than_failover_is_shown_presumed_dead():
    leader = _instance("vm-1", InstanceRole.LEADER, beat=0)
    now = START + timedelta(seconds=16)

    assert shown_role(leader, START + timedelta(seconds=15), 15) == "leader"  # not longer yet
    assert shown_role(leader, now, 15) == PRESUMED_DEAD
    assert shown_role(_instance("vm-2", InstanceRole.FOLLOWER, beat=0), now, 15) == PRESUMED_DEAD
    assert shown_role(leader, now, None) == "leader"  # without a failover nothing is judged


def test_readyz_never_lists_a_dead_leader_beside_the_new_one():
    instances = (
        _instance("vm-1", InstanceRole.LEADER, beat=0),  # killed: its row was not settled yet
        _instance("vm-2", InstanceRole.LEADER, beat=28),
    )
    facts = ReadinessFacts(
        store_ok=True,
        scheduler_running=True,
        last_fetch_ok_at=START + timedelta(seconds=29),
        last_fetch_error=None,
        poll_interval=60.0,
        started_at=START,
        now=START + timedelta(seconds=30),
        instances=instances,
        failover=15.0,
    )
    app = FastAPI()
    app.include_router(health_router(lambda: facts))

    body = TestClient(app).get("/readyz").json()

    assert {i["id"]: i["role"] for i in body["instances"]} == {"vm-1": PRESUMED_DEAD, "vm-2": "leader"}


def test_status_shows_a_silent_leader_presumed_dead_not_leader(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"))
    store.upgrade()
    store.register_instance("vm-1", "host-a", 11, now=START)
    store.beat("vm-1", InstanceRole.LEADER, now=START)
    store.register_instance("vm-2", "host-b", 22, now=START)
    store.beat("vm-2", InstanceRole.LEADER, now=START + timedelta(seconds=28))

    lines = instance_lines(store, now=START + timedelta(seconds=30), failover=15)
    store.close()

    roles = {line.split()[0]: line for line in lines[1:]}
    assert "  leader  " in roles["vm-2"] and "presumed dead" not in roles["vm-2"]
    assert "host-a  presumed dead  heartbeat 30s ago" in roles["vm-1"]
    assert sum(" leader " in line for line in lines) == 1
