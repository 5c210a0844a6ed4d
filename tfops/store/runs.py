"""The runs and run_events tables: every run of a stack and its status history.

The store's guarantee behind "every run ends in exactly one terminal status":
:meth:`RunsMixin.transition` refuses to move a run that is terminal already, and
the status check and the update happen in one transaction that holds the write
lock (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` elsewhere) with a
compare-and-set update as a second guard.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Select

from tfops.errors import IllegalTransition, TerminalError
from tfops.models import ALLOWED_TRANSITIONS, WORKING_STATUSES, Run, RunKind, RunReason, RunStatus, Trigger
from tfops.store import schema
from tfops.store.engine import StoreBase, existing, from_row, new_id, utc_now
from tfops.store.outages import retries_itself, run_through_outages
from tfops.store.stacks import StackNotFound, stack_exists

# What transition() may set besides the status; the rest of a run is fixed at creation.
SETTABLE_RUN_FIELDS = frozenset(
    {
        "commit_sha",
        "instance_id",
        "plan_sha256",
        "summary",
        "log_path",
        "exit_code",
        "error",
        "started_at",
        "finished_at",
        "decided_by",
    }
)


@dataclass(frozen=True)
class RunEvent:
    """One status change of a run. Events are only ever appended."""

    at: datetime
    from_status: RunStatus | None
    to_status: RunStatus
    message: str
    reason: RunReason | None = None


class InvalidTransition(TerminalError):
    """A run cannot move to the requested status from the one it is in."""

    hint = "the run was finished or moved on by someone else; look at `tfops show RUN_ID`"


class StackBusy(InvalidTransition):
    """Another run of the stack is planning or applying: the database refuses a second one, whichever
    process (or instance) asks. The run stays where it was, to be taken again later."""

    hint = "the stack's current run ends first"


class RunNotFound(TerminalError):
    hint = "list runs with `tfops runs`"


class RunsMixin(StoreBase):
    """Runs and their events; part of :class:`tfops.store.Store`."""

    def create_run(
        self,
        stack: str,
        kind: RunKind,
        trigger: Trigger,
        commit_sha: str | None,
        status: RunStatus = RunStatus.QUEUED,
        message: str = "",
    ) -> Run:
        """Record a new run and its first event."""
        status = RunStatus(status)
        now = utc_now()
        with self._writing() as connection:
            if not stack_exists(connection, stack):
                raise StackNotFound(f"cannot create a run for stack {stack!r}: it is not recorded")
            result = connection.execute(
                insert(schema.runs).values(
                    stack=stack,
                    kind=RunKind(kind).value,
                    status=status.value,
                    trigger=trigger.to_dict(),
                    commit_sha=commit_sha,
                    created_at=now,
                    started_at=now if _starts_work(RunStatus.QUEUED, status) else None,
                    finished_at=now if status.is_terminal else None,
                )
            )
            run_id = new_id(result)
            _append_event(connection, run_id, now, None, status, message)
            return _run_from_row(existing(select_run(connection, run_id), f"run {run_id}"))

    def get_run(self, run_id: int) -> Run | None:
        with self._reading() as connection:
            row = select_run(connection, run_id)
        return _run_from_row(row) if row else None

    def list_runs(self, *, stack: str | None = None, limit: int = 20) -> list[Run]:
        """The newest runs first, optionally of one stack."""
        query = select(schema.runs).order_by(schema.runs.c.id.desc()).limit(limit)
        if stack is not None:
            query = query.where(schema.runs.c.stack == stack)
        return self._select_runs(query)

    def last_run(self, stack: str, *, kinds: Collection[RunKind] | None = None) -> Run | None:
        """The stack's newest run, or its newest run of one of `kinds`, however old."""
        query = select(schema.runs).where(schema.runs.c.stack == stack)
        if kinds is not None:
            query = query.where(schema.runs.c.kind.in_([RunKind(kind).value for kind in kinds]))
        newest = self._select_runs(query.order_by(schema.runs.c.id.desc()).limit(1))
        return newest[0] if newest else None

    def runs_with_status(self, statuses: Collection[RunStatus]) -> list[Run]:
        """Runs in any of ``statuses``, oldest first (the order they were queued)."""
        values = [RunStatus(status).value for status in statuses]
        if not values:
            return []
        return self._select_runs(
            select(schema.runs).where(schema.runs.c.status.in_(values)).order_by(schema.runs.c.id)
        )

    def open_runs(self, stack: str) -> list[Run]:
        """The stack's runs that have not reached a terminal status, oldest first."""
        open_statuses = [status.value for status in RunStatus if not status.is_terminal]
        return self._select_runs(
            select(schema.runs)
            .where(schema.runs.c.stack == stack, schema.runs.c.status.in_(open_statuses))
            .order_by(schema.runs.c.id)
        )

    @retries_itself
    def transition(
        self,
        run_id: int,
        to: RunStatus,
        *,
        allowed_from: Collection[RunStatus] | None = None,
        message: str = "",
        reason: RunReason | None = None,
        **fields: Any,
    ) -> Run:
        """Move a run to ``to``, set ``fields`` and append an event, all in one transaction.

        ``reason`` (why, in one word) is kept on the run and its event; ``message`` is the detail.

        Raises InvalidTransition when the run is terminal already or its status is not in
        ``allowed_from``; TypeError for a field that is not settable. ``finished_at`` is set
        when ``to`` is terminal and ``started_at`` when the run leaves ``queued`` for work,
        unless given. ``error`` and ``summary`` must already be redacted.

        In the daemon, a transaction cut off by a database restart runs again once the server is
        back (tfops.store.outages); when the cut-off attempt did commit (the connection went away
        with COMMIT in flight), the next attempt finds its own event and returns the moved run.
        """
        unknown = set(fields) - SETTABLE_RUN_FIELDS
        if unknown:
            raise TypeError(f"transition() got fields it may not set: {', '.join(sorted(unknown))}")
        move = _Move(
            run_id=run_id,
            to=RunStatus(to),
            allowed=None if allowed_from is None else frozenset(RunStatus(s) for s in allowed_from),
            message=message,
            reason=None if reason is None else RunReason(reason),
            fields=fields,
            at=utc_now(),  # once for every attempt: it is how a later attempt knows the first one
        )
        return run_through_outages(lambda attempt: self._move(move, again=attempt > 1), self._outage_wait)

    def _move(self, move: _Move, *, again: bool) -> Run:
        with self._writing() as connection:
            row = require_run(connection, move.run_id, for_update=True)
            if again and _moved_already(connection, row, move):
                return _run_from_row(row)  # the cut-off attempt committed; its answer was lost
            current = _status(row.status)
            _check_transition(move.run_id, current, move.to, move.allowed)
            _update_status(connection, move, current)
            _append_event(connection, move.run_id, move.at, current, move.to, move.message, move.reason)
            return _run_from_row(existing(select_run(connection, move.run_id), f"run {move.run_id}"))

    def note_once(self, run_id: int, message: str) -> bool:
        """Record `message` on a run without moving it (an event from its status to the same),
        unless its last event says it already: True when this call recorded it. Under the run's
        row lock, so of several instances noting the same thing (what a held deploy waits for,
        tfops.run_queue) one records and announces it."""
        with self._writing() as connection:
            status = _status(require_run(connection, run_id, for_update=True).status)
            events = schema.run_events
            newest = select(events.c.message).where(events.c.run_id == run_id)
            last = connection.execute(newest.order_by(events.c.id.desc()).limit(1)).scalar()
            if last == message:
                return False
            _append_event(connection, run_id, utc_now(), status, status, message)
            return True

    def set_run_process_group(self, run_id: int, pgid: int | None, leader: str | None) -> None:
        """Record the process group of the run's running Terraform, or clear it (None) when it ended."""
        with self._writing() as connection:
            connection.execute(
                update(schema.runs).where(schema.runs.c.id == run_id).values(pgid=pgid, pgid_leader=leader)
            )

    def run_process_group(self, run_id: int) -> tuple[int, str] | None:
        """(pgid, leader identity) recorded for the run, or None when no Terraform of it runs."""
        query = select(schema.runs.c.pgid, schema.runs.c.pgid_leader).where(schema.runs.c.id == run_id)
        with self._reading() as connection:
            row = connection.execute(query).first()
        if row is None or row.pgid is None:
            return None
        return row.pgid, row.pgid_leader or ""

    def events(self, run_id: int) -> list[RunEvent]:
        """The run's status history, oldest first; an event from a status to the same one is a
        note that did not move the run (`note_once`)."""
        query = (
            select(schema.run_events)
            .where(schema.run_events.c.run_id == run_id)
            .order_by(schema.run_events.c.id)
        )
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [
            from_row(
                RunEvent,
                row,
                from_status=_status(row.from_status) if row.from_status else None,
                to_status=_status(row.to_status),
                reason=_reason(row.reason),
            )
            for row in rows
        ]

    def _select_runs(self, query: Select) -> list[Run]:
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [_run_from_row(row) for row in rows]


