"""The status page's reads (tfops/web/ui.py): paged, each one query on an index the tables have.

Module functions over a :class:`Store` rather than a mixin: only the status page asks these, and
they read, never write. Every list is bounded (a page, a limit, a window of days), so a store
with years of runs answers as fast as a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import func, select

from tfops.incidents import Incident
from tfops.models import FAILURE_STATUSES, DriftState, Run, RunKind, RunStatus, StackState
from tfops.store import schema
from tfops.store.engine import from_row
from tfops.store.incidents import _incident_from_row
from tfops.store.runs import _run_from_row
from tfops.store.store import Store

_RUNS = schema.runs
_TIMES = ("created_at", "started_at", "finished_at")
_INCIDENTS = schema.drift_incidents


@dataclass(frozen=True)
class LastRun:
    """A stack's newest run, as the overview shows it: no summary, trigger or error to decode."""

    id: int
    stack: str
    kind: RunKind
    status: RunStatus
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class RunPage:
    runs: list[Run]  # newest first
    page: int  # 1-based
    has_next: bool


@dataclass(frozen=True)
class TroubleDay:
    """How many distinct stacks were drifted (an incident open at some time that day) and how
    many had a run fail that day (UTC days)."""

    day: date
    drifted: int
    failed: int


def stack_overview(store: Store) -> list[tuple[StackState, LastRun | None]]:
    """Every recorded stack by name with its newest run: two queries, any number of stacks.

    `Store.stack_overview` without the JSON columns (drift summaries, run summaries and
    triggers): decoding those was most of the overview's time at 1,000 stacks."""
    stacks, runs = schema.stacks, _RUNS
    newest_ids = select(func.max(runs.c.id)).group_by(runs.c.stack).scalar_subquery()
    run_columns = [runs.c[name] for name in ("id", "stack", "kind", "status", *_TIMES)]
    stack_columns = [column for column in stacks.c if column.name != "drift_summary"]
    with store._reading() as connection:
        stack_rows = connection.execute(select(*stack_columns).order_by(stacks.c.name)).all()
        run_rows = connection.execute(select(*run_columns).where(runs.c.id.in_(newest_ids))).all()
    newest = {
        row.stack: LastRun(
            row.id, row.stack, RunKind(row.kind), RunStatus(row.status), row.created_at, row.started_at,
            row.finished_at,
        )
        for row in run_rows
    }  # fmt: skip
    states = [from_row(StackState, row, drift=DriftState(row.drift)) for row in stack_rows]
    return [(state, newest.get(state.name)) for state in states]


def stack_runs(store: Store, stack: str, *, page: int = 1, per_page: int = 25) -> RunPage:
    """One page of a stack's runs, newest first, on the (stack, id) index."""
    page = max(1, page)
    query = (
        select(_RUNS)
        .where(_RUNS.c.stack == stack)
        .order_by(_RUNS.c.id.desc())
        .limit(per_page + 1)
        .offset((page - 1) * per_page)
    )
    with store._reading() as connection:
        rows = connection.execute(query).all()
    runs = [_run_from_row(row) for row in rows[:per_page]]
    return RunPage(runs, page, len(rows) > per_page)


def stack_incidents(store: Store, stack: str, *, limit: int = 20) -> list[Incident]:
    """The stack's drift incidents, newest first (open or resolved), on the (stack, id) index."""
    query = (
        select(_INCIDENTS).where(_INCIDENTS.c.stack == stack).order_by(_INCIDENTS.c.id.desc()).limit(limit)
    )
    with store._reading() as connection:
        return [_incident_from_row(row) for row in connection.execute(query)]


def applied_runs(store: Store, stack: str, *, limit: int = 20) -> list[Run]:
    """The stack's newest applied runs: which commit went live when."""
    query = (
        select(_RUNS)
        .where(_RUNS.c.stack == stack, _RUNS.c.status == RunStatus.APPLIED.value)
        .order_by(_RUNS.c.id.desc())
        .limit(limit)
    )
    with store._reading() as connection:
        return [_run_from_row(row) for row in connection.execute(query)]


def finished_runs(store: Store, stack: str, *, limit: int = 30) -> list[Run]:
    """The stack's newest runs that started and ended, for its durations chart."""
    query = (
        select(_RUNS)
        .where(_RUNS.c.stack == stack, _RUNS.c.finished_at.is_not(None), _RUNS.c.started_at.is_not(None))
        .order_by(_RUNS.c.id.desc())
        .limit(limit)
    )
    with store._reading() as connection:
        return [_run_from_row(row) for row in connection.execute(query)]


def trouble_by_day(store: Store, *, days: int, now: datetime) -> list[TroubleDay]:
    """Drifted and failed stacks per UTC day, the last `days` days up to `now`'s, oldest first."""
    first = now.date() - timedelta(days=days - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=now.tzinfo)
    failures = [status.value for status in FAILURE_STATUSES]
    failed_query = select(_RUNS.c.stack, _RUNS.c.finished_at).where(
        _RUNS.c.status.in_(failures), _RUNS.c.finished_at >= start
    )
    drift_query = select(_INCIDENTS.c.stack, _INCIDENTS.c.opened_at, _INCIDENTS.c.resolved_at).where(
        (_INCIDENTS.c.resolved_at.is_(None)) | (_INCIDENTS.c.resolved_at >= start)
    )
    with store._reading() as connection:
        failed_rows = connection.execute(failed_query).all()
        drift_rows = connection.execute(drift_query).all()
    days_list = [first + timedelta(days=offset) for offset in range(days)]
    failed = _per_day((row.stack, row.finished_at.date()) for row in failed_rows)
    drifted: dict[date, set[str]] = {}
    for row in drift_rows:
        since = max(row.opened_at.date(), first)
        until = (row.resolved_at or now).date()
        for day in days_list:
            if since <= day <= until:
                drifted.setdefault(day, set()).add(row.stack)
    return [TroubleDay(day, len(drifted.get(day, ())), len(failed.get(day, ()))) for day in days_list]


def _per_day(pairs: Iterable[tuple[str, date]]) -> dict[date, set[str]]:
    found: dict[date, set[str]] = {}
    for stack, day in pairs:
        found.setdefault(day, set()).add(stack)
    return found


def change_mark(store: Store) -> str:
    """A value that changes whenever a run moves, a decision is recorded, a stack's record or a
    drift incident changes: the live script reloads a page's regions only when it does."""
    with store._reading() as connection:
        marks = (
            connection.execute(select(func.max(schema.run_events.c.id))).scalar(),
            connection.execute(select(func.max(schema.decisions.c.id))).scalar(),
            connection.execute(select(func.max(schema.stacks.c.updated_at))).scalar(),
            connection.execute(select(func.max(_INCIDENTS.c.last_seen_at))).scalar(),
            connection.execute(select(func.max(_INCIDENTS.c.resolved_at))).scalar(),
        )
    return "|".join(str(mark) for mark in marks)
