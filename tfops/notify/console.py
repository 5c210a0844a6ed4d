"""The console/log notifier: one log line per run status change."""

from __future__ import annotations

import logging

from tfops.notify import RunNotice

log = logging.getLogger("tfops.runs")


class LogNotifier:
    def run_changed(self, notice: RunNotice) -> None:
        run = notice.run
        counts = ""
        if notice.summary is not None and (notice.summary.has_changes or notice.summary.has_drift):
            c = notice.summary.counts
            counts = (
                f" (+{c['create']} ~{c['update']} -/+{c['replace']} -{c['delete']}"
                f", drifted {len(notice.summary.drift)})"
            )
        sha = (run.commit_sha or "")[:10]
        log.info(
            "run %s %s %s @%s: %s%s%s",
            run.id,
            run.stack,
            run.kind.value,
            sha,
            run.status.value,
            counts,
            f": {notice.message}" if notice.message else "",
            extra={"run_id": run.id, "stack": run.stack},
        )