def select_run(connection: Connection, run_id: int, *, for_update: bool = False) -> Row | None:
    query = select(schema.runs).where(schema.runs.c.id == run_id)
    if for_update:
        query = query.with_for_update()
    return connection.execute(query).first()


def require_run(connection: Connection, run_id: int, *, for_update: bool = False) -> Row:
    """The run's row, or RunNotFound; ``for_update`` locks it (PostgreSQL) until the commit."""
    row = select_run(connection, run_id, for_update=for_update)
    if row is None:
        raise RunNotFound(f"run {run_id} does not exist")
    return row


@dataclass(frozen=True)
class _Move:
    """One transition() call: the same for each of its attempts."""

    run_id: int
    to: RunStatus
    allowed: frozenset[RunStatus] | None
    message: str
    reason: RunReason | None
    fields: dict[str, Any]
    at: datetime


def _update_status(connection: Connection, move: _Move, current: RunStatus) -> None:
    values = {
        **_automatic_timestamps(current, move.to, move.at, move.fields),
        **move.fields,
        "status": move.to.value,
        "reason": None if move.reason is None else move.reason.value,
    }
    try:
        result = connection.execute(
            update(schema.runs)
            .where(schema.runs.c.id == move.run_id, schema.runs.c.status == current.value)
            .values(**values)
        )
    except IntegrityError as exc:
        if move.to in WORKING_STATUSES:  # uq_runs_stack_working: one working run per stack
            raise StackBusy(f"run {move.run_id}: another run of its stack is planning or applying") from exc
        raise
    if result.rowcount != 1:
        # Only reachable on a database without row locks: someone else moved it first.
        raise InvalidTransition(f"run {move.run_id} changed status concurrently; not moved to {move.to}")


