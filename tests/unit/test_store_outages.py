"""The daemon's store calls outlive the server dropping their session mid-transaction.

The real PostgreSQL server drops the session (`pg_terminate_backend`, what `pg_ctl restart -m fast`
does to every backend) just before a run's UPDATE; the connection also drops right after a COMMIT
the server completed (the ambiguous case). The daemon's Store (outage_wait > 0) runs the call
again and records it once; a reading command's Store (outage_wait = 0) fails at once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from tfops.models import RunKind, RunStatus, Trigger, TriggerSource
from tfops.store import InvalidTransition, Store
from tfops.store.engine import StoreBase

POLL = Trigger(source=TriggerSource.POLL, actor="poll")
SHA = "a" * 40


@pytest.fixture
def daemon_store(postgres_store_url: str):
    store = Store(postgres_store_url, outage_wait=30)
    store.upgrade()
    store.sync_stacks([("app", "stacks/app")])
    yield store
    store.close()


def _applying_run(store: Store) -> int:
    run = store.create_run("app", RunKind.DEPLOY, POLL, SHA)
    store.transition(run.id, RunStatus.PLANNING)
    return store.transition(run.id, RunStatus.APPLYING).id


def _drop_session_before(
    store: Store, url: str, statement_start: str = "UPDATE RUNS", *, times: int = 1
) -> list[int]:
    """`times` times, just before a statement starting with `statement_start` (by default a run's
    UPDATE), have the server drop the session that sends it (from another connection, waiting
    until the backend is gone). Returns the pids dropped."""
    admin = create_engine(url, poolclass=NullPool)  # nothing left open after the test
    dropped: list[int] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def drop_session(_conn, cursor, statement, _params, _context, _many):
        if len(dropped) >= times or not " ".join(statement.split()).upper().startswith(statement_start):
            return
        pid = cursor.connection.info.backend_pid
        dropped.append(pid)
        with admin.connect() as other:
            assert other.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar()

    return dropped


def test_a_call_the_server_keeps_cutting_off_fails_once_its_outage_wait_is_spent(postgres_store_url, caplog):
    store = Store(postgres_store_url, outage_wait=1)
    store.upgrade()
    store.sync_stacks([("app", "stacks/app")])
    run_id = _applying_run(store)
    dropped = _drop_session_before(store, postgres_store_url, times=1000)
    caplog.set_level(logging.WARNING, logger="tfops.store.outages")

    with pytest.raises(OperationalError, match="terminating connection"):
        store.transition(run_id, RunStatus.APPLIED)

    assert 1 < len(dropped) < 1000  # it tried again, then gave up
    assert store.get_run(run_id).status is RunStatus.APPLYING
    store.close()


def test_a_transition_whose_update_the_server_cuts_off_is_recorded_once(
    daemon_store, postgres_store_url, caplog
):
    run_id = _applying_run(daemon_store)
    dropped = _drop_session_before(daemon_store, postgres_store_url)
    caplog.set_level(logging.WARNING, logger="tfops.store.outages")

    applied = daemon_store.transition(run_id, RunStatus.APPLIED, message="applied", exit_code=0)

    assert dropped, "the server never dropped the session"
    assert "the database went away mid-transaction" in caplog.text
    assert postgres_store_url not in caplog.text
    assert applied.status is RunStatus.APPLIED and applied.exit_code == 0
    terminal = [e for e in daemon_store.events(run_id) if e.to_status.is_terminal]
    assert [(e.to_status, e.message) for e in terminal] == [(RunStatus.APPLIED, "applied")]


def test_other_writes_and_reads_cut_off_by_the_server_run_again(daemon_store, postgres_store_url):
    run_id = _applying_run(daemon_store)
    dropped = _drop_session_before(daemon_store, postgres_store_url)
    daemon_store.set_run_process_group(run_id, 4242, "terraform")
    assert dropped and daemon_store.run_process_group(run_id) == (4242, "terraform")

    dropped_read = _drop_session_before(daemon_store, postgres_store_url, "SELECT RUNS.ID")
    assert daemon_store.get_run(run_id).status is RunStatus.APPLYING
    assert dropped_read, "the read was never cut off"


def test_a_transition_whose_commit_answer_is_lost_returns_the_run_it_moved(daemon_store, caplog):
    run_id = _applying_run(daemon_store)
    caplog.set_level(logging.WARNING, logger="tfops.store.outages")
    lost: list[bool] = []

    @event.listens_for(daemon_store.engine, "commit")
    def lose_the_answer(conn):
        # The server commits; then the connection drops before the client hears back.
        if lost:
            return
        dbapi = conn.connection.dbapi_connection
        dbapi.commit()
        dbapi.close()
        lost.append(True)

    applied = daemon_store.transition(run_id, RunStatus.APPLIED, message="applied")

    assert lost, "no commit was cut off"
    assert "the database went away mid-transaction" in caplog.text  # the call ran again
    assert applied.status is RunStatus.APPLIED
    terminal = [e for e in daemon_store.events(run_id) if e.to_status.is_terminal]
    assert [e.message for e in terminal] == ["applied"]


def test_another_callers_transition_is_not_taken_for_this_one(daemon_store):
    # The run reached `applied` through another call: a second call with the same message is refused.
    run_id = _applying_run(daemon_store)
    daemon_store.transition(run_id, RunStatus.APPLIED, message="applied")
    with pytest.raises(InvalidTransition):
        daemon_store.transition(run_id, RunStatus.APPLIED, message="applied")


def test_a_reading_commands_store_fails_at_once_when_its_session_is_dropped(
    daemon_store, postgres_store_url, caplog
):
    run_id = _applying_run(daemon_store)
    reader = Store(postgres_store_url)  # a reading command's store: no waiting
    dropped = _drop_session_before(reader, postgres_store_url)
    caplog.set_level(logging.WARNING, logger="tfops.store.outages")

    with pytest.raises(OperationalError, match="terminating connection"):
        reader.transition(run_id, RunStatus.APPLIED)

    assert dropped and "trying again" not in caplog.text
    assert daemon_store.get_run(run_id).status is RunStatus.APPLYING  # rolled back, not half-done
    reader.close()


def test_a_reading_commands_store_says_the_database_does_not_answer_without_waiting(tmp_path: Path, caplog):
    caplog.set_level(logging.WARNING, logger="tfops.store.outages")
    nowhere = f"postgresql+psycopg://tfops@/tfops_test?host={tmp_path}"  # no server on this socket
    reader = Store(nowhere)
    with pytest.raises(OperationalError, match="Is the server running"):
        reader.get_run(1)
    assert "does not answer" not in caplog.text  # it did not wait and try again
    reader.close()


def test_sqlite_stores_are_not_retried(tmp_path: Path):
    store = Store(Store.sqlite_url(tmp_path / "tfops.db"), outage_wait=30)
    store.upgrade()
    store.sync_stacks([("app", "stacks/app")])
    run_id = _applying_run(store)
    assert store.transition(run_id, RunStatus.APPLIED).status is RunStatus.APPLIED
    assert [e.to_status for e in store.events(run_id)][-1] is RunStatus.APPLIED
    store.close()


def test_every_public_method_of_the_tables_runs_through_outages():
    # A new table's mixin is covered without a line of its own; StoreBase's (ping, close) are not.
    own = {name for name in vars(StoreBase) if not name.startswith("_")}
    public = [n for n in dir(Store) if not n.startswith("_") and n not in own and callable(getattr(Store, n))]
    unwrapped = [n for n in public if not hasattr(getattr(Store, n), "__wrapped__") and n != "transition"]
    assert len(public) > 40 and unwrapped == []
    assert not hasattr(Store.ping, "__wrapped__")
