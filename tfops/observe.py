"""What the daemon tells its operators: metrics fed from runs and fetches, state read at scrape
time, and the facts behind /readyz. Built by the App; nothing here changes a run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from tfops.metrics import Metrics, Snapshot
from tfops.models import Instance, Run, RunKind, RunStatus
from tfops.notify import RunNotice
from tfops.reconcile import RunTiming
from tfops.store import Store
from tfops.web.health import ReadinessFacts


class RunMetrics:
    """Counts every run once, when it ends.

    Runs that a worker of this process executes are reported by the reconciler with their
    timing (`run_finished`); runs that end elsewhere (superseded while queued, rejected, expired,
    interrupted at start-up) are reported by the notifier, without durations.
    """

    def __init__(self, metrics: Metrics, store: Store, is_executing: Callable[[int], bool]) -> None:
        self.metrics = metrics
        self.store = store
        self.is_executing = is_executing

    def run_changed(self, notice: RunNotice) -> None:
        run = notice.run
        if run.status.is_terminal and not self.is_executing(run.id):
            self.metrics.run_finished(
                run.kind.value, run.status.value, duration=None, terraform_seconds=None, tfops_seconds=None
            )

    def run_finished(self, run: Run, timing: RunTiming) -> None:
        self.metrics.run_finished(
            run.kind.value,
            run.status.value,
            duration=timing.wall,
            terraform_seconds=timing.terraform,
            tfops_seconds=timing.tfops,
            reason=run.reason.value if run.reason is not None else None,
        )
        if run.kind is RunKind.DEPLOY and run.status is RunStatus.APPLIED and run.finished_at:
            first_seen = self._first_seen(run)
            if first_seen is not None:
                self.metrics.merge_applied((run.finished_at - first_seen).total_seconds())

    def _first_seen(self, run: Run) -> datetime | None:
        """When tfops first took up the commit for this stack: its earliest run at that commit."""
        created = [
            other.created_at
            for other in self.store.list_runs(stack=run.stack, limit=50)
            if other.commit_sha == run.commit_sha and other.created_at is not None
        ]
        return min(created) if created else None


SNAPSHOT_TTL = 1.0  # seconds a snapshot is reused: scrapes (and their store queries) come at any rate


def snapshot_of(
    store: Store,
    queue,
    *,
    slack_on: bool,
    ttl: float = SNAPSHOT_TTL,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], Snapshot]:
    """The state behind the metrics' gauges, read from the store at most once per `ttl` seconds."""

    def snapshot() -> Snapshot:
        drift: dict[str, int] = {}
        for stack in store.list_stacks():
            drift[stack.drift.value] = drift.get(stack.drift.value, 0) + 1
        return Snapshot(
            stacks_by_drift=drift,
            queue_depth=queue.depth,
            running=len(queue.running()),
            awaiting_approval=len(store.runs_with_status({RunStatus.AWAITING_APPROVAL})),
            outbox_depth=store.outbox_depth() if slack_on else None,
            open_incidents=len(store.open_incidents()),
        )

    return CachedSnapshot(snapshot, ttl=ttl, clock=clock)


class CachedSnapshot:
    """`compute()` reused for `ttl` seconds, and never run by two callers at once.

    `/metrics` is unauthenticated and each snapshot costs several store queries: however fast and
    however many scrapes come, the store sees one snapshot per `ttl`. While one caller computes, the
    others take the previous snapshot, or wait for this one when there is none yet. A failure is not
    cached: the next caller tries again (the metrics count and log failures).
    """

    def __init__(
        self, compute: Callable[[], Snapshot], *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._compute = compute
        self._ttl = ttl
        self._clock = clock
        self._computing = threading.Lock()
        self._cached: tuple[float, Snapshot] | None = None  # (taken at, snapshot), replaced whole

    def __call__(self) -> Snapshot:
        cached = self._cached
        if cached is not None and self._is_fresh(cached):
            return cached[1]
        if not self._computing.acquire(blocking=cached is None):
            assert cached is not None  # a blocking acquire always succeeds
            return cached[1]  # someone is computing a newer one right now
        try:
            latest = self._cached  # computed while this caller waited?
            if latest is not None and self._is_fresh(latest):
                return latest[1]
            taken_at = self._clock()
            snapshot = self._compute()
            self._cached = (taken_at, snapshot)
            return snapshot
        finally:
            self._computing.release()

    def _is_fresh(self, cached: tuple[float, Snapshot]) -> bool:
        return self._clock() - cached[0] < self._ttl


def readiness_facts(
    store: Store,
    scheduler,
    poller,
    *,
    poll_interval: float,
    started_at: datetime,
    leading: Callable[[], bool] = lambda: True,
    failover: float | None = None,
):
    def facts() -> ReadinessFacts:
        store_ok = store.ping()  # never waits out an outage: a probe must answer at once
        return ReadinessFacts(
            leader=leading(),
            instances=_instances(store) if store_ok else (),
            failover=failover,
            store_ok=store_ok,
            scheduler_running=scheduler.running,
            last_fetch_ok_at=poller.last_fetch_ok_at,
            last_fetch_error=poller.last_error,
            poll_interval=poll_interval,
            started_at=started_at,
            now=datetime.now(UTC),
            refused_stacks=tuple(
                f"stack {refused.name!r} ({refused.path}) is refused: {refused.detail}"
                for refused in poller.registry.refused
            ),
        )

    return facts


def _instances(store: Store) -> tuple[Instance, ...]:
    """The instances for /readyz; none when the store does not answer (its own check says so)."""
    try:
        return tuple(store.instances())
    except SQLAlchemyError:
        return ()
