"""The store on a real SQLite file: schema, migrations, run lifecycle, concurrency.

Set TFOPS_TEST_POSTGRES_URL (e.g. postgresql+psycopg://tfops@127.0.0.1:5432/tfops_test, a database
the tests may wipe) to run the same scenarios on PostgreSQL as well; without it they are skipped.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, Table, inspect

from tfops.errors import IllegalTransition, TerminalError
from tfops.models import DriftState, RunKind, RunReason, RunStatus, Trigger, TriggerSource
from tfops.store import InvalidTransition, RunNotFound, StackNotFound, Store
from tfops.store.schema import metadata
from tfops.store.schema import runs as runs_table

POLL = Trigger(source=TriggerSource.POLL, actor="poll")
SHA_A = "a" * 40
SHA_B = "b" * 40


def schema_diff(store: Store, target: MetaData) -> list:
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, target)


def test_fresh_database_upgrades_to_head_with_every_table(store_url):
    store = Store(store_url)
    store.upgrade()

    tables = set(inspect(store.engine).get_table_names())
    assert {"stacks", "runs", "run_events", "meta", "alembic_version"} <= tables
    assert store.ping() is True
    store.close()


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    import tfops.store.store as store_module

    return ScriptDirectory(str(Path(store_module.__file__).parent / "migrations")).get_current_head()


def test_upgrading_twice_is_a_no_op_that_keeps_data(store):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)

    store.upgrade()

    assert store.get_run(run.id) == run
    with store.engine.connect() as connection:
        versions = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    assert versions == [_head_revision()]


def test_migration_creates_exactly_the_tables_of_schema_py(store):
    assert schema_diff(store, metadata) == []


def test_schema_comparison_would_notice_a_missing_table(store):
    # Guards the test above: an empty diff must mean "equal", not "compared nothing".
    extended = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extended)
    Table("not_migrated", extended, Column("id", Integer, primary_key=True))

    diff = schema_diff(store, extended)

    assert [entry[0] for entry in diff] == ["add_table"]


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_busy_timeout(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "wal.db"))
    store.upgrade()
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    store.close()


def test_deploy_run_moves_from_queued_through_planning_to_applied(store):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A, message="new commit")
    assert run.status is RunStatus.QUEUED
    assert run.started_at is None

    planning = store.transition(run.id, RunStatus.PLANNING, message="planning", log_path="/runs/1.log")
    store.transition(run.id, RunStatus.APPLYING, message="applying", plan_sha256="f" * 64)
    applied = store.transition(run.id, RunStatus.APPLIED, message="applied", exit_code=0, decided_by="alice")

    assert planning.started_at is not None and planning.finished_at is None
    assert applied.status is RunStatus.APPLIED
    assert (applied.log_path, applied.exit_code, applied.decided_by) == ("/runs/1.log", 0, "alice")
    assert applied.created_at <= applied.started_at <= applied.finished_at
    events = store.events(run.id)
    assert [(e.from_status, e.to_status, e.message) for e in events] == [
        (None, RunStatus.QUEUED, "new commit"),
        (RunStatus.QUEUED, RunStatus.PLANNING, "planning"),
        (RunStatus.PLANNING, RunStatus.APPLYING, "applying"),
        (RunStatus.APPLYING, RunStatus.APPLIED, "applied"),
    ]
    assert [e.at for e in events] == sorted(e.at for e in events)


def test_terminal_run_refuses_every_further_transition(store):
    run = store.create_run("network", RunKind.DRIFT, POLL, SHA_A)
    store.transition(run.id, RunStatus.PLANNING)
    store.transition(run.id, RunStatus.NO_CHANGES)

    for status in (RunStatus.APPLYING, RunStatus.FAILED, RunStatus.NO_CHANGES):
        with pytest.raises(InvalidTransition, match="terminal"):
            store.transition(run.id, status, error="late")

    assert store.get_run(run.id).status is RunStatus.NO_CHANGES
    assert store.get_run(run.id).error is None
    assert len(store.events(run.id)) == 3


def test_invalid_transition_is_a_terminal_error():
    assert issubclass(InvalidTransition, TerminalError)


def test_allowed_from_is_enforced(store):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)
    store.transition(run.id, RunStatus.PLANNING)

    with pytest.raises(InvalidTransition, match="planning"):
        store.transition(run.id, RunStatus.APPLYING, allowed_from={RunStatus.APPROVED})

    moved = store.transition(run.id, RunStatus.AWAITING_APPROVAL, allowed_from={RunStatus.PLANNING})
    assert moved.status is RunStatus.AWAITING_APPROVAL


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((), RunStatus.APPLIED),  # applied without a plan or an apply
        ((RunStatus.PLANNING,), RunStatus.APPLIED),  # applied without applying
        ((RunStatus.PLANNING,), RunStatus.APPROVED),  # approved without anyone being asked
        ((RunStatus.PLANNING, RunStatus.AWAITING_APPROVAL), RunStatus.APPLYING),  # applied unapproved
        ((RunStatus.PLANNING,), RunStatus.QUEUED),  # back to the queue
    ],
)
def test_a_move_outside_the_transition_table_is_refused_and_changes_nothing(store, path, illegal):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)
    for status in path:
        store.transition(run.id, status)

    with pytest.raises(IllegalTransition, match=f"may not move from .* to {illegal}"):
        store.transition(run.id, illegal, message="bug")

    assert store.get_run(run.id).status is (path[-1] if path else RunStatus.QUEUED)
    assert len(store.events(run.id)) == 1 + len(path)


def test_an_illegal_move_is_a_bug_not_a_race_that_callers_would_swallow():
    assert issubclass(IllegalTransition, TerminalError)
    assert not issubclass(IllegalTransition, InvalidTransition)


def test_rows_with_a_kind_older_versions_declared_still_read_and_blocked_reads_as_blocked(store):
    run = store.create_run("network", RunKind.DRIFT, POLL, SHA_A)
    with store.engine.begin() as connection:
        connection.execute(
            runs_table.update().where(runs_table.c.id == run.id).values(status="blocked", kind="remediate")
        )

    old = store.get_run(run.id)

    # "blocked" was declared and never written before issue 13; change guards write it now.
    assert (old.status, old.kind) == (RunStatus.BLOCKED, RunKind.DRIFT)
    assert [r.id for r in store.list_runs(stack="network")] == [run.id]
    with pytest.raises(InvalidTransition, match="terminal"):
        store.transition(run.id, RunStatus.PLANNING)


def test_the_last_run_of_a_kind_is_found_behind_any_number_of_newer_runs(store):
    deploy = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)
    for _ in range(60):
        store.create_run("network", RunKind.DRIFT, POLL, SHA_A, status=RunStatus.NO_CHANGES)
    store.create_run("dns", RunKind.DEPLOY, POLL, SHA_B)

    assert store.last_run("network", kinds={RunKind.DEPLOY}).id == deploy.id
    assert store.last_run("network").kind is RunKind.DRIFT
    assert store.last_run("network", kinds={RunKind.PLAN}) is None


def test_two_threads_racing_for_a_queued_run_exactly_one_wins(store_url):
    # Two Store objects: two engines and pools, as two processes would have.
    stores = [Store(store_url), Store(store_url)]
    stores[0].upgrade()
    contenders = 4
    rounds = 10
    # A stack per round: the winners stay `planning`, and a stack has one working run at a time.
    stores[0].sync_stacks([(f"network{i}", f"stacks/network{i}") for i in range(rounds)])
    run_ids = [stores[0].create_run(f"network{i}", RunKind.DEPLOY, POLL, SHA_A).id for i in range(rounds)]
    outcomes: list[tuple[int, str]] = []
    lock = threading.Lock()

    def contend(store: Store, run_id: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            store.transition(run_id, RunStatus.PLANNING, allowed_from={RunStatus.QUEUED})
            outcome = "won"
        except InvalidTransition:
            outcome = "lost"
        with lock:
            outcomes.append((run_id, outcome))

    for run_id in run_ids:
        barrier = threading.Barrier(contenders)
        threads = [
            threading.Thread(target=contend, args=(stores[i % 2], run_id, barrier)) for i in range(contenders)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

    for run_id in run_ids:
        results = sorted(outcome for rid, outcome in outcomes if rid == run_id)
        assert results == ["lost"] * (contenders - 1) + ["won"]
        assert [e.to_status for e in stores[1].events(run_id)] == [RunStatus.QUEUED, RunStatus.PLANNING]
    for store in stores:
        store.close()


def test_unknown_field_in_transition_raises_type_error_and_changes_nothing(store):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)

    with pytest.raises(TypeError, match="stack"):
        store.transition(run.id, RunStatus.PLANNING, stack="dns")

    assert store.get_run(run.id) == run
    assert len(store.events(run.id)) == 1


def test_transition_of_a_missing_run_says_so(store):
    with pytest.raises(RunNotFound):
        store.transition(999, RunStatus.PLANNING)


def test_run_cancelled_from_the_queue_finishes_without_having_started(store):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)

    superseded = store.transition(run.id, RunStatus.SUPERSEDED, message="newer commit")

    assert superseded.started_at is None
    assert superseded.finished_at is not None


def test_datetimes_come_back_aware_in_utc(store):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)
    given_start = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))

    moved = store.transition(run.id, RunStatus.PLANNING, started_at=given_start)
    store.set_drift("network", DriftState.IN_SYNC)

    assert moved.started_at == given_start
    assert moved.started_at.tzinfo is UTC and moved.started_at.hour == 12
    assert moved.created_at.tzinfo is UTC
    assert store.get_stack("network").drift_checked_at.tzinfo is UTC
    assert store.events(run.id)[0].at.tzinfo is UTC


def test_a_stack_remembers_when_it_was_last_seen_in_sync_and_drift_does_not_move_it(store):
    seen = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    store.set_drift("network", DriftState.IN_SYNC, seen_at=seen)
    store.set_drift("network", DriftState.DRIFTED, summary={"drift": []})

    state = store.get_stack("network")
    assert state.in_sync_at == seen and state.drift is DriftState.DRIFTED
    store.set_drift("network", DriftState.IN_SYNC)
    assert store.get_stack("network").in_sync_at > seen


def test_naive_datetime_is_refused(store):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)

    with pytest.raises(Exception, match="naive datetime"):
        store.transition(run.id, RunStatus.PLANNING, started_at=datetime(2024, 5, 1, 12, 0))

    assert store.get_run(run.id).status is RunStatus.QUEUED


def test_list_runs_is_newest_first_with_stack_filter_and_limit(store):
    network_runs = [store.create_run("network", RunKind.DRIFT, POLL, SHA_A).id for _ in range(3)]
    dns_run = store.create_run("dns", RunKind.PLAN, POLL, SHA_B).id

    assert [r.id for r in store.list_runs()] == [dns_run, *reversed(network_runs)]
    assert [r.id for r in store.list_runs(stack="network")] == list(reversed(network_runs))
    assert [r.id for r in store.list_runs(stack="network", limit=2)] == network_runs[:0:-1]
    assert store.last_run("dns").id == dns_run
    assert store.last_run("nothing-here") is None


def test_open_runs_and_runs_with_status_find_unfinished_work(store):
    queued = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)
    planning = store.create_run("network", RunKind.DRIFT, POLL, SHA_A)
    done = store.create_run("network", RunKind.DRIFT, POLL, SHA_A)
    store.transition(done.id, RunStatus.PLANNING)  # one working run per stack: this one ends first
    store.transition(done.id, RunStatus.FAILED, error="provider error")
    store.transition(planning.id, RunStatus.PLANNING)
    store.create_run("dns", RunKind.DEPLOY, POLL, SHA_A)

    assert [r.id for r in store.open_runs("network")] == [queued.id, planning.id]
    in_flight = store.runs_with_status({RunStatus.PLANNING, RunStatus.APPLYING})
    assert [r.id for r in in_flight] == [planning.id]


def test_run_keeps_its_trigger_and_summary(store):
    trigger = Trigger(source=TriggerSource.WEBHOOK, actor="delivery-42", previous_sha=SHA_B, forced=True)
    run = store.create_run("network", RunKind.DEPLOY, trigger, SHA_A)
    summary = {"counts": {"create": 1}, "changes": [{"address": "null_resource.a", "action": "create"}]}

    store.transition(run.id, RunStatus.PLANNING)
    stored = store.transition(run.id, RunStatus.PLANNED, summary=summary)

    assert store.get_run(run.id).trigger == trigger
    assert stored.summary == summary


def test_run_for_an_unknown_stack_is_refused(store):
    with pytest.raises(StackNotFound):
        store.create_run("ghost", RunKind.DEPLOY, POLL, SHA_A)


def test_sync_stacks_keeps_history_when_a_stack_disappears(store):
    run = store.create_run("dns", RunKind.DEPLOY, POLL, SHA_A)
    store.mark_stack_applied("dns", SHA_A)

    store.sync_stacks([("network", "infra/network"), ("storage", "stacks/storage")])

    assert [s.name for s in store.list_stacks()] == ["dns", "network", "storage"]
    assert store.get_stack("dns").applied_sha == SHA_A
    assert store.get_stack("network").path == "infra/network"
    assert store.get_stack("storage").drift is DriftState.UNKNOWN
    assert store.get_run(run.id).stack == "dns"


def test_heads_applied_commit_and_drift_are_remembered_per_stack(store):
    store.set_head_all(SHA_A)
    store.set_head("dns", SHA_B)
    store.mark_stack_applied("network", SHA_A)
    store.set_drift("network", DriftState.DRIFTED, summary={"drift": ["null_resource.a"]})

    network, dns = store.get_stack("network"), store.get_stack("dns")
    assert (network.head_sha, dns.head_sha) == (SHA_A, SHA_B)
    assert network.applied_sha == SHA_A
    assert network.drift is DriftState.DRIFTED
    assert network.extra["drift_summary"] == {"drift": ["null_resource.a"]}
    with pytest.raises(StackNotFound):
        store.set_head("ghost", SHA_A)


def test_meta_round_trips_json(store):
    assert store.get_meta("last_fetch") is None

    store.set_meta("last_fetch", {"head": SHA_A, "at": "2024-05-01T12:00:00+00:00", "stacks": [1, 2]})
    store.set_meta("last_fetch", {"head": SHA_B, "ok": True})

    assert store.get_meta("last_fetch") == {"head": SHA_B, "ok": True}


def test_a_status_change_keeps_why_in_one_word_on_the_run_and_its_event(store):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)
    store.transition(run.id, RunStatus.PLANNING, message="planning", reason=RunReason.STARTED)

    failed = store.transition(
        run.id, RunStatus.FAILED, message="terraform apply exited 1", reason=RunReason.TERRAFORM_FAILED
    )

    assert failed.reason is RunReason.TERRAFORM_FAILED
    assert store.get_run(run.id).reason is RunReason.TERRAFORM_FAILED
    assert [(event.to_status, event.reason, event.message) for event in store.events(run.id)] == [
        (RunStatus.QUEUED, None, ""),
        (RunStatus.PLANNING, RunReason.STARTED, "planning"),
        (RunStatus.FAILED, RunReason.TERRAFORM_FAILED, "terraform apply exited 1"),
    ]


def test_a_reason_written_by_a_newer_version_reads_as_none_instead_of_failing(store):
    run = store.create_run("network", RunKind.DEPLOY, POLL, SHA_A)
    with store.engine.begin() as connection:
        connection.execute(
            runs_table.update().where(runs_table.c.id == run.id).values(reason="from_the_future")
        )

    assert store.get_run(run.id).reason is None
    assert store.list_runs(stack="network")[0].status is RunStatus.QUEUED
