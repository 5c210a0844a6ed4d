"""Prometheus metrics of the daemon: counters and histograms fed by events, gauges read at scrape time.

Each `Metrics` owns its own `CollectorRegistry`, never prometheus-client's global one: the daemon
builds one, tests build many, and two instances must never share a sample.

Two kinds of series:

- Event series (runs, fetches, webhook deliveries) are updated by the code that sees the event,
  from any thread (prometheus-client's metrics are thread-safe).
- State series (stacks by drift state, queue depth, ...) are read when Prometheus scrapes, from a
  `Snapshot` function, so they can never drift from the store. A snapshot that raises costs those
  gauges for that one scrape, never the scrape: the event series are still exported, the failure
  is counted in `tfops_metrics_snapshot_failures_total` and logged once per streak of failures.

Label values are bounded: `kind` and `status` must be `RunKind`/`RunStatus` values, `source` and
`result` one of `WEBHOOK_SOURCES`/`WEBHOOK_RESULTS`; anything else is exported as "other" (and
logged once), so a bug can never explode the number of series.

The `_created` series that prometheus-client adds to every counter and histogram (one extra gauge
per label set, holding a start timestamp Prometheus ignores in the text format) are left out of
the exposition, per instance and without touching the library's process-wide switch.

`GET /metrics` has no authentication, like most Prometheus exporters. It shows counts and
durations only (no stack names, no commits), but it still tells an outsider how busy and how healthy
the daemon is: keep the HTTP listener on loopback, or behind a reverse proxy that restricts the path.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from fastapi import APIRouter, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from tfops.incidents import IncidentChange, Step
from tfops.models import TERMINAL_STATUSES, DriftState, RunKind, RunReason, RunStatus

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# The classic text format, what prometheus-client's own exporter sends to a scraper that asks for
# nothing else; every Prometheus version and most other scrapers read it.
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
OTHER = "other"

# The vocabulary of tfops.web.webhooks, its SOURCES and RESULTS (a test keeps them equal).
WEBHOOK_SOURCES = frozenset({"github", "gitlab", "gitea", "generic"})
WEBHOOK_RESULTS = frozenset(
    {
        "accepted",  # verified, for our repo and branch: a fetch was asked for
        "duplicate",  # a delivery id or idempotency key already seen
        "ignored",  # verified, but another repo, branch or event
        "ping",  # the forge checking the hook
        "unauthorized",  # bad or missing signature or token
        "bad_request",  # malformed body, wrong content type, missing headers, bad delivery id
        "unavailable",  # verified, but the fetch could not be asked for (the host may retry)
    }
)

# Why a Slack notification was given up (tfops.notify.slack_policy.FAILURE_REASONS; a test keeps
# them equal).
SLACK_FAILURE_REASONS = frozenset({"refused", "unbuildable", "gave_up"})

# Bucket edges in seconds, chosen for what each series measures.
RUN_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)  # 1 s .. 2 h
TFOPS_OVERHEAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)  # 10 ms .. 60 s
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)  # 50 ms .. 2 min
INCIDENT_BUCKETS = (
    60,
    300,
    900,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    86400,
    3 * 86400,
    7 * 86400,
)  # 1m..7d
MERGE_TO_APPLY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)  # 1 s..1 d


@dataclass(frozen=True)
class Snapshot:
    """The daemon's state at scrape time."""

    stacks_by_drift: Mapping[str, int]  # DriftState value → number of stacks
    queue_depth: int
    running: int
    awaiting_approval: int
    outbox_depth: int | None  # None: Slack is off, and the series is not exported
    open_incidents: int | None = None  # drift incidents not resolved; None: not known, not exported


