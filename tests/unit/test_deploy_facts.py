"""Store.deploy_facts: every stack's applied commit and newest deploy, read on from a snapshot."""

from __future__ import annotations

import pytest

from tfops.models import RunKind, RunStatus, Trigger, TriggerSource
from tfops.store import Store

POLL = Trigger(source=TriggerSource.POLL, actor="poll")
DRIFT = Trigger(source=TriggerSource.DRIFT_TIMER, actor="scheduler")
A, B, C = "a" * 40, "b" * 40, "c" * 40


@pytest.fixture
def store(tmp_path):
    store = Store(Store.sqlite_url(tmp_path / "t.db"))
    store.upgrade()
    store.sync_stacks([("app", "stacks/app"), ("db", "stacks/db"), ("new", "stacks/new")])
    yield store
    store.close()


def _facts(snapshot, name):
    facts = snapshot.get(name)
    return facts.applied_sha, facts.last_deploy_sha, facts.last_deploy_status


def test_the_newest_deploy_of_every_stack_is_read_past_any_number_of_drift_checks(store):
    store.create_run("app", RunKind.DEPLOY, POLL, A, status=RunStatus.APPLIED)
    store.mark_stack_applied("app", A)
    store.create_run("app", RunKind.DEPLOY, POLL, B, status=RunStatus.REJECTED)
    for _ in range(60):
        store.create_run("app", RunKind.DRIFT, DRIFT, A, status=RunStatus.NO_CHANGES)
    store.create_run("db", RunKind.DRIFT, DRIFT, A, status=RunStatus.NO_CHANGES)

    snapshot = store.deploy_facts()

    assert _facts(snapshot, "app") == (A, B, RunStatus.REJECTED)
    assert _facts(snapshot, "db") == (None, None, None)
    assert _facts(snapshot, "gone") == (None, None, None)
    assert set(snapshot.facts()) == {"app", "db", "new"}


def test_reading_on_from_a_snapshot_sees_new_deploys_status_changes_and_applied_commits(store):
    waiting = store.create_run("app", RunKind.DEPLOY, POLL, A, status=RunStatus.PLANNING)
    store.create_run("db", RunKind.DEPLOY, POLL, A, status=RunStatus.APPLIED)
    first = store.deploy_facts()
    assert _facts(first, "app") == (None, A, RunStatus.PLANNING)

    store.transition(waiting.id, RunStatus.FAILED)
    store.create_run("db", RunKind.DEPLOY, POLL, C)
    store.mark_stack_applied("new", B)
    store.create_run("new", RunKind.DRIFT, DRIFT, B, status=RunStatus.NO_CHANGES)
    later = store.deploy_facts(first)

    assert _facts(later, "app") == (None, A, RunStatus.FAILED)
    assert _facts(later, "db") == (None, C, RunStatus.QUEUED)
    assert _facts(later, "new") == (B, None, None)
    assert later.facts() == store.deploy_facts().facts(), "reading on must agree with a full read"
