"""What the drift timers resume from, read for every stack at once; part of :class:`tfops.store.Store`.

A restart places one timer per stack. Asking per stack would be two queries each (a thousand
stacks: two thousand queries before the first poll finishes); these are one query each.
"""

from __future__ import annotations

from sqlalchemy import func, select

from tfops.models import Run, RunKind
from tfops.store import schema
from tfops.store.engine import StoreBase
from tfops.store.runs import _run_from_row


class TimersMixin(StoreBase):
    """Set-based reads for `tfops.scheduler`'s drift timers."""

    def last_drift_runs(self) -> dict[str, Run]:
        """Each stack's newest drift run, by stack name; stacks without one are absent."""
        runs = schema.runs
        newest = select(func.max(runs.c.id)).where(runs.c.kind == RunKind.DRIFT.value).group_by(runs.c.stack)
        with self._reading() as connection:
            rows = connection.execute(select(runs).where(runs.c.id.in_(newest))).all()
        return {row.stack: _run_from_row(row) for row in rows}