class Metrics:
    """The daemon's metrics in a registry of their own; `render()` gives what `GET /metrics` serves."""

    def __init__(
        self, snapshot: Callable[[], Snapshot] | None = None, *, instance: str | None = None
    ) -> None:
        """`instance`: this daemon's id among those sharing the store (tfops.ha), exported as
        `tfops_instance_info{instance=...} 1` so that dashboards can join on it."""
        self.registry = CollectorRegistry(auto_describe=True)
        if instance is not None:
            info = Gauge(
                "tfops_instance_info",
                "This tfops daemon's instance id.",
                ["instance"],
                registry=self.registry,
            )
            info.labels(instance=instance).set(1)
        self._labels = _LabelGuard()
        self._add_run_series()
        self._add_fetch_and_delivery_series()
        self._initialise_run_series()
        if snapshot is not None:
            self.registry.register(SnapshotCollector(snapshot))

    def _add_run_series(self) -> None:
        """Runs: how many ended in which status, and where their time went."""
        reg = self.registry
        self._runs = Counter(
            "tfops_runs", "Runs finished, by kind and final status.", ["kind", "status"], registry=reg
        )
        self._run_reasons = Counter(
            "tfops_run_reasons",
            "Runs finished, by final status and why (tfops.models.RunReason).",
            ["status", "reason"],
            registry=reg,
        )
        self._run_duration = Histogram(
            "tfops_run_duration_seconds",
            "Wall-clock time of a run, from start to its final status, by kind.",
            ["kind"],
            buckets=RUN_BUCKETS,
            registry=reg,
        )
        self._terraform_time = Histogram(
            "tfops_run_terraform_seconds",
            "Time a run spent in Terraform processes, by kind.",
            ["kind"],
            buckets=RUN_BUCKETS,
            registry=reg,
        )
        self._tfops_time = Histogram(
            "tfops_run_tfops_seconds",
            "Time a run spent in tfops itself (run time minus Terraform time), by kind.",
            ["kind"],
            buckets=TFOPS_OVERHEAD_BUCKETS,
            registry=reg,
        )
        self._merge_to_apply = Histogram(
            "tfops_merge_to_apply_seconds",
            "Time from tfops first seeing a commit to that commit being applied.",
            buckets=MERGE_TO_APPLY_BUCKETS,
            registry=reg,
        )

    def _add_fetch_and_delivery_series(self) -> None:
        """Git fetches, webhook deliveries and Slack notifications given up."""
        reg = self.registry
        self._fetch_duration = Histogram(
            "tfops_git_fetch_duration_seconds",
            "Time a git fetch of the repository took, successful or not.",
            buckets=FETCH_BUCKETS,
            registry=reg,
        )
        self._fetch_failures = Counter(
            "tfops_git_fetch_failures", "Git fetches of the repository that failed.", registry=reg
        )
        self._webhooks = Counter(
            "tfops_webhook_deliveries",
            "Webhook deliveries received, by source and result.",
            ["source", "result"],
            registry=reg,
        )
        self._slack_failed = Counter(
            "tfops_slack_deliveries_failed",
            "Slack notifications given up, by reason: refused by Slack, unbuildable by tfops, or "
            "gave_up after retryable failures for too long.",
            ["reason"],
            registry=reg,
        )
        for reason in sorted(SLACK_FAILURE_REASONS):
            self._slack_failed.labels(reason=reason)  # exported at 0, so the first failure alerts
        self._leader_changes = Counter(
            "tfops_leader_changes",
            "Times this daemon started (to=leader) or stopped (to=follower) leading (tfops.ha).",
            ["to"],
            registry=reg,
        )
        for to in ("leader", "follower"):
            self._leader_changes.labels(to=to)
        self._leading = Gauge("tfops_leader", "1 while this daemon is the leader, else 0.", registry=reg)
        self._incident_duration = Histogram(
            "tfops_drift_incident_duration_seconds",
            "How long drift incidents lasted, from the drift run that opened one to the stack back in sync.",
            buckets=INCIDENT_BUCKETS,
            registry=reg,
        )

    def incident_changed(self, change: IncidentChange) -> None:
        """A resolved drift incident counts its duration (the open ones are a gauge of the snapshot)."""
        incident = change.incident
        if change.step is Step.RESOLVE and incident.resolved_at is not None:
            self._incident_duration.observe(incident.lasted(incident.resolved_at))

    def run_finished(
        self,
        kind: str,
        status: str,
        *,
        duration: float | None,
        terraform_seconds: float | None,
        tfops_seconds: float | None,
        reason: str | None = None,
    ) -> None:
        """A run reached `status`; the durations that are known are observed, None ones skipped."""
        kind_label = self._labels.pick("kind", kind, _RUN_KINDS)
        status_label = self._labels.pick("status", status, _RUN_STATUSES)
        self._runs.labels(kind=kind_label, status=status_label).inc()
        reason_label = self._labels.pick("reason", reason or NO_REASON, _RUN_REASONS)
        self._run_reasons.labels(status=status_label, reason=reason_label).inc()
        _observe(self._run_duration.labels(kind=kind_label), duration)
        _observe(self._terraform_time.labels(kind=kind_label), terraform_seconds)
        _observe(self._tfops_time.labels(kind=kind_label), tfops_seconds)

    def leader_changed(self, leading: bool) -> None:
        """This daemon started or stopped leading."""
        self._leader_changes.labels(to="leader" if leading else "follower").inc()
        self._leading.set(1 if leading else 0)

    def merge_applied(self, seconds: float) -> None:
        """A commit was applied `seconds` after tfops first saw it."""
        _observe(self._merge_to_apply, seconds)

    def fetch_done(self, seconds: float, *, ok: bool) -> None:
        """A git fetch ended after `seconds`; failures are also counted."""
        _observe(self._fetch_duration, seconds)
        if not ok:
            self._fetch_failures.inc()

    def webhook_delivery(self, source: str, result: str) -> None:
        """A webhook delivery from `source` (github, gitlab, ...) ended with `result` (accepted, ...)."""
        self._webhooks.labels(
            source=self._labels.pick("source", source, WEBHOOK_SOURCES),
            result=self._labels.pick("result", result, WEBHOOK_RESULTS),
        ).inc()

    def slack_delivery_failed(self, reason: str) -> None:
        """A Slack notification was given up for `reason` (one of tfops.notify.slack_policy's)."""
        self._slack_failed.labels(reason=self._labels.pick("reason", reason, SLACK_FAILURE_REASONS)).inc()

    def webhook_sources(self, sources: Iterable[str]) -> None:
        """Export every result of these webhook sources (the enabled routes) at 0 from now on.

        Otherwise a source's first unauthorized delivery moves its series from absent to 1, which
        `increase()` does not count, and an alert on forged deliveries never fires.
        """
        chosen = set(sources)
        if unknown := chosen - WEBHOOK_SOURCES:
            raise ValueError(f"unknown webhook sources {sorted(unknown)}; known: {sorted(WEBHOOK_SOURCES)}")
        for source in sorted(chosen):
            for result in sorted(WEBHOOK_RESULTS):
                self._webhooks.labels(source=source, result=result)

    def render(self) -> tuple[bytes, str]:
        """The text exposition of every series, and its content type."""
        return generate_latest(_WithoutCreated(self.registry)), CONTENT_TYPE

    def _initialise_run_series(self) -> None:
        # Series that exist at 0 from the start: otherwise a run's first failure moves a series from
        # absent to 1, which rate() and increase() do not count, and alerts on it never fire.
        for kind in RunKind:
            for status in sorted(TERMINAL_STATUSES):
                self._runs.labels(kind=kind.value, status=status.value)
            for histogram in (self._run_duration, self._terraform_time, self._tfops_time):
                histogram.labels(kind=kind.value)


