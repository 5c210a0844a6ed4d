"""The status page's store reads (tfops/store/ui_queries.py), on SQLite and on PostgreSQL.

The store is filled through its own methods the way the daemon fills it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tfops.incidents import DriftedResource, DriftSeen, Resolution
from tfops.models import DriftState, RunKind, RunStatus, Trigger, TriggerSource
from tfops.store import Store, ui_queries

SHA = "c" * 40
POLL = Trigger(source=TriggerSource.POLL, actor="poll")


def finished(store: Store, stack: str, status: RunStatus) -> int:
    run = store.create_run(stack, RunKind.DEPLOY, POLL, SHA)
    store.transition(run.id, RunStatus.PLANNING, message="planning")
    if status is RunStatus.APPLIED:
        store.transition(run.id, RunStatus.APPLYING, message="applying")
    return store.transition(run.id, status, message=status.value).id


def a_store(url: str) -> Store:
    store = Store(url)
    store.upgrade()
    store.sync_stacks([("app", "stacks/app"), ("db", "stacks/db"), ("idle", "stacks/idle")])
    return store


def test_the_light_overview_matches_the_stores_and_leaves_the_json_out(store_url: str) -> None:
    store = a_store(store_url)
    try:
        store.set_drift("app", DriftState.DRIFTED, summary={"drift": ["a big summary"]})
        finished(store, "app", RunStatus.APPLIED)
        newest = finished(store, "app", RunStatus.FAILED)
        finished(store, "db", RunStatus.APPLIED)

        light = ui_queries.stack_overview(store)
        full = store.stack_overview()
    finally:
        store.close()

    assert [state.name for state, _ in light] == [item.state.name for item in full] == ["app", "db", "idle"]
    app_state, app_run = light[0]
    assert app_state.drift is DriftState.DRIFTED and app_state.extra == {}
    assert app_run is not None and (app_run.id, app_run.status) == (newest, RunStatus.FAILED)
    assert light[2][1] is None


def test_a_stacks_runs_come_a_page_at_a_time_newest_first(store_url: str) -> None:
    store = a_store(store_url)
    try:
        ids = [finished(store, "app", RunStatus.APPLIED) for _ in range(5)]
        finished(store, "db", RunStatus.APPLIED)

        first = ui_queries.stack_runs(store, "app", page=1, per_page=2)
        last = ui_queries.stack_runs(store, "app", page=3, per_page=2)
        applied = ui_queries.applied_runs(store, "app", limit=3)
    finally:
        store.close()

    assert [run.id for run in first.runs] == ids[::-1][:2] and first.has_next
    assert [run.id for run in last.runs] == [ids[0]] and not last.has_next
    assert [run.id for run in applied] == ids[::-1][:3]


def test_trouble_by_day_counts_distinct_stacks_drifted_and_failed(store_url: str) -> None:
    store = a_store(store_url)
    now = datetime.now(UTC)
    try:
        finished(store, "app", RunStatus.FAILED)
        finished(store, "app", RunStatus.FAILED)
        finished(store, "db", RunStatus.FAILED)
        drift = finished(store, "idle", RunStatus.APPLIED)
        seen = DriftSeen(
            drift, now - timedelta(days=2), SHA, (DriftedResource("demo_object.a", ("content",)),)
        )
        store.track_drift("idle", seen)
        store.resolve_incident("idle", drift, now - timedelta(days=1), Resolution.CHANGED_BACK, SHA)
        mark = ui_queries.change_mark(store)
        finished(store, "db", RunStatus.APPLIED)

        days = ui_queries.trouble_by_day(store, days=4, now=now)
        incidents = ui_queries.stack_incidents(store, "idle")
        moved = ui_queries.change_mark(store)
    finally:
        store.close()

    assert [day.day for day in days] == [(now - timedelta(days=offset)).date() for offset in (3, 2, 1, 0)]
    assert [day.drifted for day in days] == [0, 1, 1, 0]
    assert [day.failed for day in days] == [0, 0, 0, 2]
    assert len(incidents) == 1 and incidents[0].resolution is Resolution.CHANGED_BACK
    assert moved != mark
