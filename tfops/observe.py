"""What the daemon tells its operators: metrics fed from runs and fetches, state read at scrape
time, and the facts behind /readyz. Built by the App; nothing here changes a run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from tfops.metrics import Metrics, Snapshot
from tfops.models import Run, RunKind, RunStatus
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


def snapshot_of(store: Store, queue, *, slack_on: bool) -> Callable[[], Snapshot]:
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
        )

    return snapshot


def readiness_facts(store: Store, scheduler, poller, *, poll_interval: float, started_at: datetime):
    def facts() -> ReadinessFacts:
        return ReadinessFacts(
            store_ok=store.ping(),
            scheduler_running=scheduler.running,
            last_fetch_ok_at=poller.last_fetch_ok_at,
            last_fetch_error=poller.last_error,
            poll_interval=poll_interval,
            started_at=started_at,
            now=datetime.now(UTC),
        )

    return facts