def metrics_router(metrics: Metrics) -> APIRouter:
    """`GET /metrics`, without authentication: serve it on loopback or behind the proxy only."""
    router = APIRouter(tags=["observability"])

    # A plain `def`: the snapshot may query the store, so it runs on the thread pool, not the loop.
    @router.get(
        METRICS_PATH,
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "the metrics"}},
    )
    def prometheus_metrics() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type, headers={"Cache-Control": "no-store"})

    return router


class SnapshotCollector:
    """The state gauges, read from `snapshot()` at each scrape; a failing snapshot exports none of them."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot
        self._lock = threading.Lock()
        self._failing = False
        self._failures = 0

    def describe(self) -> Iterable[Metric]:
        # Names only, so the registry can refuse a clash at registration without reading the state.
        return [_failures_family(0), *_state_families(None)]

    def collect(self) -> Iterable[Metric]:
        # The failure count goes out in the same scrape as the failure it counts.
        try:
            # Built here, not lazily: a snapshot holding a bad value fails now, inside the guard.
            gauges = list(_state_families(self._snapshot()))
        except Exception:  # noqa: BLE001 - whatever broke, the rest of the scrape must still be served
            return [_failures_family(self._failed())]
        return [_failures_family(self._recovered()), *gauges]

    def _failed(self) -> int:
        with self._lock:
            first, self._failing = not self._failing, True
            self._failures += 1
            count = self._failures
        # Prometheus scrapes every few seconds: one traceback per streak, not one per scrape.
        if first:
            log.warning("metrics: cannot read the daemon's state; state gauges left out", exc_info=True)
        else:
            log.debug("metrics: the daemon's state is still unreadable", exc_info=True)
        return count

    def _recovered(self) -> int:
        with self._lock:
            was_failing, self._failing = self._failing, False
            count = self._failures
        if was_failing:
            log.info("metrics: the daemon's state is readable again")
        return count


def _failures_family(count: int) -> Metric:
    return CounterMetricFamily(
        "tfops_metrics_snapshot_failures",
        "Scrapes in which the daemon's state could not be read (the state gauges were left out).",
        value=count,
    )


def _state_families(snapshot: Snapshot | None) -> Iterator[Metric]:
    """The state gauges; with `snapshot` None, empty families (for `describe`)."""
    stacks = GaugeMetricFamily("tfops_stacks", "Stacks by drift state.", labels=["drift"])
    drifted = GaugeMetricFamily("tfops_drifted_stacks", "Stacks whose last drift check found drift.")
    queue = GaugeMetricFamily("tfops_queue_depth", "Runs queued and not started.")
    running = GaugeMetricFamily("tfops_runs_running", "Runs in progress (planning or applying).")
    awaiting = GaugeMetricFamily("tfops_runs_awaiting_approval", "Runs waiting for an approval.")
    outbox = GaugeMetricFamily("tfops_slack_outbox_depth", "Slack messages waiting in the outbox.")
    incidents = GaugeMetricFamily(
        "tfops_drift_incidents_open", "Drift incidents open (stacks drifted since)."
    )
    if snapshot is None:
        yield from (stacks, drifted, queue, running, awaiting, outbox, incidents)
        return
    by_state = stacks_by_drift_state(snapshot.stacks_by_drift)
    # float() here so that a bad value raises while the collector can still catch it, not while
    # the exposition is written.
    for state, count in by_state.items():
        stacks.add_metric([state], float(count))
    drifted.add_metric([], float(by_state[DriftState.DRIFTED.value]))
    queue.add_metric([], float(snapshot.queue_depth))
    running.add_metric([], float(snapshot.running))
    awaiting.add_metric([], float(snapshot.awaiting_approval))
    yield from (stacks, drifted, queue, running, awaiting)
    if snapshot.outbox_depth is not None:
        outbox.add_metric([], float(snapshot.outbox_depth))
        yield outbox
    if snapshot.open_incidents is not None:
        incidents.add_metric([], float(snapshot.open_incidents))
        yield incidents


def stacks_by_drift_state(counts: Mapping[str, int]) -> dict[str, int]:
    """One count per drift state (0 when missing); counts under unknown keys summed under "other"."""
    known = {state.value: 0 for state in DriftState}
    other = 0
    for key, count in counts.items():
        if key in known:
            known[key] += count
        else:
            other += count
    return known | {OTHER: other} if other else known


class _WithoutCreated:
    """A view of a registry without the `<name>_created` samples of counters and histograms."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        for family in self._registry.collect():
            created = family.name + "_created"
            if not any(sample.name == created for sample in family.samples):
                yield family
                continue
            trimmed = Metric(family.name, family.documentation, family.type, family.unit)
            trimmed.samples = [sample for sample in family.samples if sample.name != created]
            yield trimmed


class _LabelGuard:
    """Keeps label values in their known sets; an unknown value becomes "other", logged once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reported: set[tuple[str, str]] = set()

    def pick(self, label: str, value: str, allowed: frozenset[str]) -> str:
        text = str(value)
        if text in allowed:
            return text
        with self._lock:
            first = (label, text) not in self._reported and len(self._reported) < 100
            if first:
                self._reported.add((label, text))
        if first:
            log.warning("metrics: unknown %s %r exported as %r", label, text[:80], OTHER)
        return OTHER


_RUN_KINDS = frozenset(kind.value for kind in RunKind)
_RUN_STATUSES = frozenset(status.value for status in RunStatus)
NO_REASON = "none"  # a run moved by a version that recorded no reason
_RUN_REASONS = frozenset({NO_REASON, *(reason.value for reason in RunReason)})


def _observe(target: Histogram, seconds: float | None) -> None:
    # A negative or NaN duration is a clock or caller bug; it would corrupt the histogram's sum.
    if seconds is None:
        return
    if not math.isfinite(seconds) or seconds < 0:
        log.debug("metrics: ignored a duration of %r seconds", seconds)
        return
    target.observe(seconds)
