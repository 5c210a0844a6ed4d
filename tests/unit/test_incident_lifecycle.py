"""Drift incidents: the pure lifecycle, its table on SQLite and PostgreSQL, its Slack line, its metrics."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from test_metrics import a_snapshot, scrape, value

from tfops.incident_tracker import IncidentTracker
from tfops.incidents import (
    DriftedResource,
    DriftSeen,
    Incident,
    IncidentChange,
    Resolution,
    Step,
    after_drift_check,
    drifted_set,
    fingerprint,
    format_duration,
    resolution_after_success,
)
from tfops.metrics import Metrics
from tfops.models import AttributeChange, PlanSummary, ResourceChange, RunKind, Trigger, TriggerSource
from tfops.notify.blocks import RunMessage
from tfops.notify.incident_render import incident_line, mention_text, with_incident
from tfops.store import Store

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SHA_A, SHA_B = "a" * 40, "b" * 40
WEB = DriftedResource("demo_object.web", ("content",))
DB = DriftedResource("demo_object.db", ("content", "tags.env"))
POLL = Trigger(source=TriggerSource.DRIFT_TIMER, actor="timer")


def seen(run_id: int, *resources: DriftedResource, minutes: int = 0, sha: str = SHA_A) -> DriftSeen:
    return DriftSeen(run_id, T0 + timedelta(minutes=minutes), sha, resources)


def an_incident(*resources: DriftedResource) -> Incident:
    return Incident(
        id=1, stack="app", opened_at=T0, opened_run_id=1, last_seen_at=T0, last_run_id=1, seen_count=1,
        fingerprint=fingerprint(resources), resources=resources, commit_sha=SHA_A, mentioned_run_id=1,
    )  # fmt: skip


# --------------------------------------------------------------------------- the pure lifecycle


def test_the_first_drift_opens_an_incident_and_the_same_set_only_updates_it():
    assert after_drift_check(None, seen(1, WEB)) is Step.OPEN
    assert after_drift_check(an_incident(WEB), seen(2, WEB)) is Step.UPDATE


def test_a_new_resource_or_a_new_attribute_is_a_changed_set_that_mentions_again():
    assert after_drift_check(an_incident(WEB), seen(2, WEB, DB)) is Step.REMENTION
    more_of_web = DriftedResource("demo_object.web", ("content", "tags.owner"))
    assert after_drift_check(an_incident(WEB), seen(2, more_of_web)) is Step.REMENTION


def test_no_drift_resolves_an_open_incident_and_is_nothing_without_one():
    assert after_drift_check(an_incident(WEB), seen(2)) is Step.RESOLVE
    assert after_drift_check(None, seen(2)) is Step.NONE


def test_the_drifted_set_is_the_reports_addresses_with_their_attribute_paths_in_order():
    report = PlanSummary(
        terraform_version="1.9.0",
        format_version="1.2",
        drift=(
            ResourceChange(
                "demo_object.web", "demo_object", "update", (AttributeChange("content", "a", "b"),)
            ),
            ResourceChange(
                "demo_object.db",
                "demo_object",
                "update",
                (AttributeChange("tags.env", 1, 2), AttributeChange("content", 1, 2)),
            ),
        ),
    )
    assert drifted_set(report) == (DB, WEB)
    assert fingerprint(drifted_set(report)) == fingerprint((DB, WEB)) != fingerprint((WEB,))


@pytest.mark.parametrize(
    ("kind", "applied", "sha", "how"),
    [
        (RunKind.DRIFT, True, SHA_A, Resolution.REMEDIATED),
        (RunKind.DEPLOY, True, SHA_A, Resolution.REMEDIATED),
        (RunKind.DEPLOY, False, SHA_B, Resolution.FIXED_BY_COMMIT),
        (RunKind.DEPLOY, True, SHA_B, Resolution.FIXED_BY_COMMIT),
        (RunKind.DEPLOY, False, SHA_A, Resolution.CHANGED_BACK),
    ],
)
def test_how_a_successful_run_ended_the_incident(kind, applied, sha, how):
    assert resolution_after_success(an_incident(WEB), kind=kind, applied=applied, commit_sha=sha) is how


def test_durations_read_in_two_units_at_most():
    assert [format_duration(s) for s in (0, 45, 725, 12000, 2 * 86400 + 4 * 3600 + 59)] == [
        "0s", "45s", "12m 5s", "3h 20m", "2d 4h",
    ]  # fmt: skip


# --------------------------------------------------------------------------- the table


@pytest.fixture
def store(store_url: str):
    store = Store(store_url)
    store.upgrade()
    store.sync_stacks([("app", "stacks/app"), ("db", "stacks/db")])
    yield store
    store.close()


def drift_run(store: Store) -> int:
    return store.create_run("app", RunKind.DRIFT, POLL, SHA_A).id


def test_an_incident_is_opened_seen_again_changed_and_resolved_in_its_row(store):
    first, second, third, fixing = (drift_run(store) for _ in range(4))
    opened = store.track_drift("app", seen(first, WEB))
    assert opened.step is Step.OPEN and store.open_incident("app") == opened.incident

    again = store.track_drift("app", seen(second, WEB, minutes=10)).incident
    assert (again.id, again.seen_count, again.last_run_id, again.mentioned_run_id) == (
        opened.incident.id,
        2,
        second,
        first,
    )
    assert again.last_seen_at == T0 + timedelta(minutes=10) and again.opened_at == T0

    changed = store.track_drift("app", seen(third, WEB, DB, minutes=20))
    assert changed.step is Step.REMENTION
    assert changed.incident.resources == (WEB, DB) and changed.incident.mentioned_run_id == third
    assert store.incident_of_run("app", third) == changed.incident

    resolved = store.resolve_incident(
        "app", fixing, T0 + timedelta(hours=2), Resolution.FIXED_BY_COMMIT, SHA_B
    )
    incident = resolved.incident
    assert not incident.is_open and store.open_incident("app") is None and store.open_incidents() == []
    assert incident.how() == f"fixed by commit {SHA_B[:10]} (run #{fixing})"
    assert incident.lasted(T0 + timedelta(days=9)) == 2 * 3600


def test_each_stack_has_its_own_incident_and_a_new_one_opens_after_resolution(store):
    first = drift_run(store)
    store.track_drift("app", seen(first, WEB))
    other = store.create_run("db", RunKind.DRIFT, POLL, SHA_A).id
    store.track_drift("db", seen(other, DB))
    assert [incident.stack for incident in store.open_incidents()] == ["app", "db"]

    back = drift_run(store)
    assert store.track_drift("app", seen(back)).step is Step.RESOLVE
    assert store.get_incident(store.incident_of_run("app", back).id).resolution is Resolution.CHANGED_BACK
    assert store.track_drift("app", seen(drift_run(store))) is None, "in sync and nothing open: no step"
    reopened = store.track_drift("app", seen(drift_run(store), WEB)).incident
    assert reopened.id != store.incident_of_run("app", first).id and reopened.seen_count == 1


def test_the_tracker_tells_its_listeners_and_a_failing_listener_costs_nothing(store):
    heard: list[IncidentChange] = []

    def broken(change: IncidentChange) -> None:
        raise RuntimeError("listener down")

    tracker = IncidentTracker(store, [broken, heard.append], clock=lambda: T0)
    run = store.get_run(drift_run(store))
    drift = ResourceChange("demo_object.web", "demo_object", "update", (AttributeChange("content", 1, 2),))
    tracker.drift_checked(run, PlanSummary("1.9.0", "1.2", drift=(drift,)))
    tracker.back_in_sync(replace(run, kind=RunKind.DEPLOY, commit_sha=SHA_B), applied=True)
    assert [change.step for change in heard] == [Step.OPEN, Step.RESOLVE]
    assert heard[-1].incident.resolution is Resolution.FIXED_BY_COMMIT


# --------------------------------------------------------------------------- Slack and metrics


def test_the_message_line_says_since_when_and_how_often_then_how_and_how_long():
    incident = replace(an_incident(WEB), seen_count=3, last_run_id=7, last_seen_at=T0 + timedelta(minutes=30))
    line = incident_line(incident, T0 + timedelta(minutes=45))
    assert (
        "open since 2026-11-28 09:00:00 UTC (45m 0s)" in line and "seen 3 times" in line and "run #7" in line
    )
    done = replace(
        incident, resolved_at=T0 + timedelta(hours=3), resolved_run_id=9, resolution=Resolution.REMEDIATED
    )
    assert "resolved: remediated by run #9, after 3h 0m" in incident_line(done, T0 + timedelta(days=5))


def test_the_line_goes_under_the_header_and_the_mention_lists_the_new_set():
    message = RunMessage(
        text="app drift", blocks=[{"type": "header"}, {"type": "context"}, {"type": "section"}]
    )
    shown = with_incident(message, an_incident(WEB), T0)
    assert [block["type"] for block in shown.blocks] == ["header", "context", "context", "section"]
    assert "Drift incident open" in shown.text
    paged = with_incident(message, an_incident(WEB), T0, paged="<!subteam^S0ONCALL>")
    assert paged.text.startswith("<!subteam^S0ONCALL> app drift")
    assert paged.blocks[2]["elements"][0]["text"].startswith("<!subteam^S0ONCALL> :rotating_light:")
    text = mention_text(replace(an_incident(WEB, DB), mentioned_run_id=4), "S0ONCALL")
    assert (
        text.startswith("<!subteam^S0ONCALL>")
        and "run #4" in text
        and "demo_object.db (content, tags.env)" in text
    )


def test_open_incidents_are_a_gauge_and_resolved_ones_a_duration_histogram():
    metrics = Metrics(snapshot=lambda: replace(a_snapshot(), open_incidents=2))
    resolved = replace(
        an_incident(WEB), resolved_at=T0 + timedelta(minutes=10), resolution=Resolution.CHANGED_BACK
    )
    metrics.incident_changed(IncidentChange(Step.UPDATE, an_incident(WEB)))
    metrics.incident_changed(IncidentChange(Step.RESOLVE, resolved))
    samples = scrape(metrics)
    assert value(samples, "tfops_drift_incidents_open") == 2
    assert value(samples, "tfops_drift_incident_duration_seconds_count") == 1
    assert value(samples, "tfops_drift_incident_duration_seconds_sum") == 600