def _moved_already(connection: Connection, row: Row, move: _Move) -> bool:
    """True when the run is where `move` takes it and its newest event is the one `move` writes: the
    same status, message and timestamp (taken once per call, to the microsecond), so another
    caller's transition to the same status is not mistaken for this one."""
    if row.status != move.to.value:
        return False
    newest = connection.execute(
        select(schema.run_events)
        .where(schema.run_events.c.run_id == move.run_id)
        .order_by(schema.run_events.c.id.desc())
        .limit(1)
    ).first()
    return (
        newest is not None
        and newest.to_status == move.to.value
        and newest.message == move.message
        and newest.at == move.at
    )


def _check_transition(
    run_id: int, current: RunStatus, to: RunStatus, allowed: frozenset[RunStatus] | None
) -> None:
    if current.is_terminal:
        raise InvalidTransition(f"run {run_id} is {current} (terminal) and cannot move to {to}")
    if allowed is not None and current not in allowed:
        expected = ", ".join(sorted(allowed))
        raise InvalidTransition(f"run {run_id} is {current}, not one of [{expected}]; not moved to {to}")
    # After the race checks above: a run someone else moved on is a race, this is a bug.
    if to not in ALLOWED_TRANSITIONS[current]:
        raise IllegalTransition(f"run {run_id} may not move from {current} to {to}")


def _starts_work(current: RunStatus, to: RunStatus) -> bool:
    # A run cancelled straight from the queue (superseded, interrupted) never started.
    return current is RunStatus.QUEUED and to is not RunStatus.QUEUED and not to.is_terminal


def _automatic_timestamps(
    current: RunStatus, to: RunStatus, now: datetime, given: dict[str, Any]
) -> dict[str, datetime]:
    stamps: dict[str, datetime] = {}
    if _starts_work(current, to) and "started_at" not in given:
        stamps["started_at"] = now
    if to.is_terminal and "finished_at" not in given:
        stamps["finished_at"] = now
    return stamps


def _append_event(
    connection: Connection,
    run_id: int,
    at: datetime,
    from_status: RunStatus | None,
    to_status: RunStatus,
    message: str,
    reason: RunReason | None = None,
) -> None:
    connection.execute(
        insert(schema.run_events).values(
            run_id=run_id,
            at=at,
            from_status=from_status.value if from_status else None,
            to_status=to_status.value,
            message=message,
            reason=None if reason is None else RunReason(reason).value,
        )
    )


# Values that older versions declared and never wrote, read as what they would have meant, so
# that a database holding one still reads: a remediation was the apply of a drift plan. ("blocked"
# is a status again since issue 13: change guards write it.)
_LEGACY_STATUSES: dict[str, RunStatus] = {}
_LEGACY_KINDS = {"remediate": RunKind.DRIFT}


def _status(value: str) -> RunStatus:
    return _LEGACY_STATUSES.get(value) or RunStatus(value)


def _kind(value: str) -> RunKind:
    return _LEGACY_KINDS.get(value) or RunKind(value)


def _reason(value: str | None) -> RunReason | None:
    """A reason this version does not know (written by a newer one) reads as none."""
    try:
        return RunReason(value) if value is not None else None
    except ValueError:
        return None


def run_from_row(row: Row) -> Run:
    """A run from its row (the other store modules read runs too)."""
    return _run_from_row(row)


def _run_from_row(row: Row) -> Run:
    return from_row(
        Run,
        row,
        kind=_kind(row.kind),
        status=_status(row.status),
        trigger=Trigger.from_dict(row.trigger),
        reason=_reason(row.reason),
    )
