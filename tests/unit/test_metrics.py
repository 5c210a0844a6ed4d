"""The daemon's Prometheus metrics, read back through prometheus-client's own text parser.

The route test serves the real app with uvicorn on a loopback port and scrapes it with httpx.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tfops.metrics import WEBHOOK_RESULTS, WEBHOOK_SOURCES, Metrics, Snapshot, metrics_router
from tfops.models import TERMINAL_STATUSES, DriftState, RunKind, RunStatus, StackState
from tfops.observe import snapshot_of
from tfops.web import webhooks
from tfops.web.app import create_app
from tfops.web.server import HttpOptions, WebServer

SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def scrape(metrics: Metrics) -> dict[SampleKey, float]:
    body, _ = metrics.render()
    return parse(body.decode())


def parse(text: str) -> dict[SampleKey, float]:
    """Every sample as {(name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[SampleKey, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples: dict[SampleKey, float]) -> set[str]:
    return {name for name, _ in samples}


@dataclass
class StateSource:
    """The daemon's state as the snapshot function reads it; `broken` makes it raise."""

    current: Snapshot
    broken: bool = False

    def __call__(self) -> Snapshot:
        if self.broken:
            raise RuntimeError("database is locked")
        return self.current


def a_snapshot(outbox_depth: int | None = 4) -> Snapshot:
    return Snapshot(
        stacks_by_drift={"in_sync": 3, "drifted": 1},
        queue_depth=2,
        running=1,
        awaiting_approval=5,
        outbox_depth=outbox_depth,
    )


# --------------------------------------------------------------------------- event series


def test_a_finished_run_is_counted_by_kind_and_status_with_its_three_durations() -> None:
    metrics = Metrics()

    metrics.run_finished("deploy", "applied", duration=12.5, terraform_seconds=11.0, tfops_seconds=1.5)
    metrics.run_finished("deploy", "applied", duration=40.0, terraform_seconds=38.0, tfops_seconds=2.0)
    metrics.run_finished("drift", "no_changes", duration=3.0, terraform_seconds=2.9, tfops_seconds=0.1)

    samples = scrape(metrics)
    assert value(samples, "tfops_runs_total", kind="deploy", status="applied") == 2
    assert value(samples, "tfops_runs_total", kind="drift", status="no_changes") == 1
    assert value(samples, "tfops_runs_total", kind="deploy", status="failed") == 0
    assert value(samples, "tfops_run_duration_seconds_count", kind="deploy") == 2
    assert value(samples, "tfops_run_duration_seconds_sum", kind="deploy") == 52.5
    assert value(samples, "tfops_run_duration_seconds_bucket", kind="deploy", le="10.0") == 0
    assert value(samples, "tfops_run_duration_seconds_bucket", kind="deploy", le="20.0") == 1
    assert value(samples, "tfops_run_duration_seconds_bucket", kind="deploy", le="+Inf") == 2
    assert value(samples, "tfops_run_terraform_seconds_sum", kind="deploy") == 49.0
    assert value(samples, "tfops_run_tfops_seconds_sum", kind="drift") == pytest.approx(0.1)
    assert value(samples, "tfops_run_tfops_seconds_bucket", kind="drift", le="0.1") == 1


def test_unknown_durations_count_the_run_but_observe_nothing() -> None:
    metrics = Metrics()

    metrics.run_finished("plan", "failed", duration=None, terraform_seconds=None, tfops_seconds=None)

    samples = scrape(metrics)
    assert value(samples, "tfops_runs_total", kind="plan", status="failed") == 1
    assert value(samples, "tfops_run_duration_seconds_count", kind="plan") == 0
    assert value(samples, "tfops_run_terraform_seconds_count", kind="plan") == 0


def test_negative_and_nan_durations_are_ignored_rather_than_corrupting_the_sum() -> None:
    metrics = Metrics()

    metrics.run_finished(
        "deploy", "applied", duration=-3.0, terraform_seconds=float("nan"), tfops_seconds=1.0
    )
    metrics.merge_applied(-1.0)

    samples = scrape(metrics)
    assert value(samples, "tfops_run_duration_seconds_count", kind="deploy") == 0
    assert value(samples, "tfops_run_terraform_seconds_count", kind="deploy") == 0
    assert value(samples, "tfops_run_tfops_seconds_count", kind="deploy") == 1
    assert value(samples, "tfops_merge_to_apply_seconds_count") == 0


def test_every_kind_and_final_status_is_exported_at_zero_before_any_run() -> None:
    samples = scrape(Metrics())

    for kind in RunKind:
        for status in TERMINAL_STATUSES:
            assert value(samples, "tfops_runs_total", kind=kind.value, status=status.value) == 0
        assert value(samples, "tfops_run_duration_seconds_count", kind=kind.value) == 0


def test_unknown_kinds_and_statuses_are_exported_as_other_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()

    with caplog.at_level(logging.WARNING, logger="tfops.metrics"):
        for _ in range(3):
            metrics.run_finished("yolo", "applied", duration=1.0, terraform_seconds=None, tfops_seconds=None)

    samples = scrape(metrics)
    assert value(samples, "tfops_runs_total", kind="other", status="applied") == 3
    assert not any(("kind", "yolo") in labels for _, labels in samples)
    assert len([r for r in caplog.records if "yolo" in r.getMessage()]) == 1


def test_merge_to_apply_latency_is_a_histogram_up_to_a_day() -> None:
    metrics = Metrics()

    metrics.merge_applied(42.0)
    metrics.merge_applied(50_000.0)

    samples = scrape(metrics)
    assert value(samples, "tfops_merge_to_apply_seconds_count") == 2
    assert value(samples, "tfops_merge_to_apply_seconds_bucket", le="1.0") == 0
    assert value(samples, "tfops_merge_to_apply_seconds_bucket", le="60.0") == 1
    assert value(samples, "tfops_merge_to_apply_seconds_bucket", le="86400.0") == 2


def test_git_fetches_are_timed_and_failures_counted() -> None:
    metrics = Metrics()

    metrics.fetch_done(0.2, ok=True)
    metrics.fetch_done(0.07, ok=True)
    metrics.fetch_done(120.0, ok=False)

    samples = scrape(metrics)
    assert value(samples, "tfops_git_fetch_duration_seconds_count") == 3
    assert value(samples, "tfops_git_fetch_duration_seconds_bucket", le="0.05") == 0
    assert value(samples, "tfops_git_fetch_duration_seconds_bucket", le="0.1") == 1
    assert value(samples, "tfops_git_fetch_duration_seconds_bucket", le="120.0") == 3
    assert value(samples, "tfops_git_fetch_failures_total") == 1


def test_webhook_deliveries_are_counted_by_source_and_result_with_unknown_values_capped() -> None:
    metrics = Metrics()

    metrics.webhook_delivery("github", "accepted")
    metrics.webhook_delivery("github", "accepted")
    metrics.webhook_delivery("gitlab", "unauthorized")
    metrics.webhook_delivery("evil-forge-" + "x" * 500, "accepted")
    metrics.webhook_delivery("gitea", "something new")

    samples = scrape(metrics)
    assert value(samples, "tfops_webhook_deliveries_total", source="github", result="accepted") == 2
    assert value(samples, "tfops_webhook_deliveries_total", source="gitlab", result="unauthorized") == 1
    assert value(samples, "tfops_webhook_deliveries_total", source="other", result="accepted") == 1
    assert value(samples, "tfops_webhook_deliveries_total", source="gitea", result="other") == 1
    webhook_series = [labels for name, labels in samples if name == "tfops_webhook_deliveries_total"]
    assert len(webhook_series) == 4


def test_enabled_webhook_sources_export_every_result_at_zero_before_any_delivery() -> None:
    metrics = Metrics()

    metrics.webhook_sources(["github", "generic"])
    metrics.webhook_delivery("github", "unauthorized")

    samples = scrape(metrics)
    webhook_series = {
        (dict(labels)["source"], dict(labels)["result"])
        for name, labels in samples
        if name == "tfops_webhook_deliveries_total"
    }
    assert webhook_series == {
        (source, result) for source in ("github", "generic") for result in WEBHOOK_RESULTS
    }
    assert value(samples, "tfops_webhook_deliveries_total", source="github", result="unauthorized") == 1
    assert value(samples, "tfops_webhook_deliveries_total", source="generic", result="unauthorized") == 0


def test_an_unknown_webhook_source_is_refused_when_enabling_sources() -> None:
    with pytest.raises(ValueError, match="unknown webhook sources"):
        Metrics().webhook_sources(["github", "bitbucket"])


def test_the_webhook_labels_are_exactly_what_the_webhook_routes_report() -> None:
    assert set(webhooks.SOURCES) == WEBHOOK_SOURCES
    assert set(webhooks.RESULTS) == WEBHOOK_RESULTS


def test_no_created_series_are_exported() -> None:
    metrics = Metrics(StateSource(a_snapshot()))
    metrics.run_finished("deploy", "applied", duration=1.0, terraform_seconds=1.0, tfops_seconds=0.1)
    metrics.fetch_done(1.0, ok=False)
    metrics.webhook_delivery("github", "accepted")

    body, _ = metrics.render()

    assert b"_created" not in body
    assert "tfops_runs_total" in names(parse(body.decode()))


# --------------------------------------------------------------------------- state gauges


def test_state_gauges_are_read_from_the_snapshot_at_each_scrape() -> None:
    source = StateSource(a_snapshot())
    metrics = Metrics(source)

    samples = scrape(metrics)
    assert value(samples, "tfops_stacks", drift="in_sync") == 3
    assert value(samples, "tfops_stacks", drift="drifted") == 1
    assert value(samples, "tfops_stacks", drift="unknown") == 0
    assert value(samples, "tfops_drifted_stacks") == 1
    assert value(samples, "tfops_queue_depth") == 2
    assert value(samples, "tfops_runs_running") == 1
    assert value(samples, "tfops_runs_awaiting_approval") == 5
    assert value(samples, "tfops_slack_outbox_depth") == 4

    source.current = Snapshot({"in_sync": 4}, queue_depth=0, running=0, awaiting_approval=0, outbox_depth=0)
    samples = scrape(metrics)
    assert value(samples, "tfops_stacks", drift="in_sync") == 4
    assert value(samples, "tfops_drifted_stacks") == 0
    assert value(samples, "tfops_queue_depth") == 0
    assert value(samples, "tfops_slack_outbox_depth") == 0


def test_stacks_are_counted_per_drift_state_whether_keyed_by_enum_or_text() -> None:
    snapshot = Snapshot(
        {DriftState.DRIFTED: 2, "in_sync": 1, "haunted": 7},
        queue_depth=0,
        running=0,
        awaiting_approval=0,
        outbox_depth=None,
    )

    samples = scrape(Metrics(StateSource(snapshot)))

    stacks = {dict(labels)["drift"]: v for (name, labels), v in samples.items() if name == "tfops_stacks"}
    assert stacks == {"in_sync": 1, "drifted": 2, "pending": 0, "unknown": 0, "other": 7}
    assert value(samples, "tfops_drifted_stacks") == 2


def test_the_outbox_gauge_is_absent_when_slack_is_off() -> None:
    samples = scrape(Metrics(StateSource(a_snapshot(outbox_depth=None))))

    assert "tfops_slack_outbox_depth" not in names(samples)
    assert value(samples, "tfops_queue_depth") == 2


def test_without_a_snapshot_function_only_event_series_are_exported() -> None:
    samples = scrape(Metrics())

    assert "tfops_runs_total" in names(samples)
    assert not names(samples) & {"tfops_stacks", "tfops_queue_depth", "tfops_drifted_stacks"}


def test_a_failing_snapshot_leaves_out_the_gauges_but_not_the_counters_and_logs_once_per_streak(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = StateSource(a_snapshot(), broken=True)
    metrics = Metrics(source)
    metrics.fetch_done(1.0, ok=False)

    with caplog.at_level(logging.DEBUG, logger="tfops.metrics"):
        first, second = scrape(metrics), scrape(metrics)
        source.broken = False
        recovered = scrape(metrics)

    for samples in (first, second):
        assert value(samples, "tfops_git_fetch_failures_total") == 1
        assert "tfops_queue_depth" not in names(samples)
        assert "tfops_stacks" not in names(samples)
    assert value(second, "tfops_metrics_snapshot_failures_total") == 2
    assert value(recovered, "tfops_queue_depth") == 2
    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].exc_info is not None


def test_a_snapshot_with_a_bad_value_is_a_failed_snapshot_not_a_failed_scrape() -> None:
    bad = Snapshot({"in_sync": 1}, queue_depth=None, running=0, awaiting_approval=0, outbox_depth=None)  # type: ignore[arg-type]
    metrics = Metrics(StateSource(bad))

    samples = scrape(metrics)

    assert value(samples, "tfops_metrics_snapshot_failures_total") == 1
    assert "tfops_stacks" not in names(samples)
    assert "tfops_runs_total" in names(samples)


def test_two_instances_share_no_state() -> None:
    first = Metrics(StateSource(a_snapshot()))
    second = Metrics(StateSource(a_snapshot(outbox_depth=None)))

    first.run_finished("deploy", "applied", duration=1.0, terraform_seconds=1.0, tfops_seconds=0.1)
    first.fetch_done(1.0, ok=False)
    first.webhook_delivery("github", "accepted")

    other = scrape(second)
    assert value(other, "tfops_runs_total", kind="deploy", status="applied") == 0
    assert value(other, "tfops_git_fetch_failures_total") == 0
    assert "tfops_webhook_deliveries_total" not in names(other)
    assert "tfops_slack_outbox_depth" not in names(other)
    assert value(scrape(first), "tfops_runs_total", kind="deploy", status="applied") == 1


# --------------------------------------------------------------------------- the snapshot cache


@dataclass
class CountingState:
    """A store and a queue in one, counting every query; `hold` blocks the first query of a snapshot."""

    queries: int = 0
    hold: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    broken: bool = False
    drifted: int = 1

    def list_stacks(self) -> list[StackState]:
        self.queries += 1
        self.entered.set()
        if self.hold is not None:
            self.hold.wait(5)
        if self.broken:
            raise RuntimeError("database is locked")
        return [StackState(f"s{n}", f"stacks/s{n}", drift=DriftState.DRIFTED) for n in range(self.drifted)]

    def runs_with_status(self, statuses: set[RunStatus]) -> list[object]:
        self.queries += 1
        return []

    def outbox_depth(self) -> int:
        self.queries += 1
        return 0

    @property
    def depth(self) -> int:
        self.queries += 1
        return 0

    def running(self) -> list[object]:
        self.queries += 1
        return []

    def open_incidents(self) -> list[object]:
        self.queries += 1
        return []


QUERIES_PER_SNAPSHOT = 6


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_scrapes_within_a_second_share_one_snapshot_and_its_store_queries() -> None:
    state, clock = CountingState(), FakeClock()
    metrics = Metrics(snapshot_of(state, state, slack_on=True, clock=clock))

    for _ in range(10):
        scrape(metrics)
        clock.now += 0.05

    assert state.queries == QUERIES_PER_SNAPSHOT


def test_a_snapshot_older_than_a_second_is_taken_again() -> None:
    state, clock = CountingState(), FakeClock()
    snapshot = snapshot_of(state, state, slack_on=True, clock=clock)
    assert snapshot().stacks_by_drift == {"drifted": 1}

    state.drifted = 3
    clock.now += 0.99
    assert snapshot().stacks_by_drift == {"drifted": 1}
    clock.now += 0.02

    assert snapshot().stacks_by_drift == {"drifted": 3}
    assert state.queries == 2 * QUERIES_PER_SNAPSHOT


def test_concurrent_first_scrapes_wait_for_one_snapshot_instead_of_each_querying() -> None:
    release = threading.Event()
    state = CountingState(hold=release)
    snapshot = snapshot_of(state, state, slack_on=True)
    results: list[Snapshot] = []
    threads = [threading.Thread(target=lambda: results.append(snapshot())) for _ in range(8)]
    for thread in threads:
        thread.start()
    assert state.entered.wait(5)
    time.sleep(0.05)  # the other seven are at the lock by now

    release.set()
    for thread in threads:
        thread.join(5)

    assert len(results) == 8 and all(result is results[0] for result in results)
    assert state.queries == QUERIES_PER_SNAPSHOT


def test_while_a_new_snapshot_is_taken_other_scrapes_get_the_previous_one_at_once() -> None:
    state, clock = CountingState(), FakeClock()
    snapshot = snapshot_of(state, state, slack_on=True, clock=clock)
    previous = snapshot()
    state.hold, state.entered = threading.Event(), threading.Event()
    clock.now += 5
    slow = threading.Thread(target=snapshot)
    slow.start()
    assert state.entered.wait(5)

    started = time.monotonic()
    meanwhile = snapshot()
    took = time.monotonic() - started
    state.hold.set()
    slow.join(5)

    assert meanwhile is previous
    assert took < 0.5
    assert state.queries == 2 * QUERIES_PER_SNAPSHOT


def test_a_failed_snapshot_is_not_cached() -> None:
    state, clock = CountingState(broken=True), FakeClock()
    metrics = Metrics(snapshot_of(state, state, slack_on=False, clock=clock))

    failed = scrape(metrics)
    state.broken = False
    recovered = scrape(metrics)

    assert "tfops_stacks" not in names(failed)
    assert value(recovered, "tfops_drifted_stacks") == 1


# --------------------------------------------------------------------------- the route


@pytest.fixture(scope="module")
def scraped() -> Iterator[tuple[Metrics, httpx.Client]]:
    metrics = Metrics(StateSource(a_snapshot()))
    server = WebServer(create_app([metrics_router(metrics)]), HttpOptions(host="127.0.0.1", port=0))
    server.start()
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield metrics, client
    assert server.stop(timeout=5.0)


def test_metrics_are_served_over_http_in_the_prometheus_text_format(
    scraped: tuple[Metrics, httpx.Client],
) -> None:
    metrics, client = scraped
    metrics.run_finished("drift", "applied", duration=90.0, terraform_seconds=85.0, tfops_seconds=5.0)

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(response.text)
    assert value(samples, "tfops_runs_total", kind="drift", status="applied") == 1
    assert value(samples, "tfops_run_terraform_seconds_sum", kind="drift") == 85.0
    assert value(samples, "tfops_drifted_stacks") == 1
    assert value(samples, "tfops_slack_outbox_depth") == 4


def test_finished_runs_are_also_counted_by_why_they_ended() -> None:
    metrics = Metrics()

    metrics.run_finished(
        "deploy", "failed", duration=1.0, terraform_seconds=1.0, tfops_seconds=0.0, reason="terraform_failed"
    )
    metrics.run_finished(
        "deploy", "failed", duration=1.0, terraform_seconds=1.0, tfops_seconds=0.0, reason="timeout"
    )
    metrics.run_finished("drift", "applied", duration=1.0, terraform_seconds=1.0, tfops_seconds=0.0)

    samples = scrape(metrics)
    assert value(samples, "tfops_run_reasons_total", status="failed", reason="terraform_failed") == 1
    assert value(samples, "tfops_run_reasons_total", status="failed", reason="timeout") == 1
    assert (
        value(samples, "tfops_run_reasons_total", status="applied", reason="none") == 1
    )  # no reason recorded
