"""Reads about every stack at once, for the views that list the whole estate.

`tfops status` and `GET /api/stacks` show each stack with its newest run. Asked stack by stack
that is one query per stack (seconds at a thousand stacks); here it is a fixed number of
queries, in one read transaction so the stacks and their runs are one consistent picture.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from tfops.models import Run, StackState
from tfops.store import schema
from tfops.store.engine import StoreBase
from tfops.store.runs import _run_from_row
from tfops.store.stacks import _stack_from_row


@dataclass(frozen=True)
class StackOverview:
    """One stack as the store knows it, and its newest run of any kind (None before the first)."""

    state: StackState
    last_run: Run | None


class OverviewMixin(StoreBase):
    """Whole-estate reads; part of :class:`tfops.store.Store`."""

    def stack_overview(self) -> list[StackOverview]:
        """Every stack ever recorded, by name, with its newest run: two queries, any stack count."""
        runs = schema.runs
        # The (stack, id) index answers "newest id per stack" without reading the runs themselves.
        newest_ids = select(func.max(runs.c.id)).group_by(runs.c.stack).scalar_subquery()
        with self._reading() as connection:
            stack_rows = connection.execute(select(schema.stacks).order_by(schema.stacks.c.name)).all()
            run_rows = connection.execute(select(runs).where(runs.c.id.in_(newest_ids))).all()
        newest = {row.stack: _run_from_row(row) for row in run_rows}
        return [StackOverview(state, newest.get(state.name)) for state in map(_stack_from_row, stack_rows)]
