"""A PostgreSQL restart under the daemon: a store call made while the server is away waits for it
and then happens once; a reading command does not wait. A server of its own (tests/pgserver.py),
since it is stopped and started again."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from pgserver import start_or_skip
from sqlalchemy.exc import OperationalError

from tfops.models import RunKind, RunStatus, Trigger, TriggerSource
from tfops.store import Store

POLL = Trigger(source=TriggerSource.POLL, actor="poll")


@pytest.fixture
def server():
    server = start_or_skip()
    yield server
    server.stop()


def _until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_status_change_during_a_database_restart_waits_for_it_and_is_recorded_once(server, caplog):
    store = Store(server.url, outage_wait=60)
    store.upgrade()
    store.sync_stacks([("app", "stacks/app")])
    run = store.create_run("app", RunKind.DEPLOY, POLL, "a" * 40)
    reader = Store(server.url)  # a reading command's store: no waiting
    server.halt()
    moved: list = []
    caplog.set_level(logging.WARNING, logger="tfops.store.engine")

    worker = threading.Thread(target=lambda: moved.append(store.transition(run.id, RunStatus.PLANNING)))
    worker.start()
    _until(lambda: "the database does not answer" in caplog.text)  # it is waiting, not failing
    with pytest.raises(OperationalError):
        reader.get_run(run.id)
    server.resume()
    worker.join(60)

    assert [r.status for r in moved] == [RunStatus.PLANNING]
    assert [e.to_status for e in store.events(run.id)] == [RunStatus.QUEUED, RunStatus.PLANNING]
    store.close()
    reader.close()
