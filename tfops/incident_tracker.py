"""Records drift incidents as runs end, and tells who listens (Slack, metrics).

The reconciler calls `drift_checked` with a drift run's report and `back_in_sync` after a run
left its stack in sync; the decisions are `tfops.incidents`'; the rows `Store.track_drift` and
`Store.resolve_incident`'. Incidents are a report, never part of a run's outcome: a failure here
is logged and the run goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from tfops.incidents import DriftSeen, IncidentChange, drifted_set, resolution_after_success
from tfops.models import PlanSummary, Run
from tfops.store import Store
from tfops.store.engine import utc_now

log = logging.getLogger(__name__)

IncidentListener = Callable[[IncidentChange], None]


class IncidentTracker:
    def __init__(
        self,
        store: Store,
        listeners: Sequence[IncidentListener] = (),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.listeners = tuple(listeners)
        self.clock = clock

    def drift_checked(self, run: Run, report: PlanSummary) -> None:
        """A drift run's finding: opens, updates or resolves the stack's incident."""
        seen = DriftSeen(run.id, run.started_at or self.clock(), run.commit_sha, drifted_set(report))
        self._guarded(run, lambda: self.store.track_drift(run.stack, seen))

    def back_in_sync(self, run: Run, *, applied: bool) -> None:
        """A run that applied (or found nothing to apply) left its stack in sync: resolves its incident."""
        incident = self.store.open_incident(run.stack)
        if incident is None:
            return
        how = resolution_after_success(incident, kind=run.kind, applied=applied, commit_sha=run.commit_sha)
        at = self.clock()
        self._guarded(run, lambda: self.store.resolve_incident(run.stack, run.id, at, how, run.commit_sha))

    def _guarded(self, run: Run, step: Callable[[], IncidentChange | None]) -> None:
        try:
            change = step()
        except Exception:
            log.exception("run %s: the drift incident of %s could not be recorded", run.id, run.stack)
            return
        if change is None:
            return
        for listener in self.listeners:
            try:
                listener(change)
            except Exception:
                log.exception("run %s: announcing the drift incident of %s failed", run.id, run.stack)
