"""The store's side of Slack delivery and approvals, on a real SQLite file.

Migration 0002 (outbox, slack_messages, decisions, audit_log), ordered delivery per channel with
retries and claims, the run's Slack message, decisions where one person counts once, and the
append-only audit log. Set TFOPS_TEST_POSTGRES_URL to run the same scenarios on PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import insert, inspect, select

from tfops.models import (
    DecisionKind,
    DecisionOutcome,
    DecisionSource,
    OutboxKind,
    OutboxStatus,
    RunKind,
    RunStatus,
    Trigger,
    TriggerSource,
)
from tfops.store import RunNotFound, Store, schema
from tfops.store.schema import metadata
from tfops.store.store import (
    MAX_OUTBOX_ERROR_CHARS,
    MIGRATIONS_DIR,
    OutboxItemNotFound,
    OutboxItemNotPending,
    utc_now,
)

POLL = Trigger(source=TriggerSource.POLL, actor="poll")
SHA_A = "a" * 40
PLAN_HASH = "f" * 64
NEW_TABLES = {"outbox", "slack_messages", "decisions", "audit_log"}
APPROVE, REJECT = DecisionKind.APPROVE, DecisionKind.REJECT
SLACK = DecisionSource.SLACK
COUNTED, REFUSED, DUPLICATE = DecisionOutcome.COUNTED, DecisionOutcome.REFUSED, DecisionOutcome.DUPLICATE


@pytest.fixture
def store(store_url: str):
    store = Store(store_url)
    store.upgrade()
    store.sync_stacks([("network", "stacks/network")])
    yield store
    store.close()


@pytest.fixture
def run_id(store: Store) -> int:
    return store.create_run("network", RunKind.DEPLOY, POLL, SHA_A).id


def migrate(store: Store, revision: str, *, down: bool = False) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        (command.downgrade if down else command.upgrade)(config, revision)


def schema_version(store: Store) -> list[str]:
    with store.engine.connect() as connection:
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()


def deliver_due(store: Store, now: datetime, delivered: list[str], channel: str | None = None) -> None:
    """A minimal sender: claim, 'send' (record the text), mark sent; until nothing is due."""
    while (item := store.claim_next(channel, now=now)) is not None:
        delivered.append(item.payload["text"])
        store.mark_sent(item.id, {"ts": f"{item.id}.000100"})


# -- migration ---------------------------------------------------------------------------------------


def test_upgrade_from_0001_keeps_existing_runs_and_adds_the_new_tables(store_url):
    store = Store(store_url)
    migrate(store, "0001")
    store.sync_stacks([("network", "stacks/network")])
    run_id = _insert_0001_run(store)
    store.set_meta("last_fetch", {"head": SHA_A})
    assert not NEW_TABLES & set(inspect(store.engine).get_table_names())

    store.upgrade()

    assert schema_version(store) == [_head()]
    assert set(inspect(store.engine).get_table_names()) >= NEW_TABLES
    assert store.get_run(run_id).status is RunStatus.PLANNING
    assert [e.message for e in store.events(run_id)] == ["before 0002", ""]
    assert store.get_meta("last_fetch") == {"head": SHA_A}
    assert store.enqueue("#ops", OutboxKind.POST, {"text": "hello"}, run_id=run_id) >= 1
    store.close()


def test_migrations_still_create_exactly_the_tables_of_schema_py(store):
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def _insert_0001_run(store: Store) -> int:
    """A planning run with its events, written with only the columns 0001 has (the Store's own
    queries read the newest schema)."""
    now = utc_now()
    with store.engine.begin() as connection:
        run_id = connection.execute(
            insert(schema.runs).values(
                stack="network",
                kind=RunKind.DEPLOY.value,
                status=RunStatus.PLANNING.value,
                trigger=POLL.to_dict(),
                commit_sha=SHA_A,
                created_at=now,
            )
        ).inserted_primary_key[0]
        for from_status, to_status, message in ((None, "queued", "before 0002"), ("queued", "planning", "")):
            connection.execute(
                insert(schema.run_events).values(
                    run_id=run_id, at=now, from_status=from_status, to_status=to_status, message=message
                )
            )
    return run_id


def _head() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def test_downgrade_to_0001_drops_only_the_new_tables(store, run_id):
    store.enqueue("#ops", OutboxKind.POST, {"text": "hello"}, run_id=run_id)

    migrate(store, "0001", down=True)

    assert schema_version(store) == ["0001"]
    assert not NEW_TABLES & set(inspect(store.engine).get_table_names())
    with store.engine.connect() as connection:  # read as 0001 knows it
        query = select(schema.runs.c.commit_sha).where(schema.runs.c.id == run_id)
        assert connection.execute(query).scalar_one() == SHA_A


# -- ordered delivery --------------------------------------------------------------------------------


def test_only_the_oldest_pending_item_of_a_channel_is_due(store):
    first, second, third = (store.enqueue("#ops", OutboxKind.POST, {"text": t}) for t in "abc")

    assert [i.id for i in store.next_due()] == [first]
    assert [i.id for i in store.pending_for("#ops")] == [first, second, third]

    store.mark_sent(first, {"ts": "1.1"})
    assert [i.id for i in store.next_due()] == [second]
    assert [i.id for i in store.pending_for("#ops", limit=1)] == [second]


def test_channels_are_delivered_independently_each_in_order(store):
    ops = [store.enqueue("#ops", OutboxKind.POST, {"text": f"ops-{n}"}) for n in range(3)]
    dev = [store.enqueue("#dev", OutboxKind.POST, {"text": f"dev-{n}"}) for n in range(2)]
    store.mark_retry(ops[0], "connection refused", utc_now() + timedelta(minutes=5))

    assert [i.id for i in store.next_due()] == [dev[0]]
    delivered: list[str] = []
    deliver_due(store, utc_now(), delivered)
    assert delivered == ["dev-0", "dev-1"]

    deliver_due(store, utc_now() + timedelta(minutes=6), delivered)
    assert delivered == ["dev-0", "dev-1", "ops-0", "ops-1", "ops-2"]
    assert store.outbox_depth() == 0


def test_retry_counts_the_attempt_and_holds_the_channel_until_its_time(store):
    first = store.enqueue("#ops", OutboxKind.POST, {"text": "a"})
    store.enqueue("#ops", OutboxKind.UPDATE, {"text": "b"})
    retry_at = utc_now() + timedelta(seconds=30)

    store.mark_retry(first, "HTTP 429, Retry-After: 30", retry_at)
    store.mark_retry(first, "HTTP 429, Retry-After: 30", retry_at)

    item = store.get_outbox_item(first)
    assert (item.status, item.attempts, item.last_error) == (
        OutboxStatus.PENDING,
        2,
        "HTTP 429, Retry-After: 30",
    )
    assert item.next_attempt_at == retry_at
    assert store.next_due(retry_at - timedelta(seconds=1)) == []
    assert [i.id for i in store.next_due(retry_at)] == [first]


def test_a_failed_item_stops_holding_back_the_items_behind_it(store):
    first = store.enqueue("#ops", OutboxKind.POST, {"text": "a"})
    second = store.enqueue("#ops", OutboxKind.UPDATE, {"text": "b"})
    store.mark_retry(first, "channel_not_found", utc_now() + timedelta(days=1))
    assert store.next_due() == []

    store.mark_failed(first, "channel_not_found")

    failed = store.get_outbox_item(first)
    assert (failed.status, failed.attempts, failed.last_error) == (
        OutboxStatus.FAILED,
        2,
        "channel_not_found",
    )
    assert [i.id for i in store.next_due()] == [second]


def test_a_claimed_item_is_held_by_its_sender_until_the_lease_ends(store):
    first = store.enqueue("#ops", OutboxKind.POST, {"text": "a"})
    store.enqueue("#ops", OutboxKind.UPDATE, {"text": "b"})
    now = utc_now()

    claimed = store.claim_next("#ops", now=now, lease=timedelta(seconds=60))

    assert claimed.id == first
    assert claimed.next_attempt_at == now + timedelta(seconds=60)
    assert store.claim_next("#ops", now=now + timedelta(seconds=59)) is None
    assert store.claim_next(now=now + timedelta(seconds=59)) is None
    assert store.claim_next("#ops", now=now + timedelta(seconds=60)).id == first
    assert store.claim_next("#dev", now=now + timedelta(hours=1)) is None


def test_after_a_crash_pending_items_are_delivered_and_only_the_claimed_one_twice(store_url):
    before = Store(store_url)
    before.upgrade()
    for text_ in ("a", "b", "c"):
        before.enqueue("#ops", OutboxKind.POST, {"text": text_})
    delivered: list[str] = []
    first = before.claim_next(now=utc_now())
    delivered.append(first.payload["text"])
    before.mark_sent(first.id, {"ts": "1.1"})
    in_flight = before.claim_next(now=utc_now(), lease=timedelta(seconds=30))
    delivered.append(in_flight.payload["text"])
    before.close()  # the daemon dies after Slack took "b" and before mark_sent

    after = Store(store_url)
    after.upgrade()
    deliver_due(after, utc_now(), delivered)
    assert delivered == ["a", "b"]  # the channel waits for the lost claim: "c" may not overtake "b"

    deliver_due(after, utc_now() + timedelta(seconds=31), delivered)
    assert delivered == ["a", "b", "b", "c"]
    assert after.outbox_depth() == 0
    after.close()


def test_concurrent_senders_deliver_every_item_once_and_in_order_per_channel(store_url):
    stores = [Store(store_url), Store(store_url)]
    stores[0].upgrade()
    channels = ["#ops", "#dev", "#sec"]
    for n in range(8):
        for channel in channels:
            stores[0].enqueue(channel, OutboxKind.POST, {"text": f"{channel}-{n}"})
    delivered: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def sender(store: Store) -> None:
        barrier.wait()
        while (item := store.claim_next()) is not None or store.outbox_depth():
            if item is None:
                continue  # another sender holds the only due items; their channels move soon
            with lock:
                delivered.append(item.payload["text"])
            store.mark_sent(item.id, {"ts": f"{item.id}.1"})

    threads = [threading.Thread(target=sender, args=(stores[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(delivered) == sorted(f"{c}-{n}" for c in channels for n in range(8))
    for channel in channels:
        assert [t for t in delivered if t.startswith(channel)] == [f"{channel}-{n}" for n in range(8)]
    for store in stores:
        store.close()


def test_sent_items_keep_their_result_and_a_second_mark_sent_changes_nothing(store):
    item_id = store.enqueue("#ops", OutboxKind.THREAD, {"text": "tail of the error"})

    assert store.mark_sent(item_id, {"ts": "1.1"}) is True
    assert store.mark_sent(item_id, {"ts": "2.2"}) is False

    sent = store.get_outbox_item(item_id)
    assert (sent.status, sent.result, sent.attempts) == (OutboxStatus.SENT, {"ts": "1.1"}, 0)
    assert sent.sent_at >= sent.created_at


def test_retrying_or_failing_a_finished_item_is_refused(store):
    item_id = store.enqueue("#ops", OutboxKind.EPHEMERAL, {"text": "not an approver"})
    store.mark_sent(item_id, {})

    with pytest.raises(OutboxItemNotPending, match="sent"):
        store.mark_retry(item_id, "timeout", utc_now())
    with pytest.raises(OutboxItemNotPending):
        store.mark_failed(item_id, "timeout")
    with pytest.raises(OutboxItemNotFound):
        store.mark_sent(9999, {})
    assert store.get_outbox_item(item_id).status is OutboxStatus.SENT


def test_a_late_success_of_a_failed_item_is_recorded(store):
    item_id = store.enqueue("#ops", OutboxKind.POST, {"text": "a"})
    store.mark_failed(item_id, "timeout")

    assert store.mark_sent(item_id, {"ts": "1.1"}) is True
    assert store.get_outbox_item(item_id).status is OutboxStatus.SENT


def test_outbox_depth_counts_pending_items_over_all_channels(store):
    assert store.outbox_depth() == 0
    ids = [store.enqueue(c, OutboxKind.POST, {"text": c}) for c in ("#ops", "#ops", "#dev", "#dev")]

    store.mark_retry(ids[0], "timeout", utc_now())
    assert store.outbox_depth() == 4
    store.mark_sent(ids[0], {})
    store.mark_failed(ids[2], "channel_not_found")
    assert store.outbox_depth() == 2


def test_long_delivery_errors_are_clipped(store):
    item_id = store.enqueue("#ops", OutboxKind.POST, {"text": "a"})

    store.mark_failed(item_id, "<html>" + "x" * 10_000)

    error = store.get_outbox_item(item_id).last_error
    assert error.startswith("<html>xxx") and error.endswith("(clipped)")
    assert len(error) < MAX_OUTBOX_ERROR_CHARS + 20


def test_enqueue_refuses_an_unknown_kind_or_run(store):
    with pytest.raises(ValueError):
        store.enqueue("#ops", "carrier-pigeon", {"text": "a"})
    with pytest.raises(RunNotFound):
        store.enqueue("#ops", OutboxKind.POST, {"text": "a"}, run_id=424242)
    assert store.outbox_depth() == 0


# -- the run's Slack message -------------------------------------------------------------------------


def test_sending_a_runs_post_remembers_its_message_for_later_updates(store, run_id):
    post = store.enqueue("#ops", OutboxKind.POST, {"text": "planning"}, run_id=run_id)
    reply = store.enqueue("#ops", OutboxKind.THREAD, {"text": "details"}, run_id=run_id)
    assert store.get_slack_message(run_id) is None

    store.mark_sent(post, {"ts": "1712345678.000100", "channel": "C0OPS"})
    store.mark_sent(reply, {"ts": "1712345679.000200", "channel": "C0OPS"})

    message = store.get_slack_message(run_id)
    assert (message.run_id, message.channel, message.ts) == (run_id, "C0OPS", "1712345678.000100")


def test_set_slack_message_replaces_the_runs_message(store, run_id):
    store.set_slack_message(run_id, "C0OPS", "1.000100")
    store.set_slack_message(run_id, "C0DEV", "2.000200")

    message = store.get_slack_message(run_id)
    assert (message.channel, message.ts) == ("C0DEV", "2.000200")
    with pytest.raises(RunNotFound):
        store.set_slack_message(424242, "C0OPS", "3.0")


# -- decisions ---------------------------------------------------------------------------------------


def decide(store: Store, run_id: int, actor: str, decision=APPROVE, outcome=COUNTED, reason=None):
    return store.record_decision(
        run_id, decision, actor, actor.title(), SLACK, SHA_A, PLAN_HASH, outcome, reason
    )


def test_one_person_counts_once_however_often_they_click(store, run_id):
    first = decide(store, run_id, "U_ALICE")
    again = decide(store, run_id, "U_ALICE")
    bob = decide(store, run_id, "U_BOB")

    assert first.outcome is COUNTED
    assert again.outcome is DUPLICATE and "already counts" in again.reason
    assert bob.outcome is COUNTED
    assert [d.actor_id for d in store.counted_approvals(run_id)] == ["U_ALICE", "U_BOB"]
    assert [d.outcome for d in store.decisions(run_id)] == [COUNTED, DUPLICATE, COUNTED]


def test_refused_decisions_are_recorded_but_never_count(store, run_id):
    refused = decide(store, run_id, "U_MALLORY", outcome=REFUSED, reason="not an approver")
    decide(store, run_id, "U_ALICE", decision=REJECT)

    assert (refused.outcome, refused.reason) == (REFUSED, "not an approver")
    assert store.counted_approvals(run_id) == []
    recorded = store.decisions(run_id)
    assert [(d.actor_id, d.decision) for d in recorded] == [("U_MALLORY", APPROVE), ("U_ALICE", REJECT)]
    assert (recorded[1].commit_sha, recorded[1].plan_sha256, recorded[1].source) == (SHA_A, PLAN_HASH, SLACK)


def test_a_double_click_racing_on_two_connections_counts_once(store_url):
    stores = [Store(store_url), Store(store_url)]
    stores[0].upgrade()
    stores[0].sync_stacks([("network", "stacks/network")])
    run_ids = [stores[0].create_run("network", RunKind.DEPLOY, POLL, SHA_A).id for _ in range(5)]

    for run_id in run_ids:
        barrier = threading.Barrier(4)

        def click(store: Store, run_id: int = run_id, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            decide(store, run_id, "U_ALICE")

        threads = [threading.Thread(target=click, args=(stores[i % 2],)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

    for run_id in run_ids:
        assert len(stores[1].counted_approvals(run_id)) == 1
        assert sorted(d.outcome for d in stores[1].decisions(run_id)) == [COUNTED] + [DUPLICATE] * 3
    for store in stores:
        store.close()


def test_a_decision_on_a_missing_run_or_with_an_unknown_outcome_is_refused(store, run_id):
    with pytest.raises(RunNotFound):
        decide(store, 424242, "U_ALICE")
    with pytest.raises(ValueError):
        decide(store, run_id, "U_ALICE", outcome="maybe")
    assert store.decisions(run_id) == []


# -- audit log ---------------------------------------------------------------------------------------


def test_audit_log_only_grows_and_reads_newest_first(store, run_id):
    first = store.audit("U_MALLORY", "Mallory", "approve_refused", run_id, {"reason": "not an approver"})
    store.audit("U_MALLORY", "Mallory", "approve_refused", run_id, {"reason": "not an approver"})
    forged = store.audit("U_EVE", None, "approve_refused", 424242, {"reason": "no such run"})

    entries = store.audit_entries()
    assert [e.id for e in entries] == [forged.id, forged.id - 1, first.id]
    assert entries[-1] == first
    assert (forged.run_id, forged.actor_name, forged.detail) == (424242, None, {"reason": "no such run"})
    assert [e.id for e in store.audit_entries(limit=1)] == [forged.id]


# -- time --------------------------------------------------------------------------------------------


def test_every_new_timestamp_comes_back_aware_in_utc(store, run_id):
    item_id = store.enqueue("#ops", OutboxKind.POST, {"text": "a"}, run_id=run_id)
    in_two_hours_east = datetime(2030, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    store.mark_retry(item_id, "timeout", in_two_hours_east)
    retried = store.get_outbox_item(item_id)
    store.mark_sent(item_id, {"ts": "1.1"})
    sent = store.get_outbox_item(item_id)

    stamps = [
        retried.next_attempt_at,
        sent.created_at,
        sent.sent_at,
        store.get_slack_message(run_id).updated_at,
        decide(store, run_id, "U_ALICE").at,
        store.audit("U_ALICE", "Alice", "approved", run_id).at,
    ]
    assert all(stamp.tzinfo is UTC for stamp in stamps)
    assert retried.next_attempt_at == in_two_hours_east and retried.next_attempt_at.hour == 12


def test_naive_times_are_refused(store):
    item_id = store.enqueue("#ops", OutboxKind.POST, {"text": "a"})

    with pytest.raises(Exception, match="naive datetime"):
        store.mark_retry(item_id, "timeout", datetime(2030, 5, 1, 12, 0))
    with pytest.raises(Exception, match="naive datetime"):
        store.next_due(datetime(2030, 5, 1, 12, 0))

    assert store.get_outbox_item(item_id).attempts == 0
