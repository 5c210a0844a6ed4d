"""The persistent record of tfops: stacks, runs, their status history, small facts.

The store never sees a secret. Callers hand it summaries, errors and messages
that have already been through redaction (``tfops.terraform.plan``); it stores
what it is given verbatim and so must only ever be given redacted data.

Every method opens its own short transaction and returns plain dataclasses from
``tfops.models`` (or :class:`RunEvent`), never ORM rows, so no caller holds a
session or a connection. One :class:`Store` (one engine, one connection pool) is
shared by every thread of the daemon.

The store's guarantee behind "every run ends in exactly one terminal status":
:meth:`Store.transition` refuses to move a run that is terminal already, and
the status check and the update happen in one transaction that holds the write
lock (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` elsewhere) with a
compare-and-set update as a second guard.

Slack delivery goes through the ``outbox`` table. The store's guarantees there:
items of one channel are handed out strictly in id order, one at a time (only
the oldest pending item of a channel is ever due, so a failing item holds back
the ones behind it until it is sent or marked failed); :meth:`Store.claim_next`
leases that item in a write transaction, so two senders never hold it at once;
:meth:`Store.mark_sent` records the result (and, for a run's post, Slack's
``ts``) in one transaction. A crash between Slack's answer and ``mark_sent``
therefore resends at most the one claimed item per channel, once its lease ends.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Row, create_engine, event, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import ColumnElement, Executable, Select

from tfops.errors import IllegalTransition, TerminalError
from tfops.models import (
    ALLOWED_TRANSITIONS,
    DecisionKind,
    DecisionOutcome,
    DecisionSource,
    DriftState,
    OutboxKind,
    OutboxStatus,
    Run,
    RunKind,
    RunStatus,
    StackState,
    Trigger,
)
from tfops.store import schema

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# How long a SQLite connection waits for another writer before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000

# Execution option that marks a connection as about to write (see _on_begin).
_WRITE_OPTION = "tfops_write"

# What transition() may set besides the status; the rest of a run is fixed at creation.
SETTABLE_RUN_FIELDS = frozenset(
    {
        "commit_sha",
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


class InvalidTransition(TerminalError):
    """A run cannot move to the requested status from the one it is in."""

    hint = "the run was finished or moved on by someone else; look at `tfops show RUN_ID`"


class RunNotFound(TerminalError):
    hint = "list runs with `tfops runs`"


class StackNotFound(TerminalError):
    hint = "stacks are recorded when the daemon loads its configuration; check the stack name"


@dataclass(frozen=True)
class RunEvent:
    """One status change of a run. Events are only ever appended."""

    at: datetime
    from_status: RunStatus | None
    to_status: RunStatus
    message: str


@dataclass(frozen=True)
class OutboxItem:
    """One notification waiting for (or done with) delivery to Slack."""

    id: int
    channel: str
    run_id: int | None
    kind: OutboxKind
    payload: dict[str, Any]
    status: OutboxStatus
    attempts: int  # finished attempts that did not deliver (mark_retry, mark_failed)
    next_attempt_at: datetime  # not due before; also the end of a claim's lease
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    result: dict[str, Any] | None  # what Slack answered that matters later, e.g. {"ts": ...}


@dataclass(frozen=True)
class SlackMessage:
    """The Slack message that shows a run, so later updates edit it in place."""

    run_id: int
    channel: str
    ts: str
    updated_at: datetime


@dataclass(frozen=True)
class Decision:
    """One approve or reject of a run, as given, whether it counted or not."""

    id: int
    run_id: int
    decision: DecisionKind
    actor_id: str  # Slack user id, or the local user name for the CLI
    actor_name: str | None
    source: DecisionSource
    commit_sha: str | None  # the binding the decision was made against
    plan_sha256: str | None
    at: datetime
    outcome: DecisionOutcome
    reason: str | None


@dataclass(frozen=True)
class AuditEntry:
    """One line of the append-only audit log."""

    id: int
    at: datetime
    actor_id: str
    actor_name: str | None
    action: str
    run_id: int | None  # as claimed by the request; the run need not exist
    detail: dict[str, Any] | None


class OutboxItemNotFound(TerminalError):
    hint = "outbox items are never deleted; check the id the sender holds"


class OutboxItemNotPending(TerminalError):
    """A retry or failure was recorded for an item that is already sent or failed."""

    hint = "another sender finished this item first; nothing to do"


# How long a claimed item is held by its sender before another may take it. Must exceed the
# longest delivery attempt, including any waiting the Slack client does inside one call.
DEFAULT_CLAIM_LEASE = timedelta(minutes=2)

# Delivery errors are kept for people to read; an HTML error page from a proxy need not be.
MAX_OUTBOX_ERROR_CHARS = 2000

# Channels whose heads claim_next tries in one transaction before giving up (PostgreSQL races).
_CLAIM_CANDIDATES = 8


def utc_now() -> datetime:
    return datetime.now(UTC)


class Store:
    """SQLAlchemy-backed store; SQLite by default, PostgreSQL-ready schema.

    Only redacted data may be passed in: summaries, errors and messages are
    stored as given and are shown by the CLI and the status page.
    """

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            self._engine = _sqlite_engine(parsed)
        else:
            self._engine = create_engine(parsed, pool_pre_ping=True)
        # Serializes upgrade() inside this process; the database lock covers other processes.
        self._upgrade_lock = threading.Lock()

    @classmethod
    def sqlite_url(cls, path: Path) -> str:
        """A SQLAlchemy URL for a SQLite file, safe for any characters in the path."""
        return URL.create("sqlite", database=str(Path(path).absolute())).render_as_string(hide_password=False)

    # -- lifecycle -----------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Bring the schema to the newest migration; a no-op when it is there already."""
        config = Config()
        # ConfigParser interpolates '%': escape it so any directory name works.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with self._upgrade_lock, self._writing() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def ping(self) -> bool:
        """True when the database answers a trivial query (readiness check)."""
        try:
            with self._engine.connect() as connection:
                return connection.execute(text("SELECT 1")).scalar_one() == 1
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self._engine.dispose()

    @property
    def engine(self) -> Engine:
        """The underlying engine, for tests and `tfops db` tooling; not for queries elsewhere."""
        return self._engine

    # -- stacks --------------------------------------------------------------------------------------

    def sync_stacks(self, stacks: Iterable[tuple[str, str]]) -> None:
        """Record the configured stacks: insert new ones, update moved paths.

        A stack that left the configuration keeps its row, and with it its run history.
        """
        wanted = _unique_pairs(stacks)
        now = utc_now()
        with self._writing() as connection:
            known = dict(connection.execute(select(schema.stacks.c.name, schema.stacks.c.path)).all())
            for name, path in wanted.items():
                if name not in known:
                    connection.execute(
                        insert(schema.stacks).values(
                            name=name,
                            path=path,
                            drift=DriftState.UNKNOWN.value,
                            created_at=now,
                            updated_at=now,
                        )
                    )
                elif known[name] != path:
                    connection.execute(
                        update(schema.stacks)
                        .where(schema.stacks.c.name == name)
                        .values(path=path, updated_at=now)
                    )

    def get_stack(self, name: str) -> StackState | None:
        with self._reading() as connection:
            row = connection.execute(select(schema.stacks).where(schema.stacks.c.name == name)).first()
        return _stack_from_row(row) if row else None

    def list_stacks(self) -> list[StackState]:
        """Every stack ever recorded, by name, including ones no longer configured."""
        with self._reading() as connection:
            rows = connection.execute(select(schema.stacks).order_by(schema.stacks.c.name)).all()
        return [_stack_from_row(row) for row in rows]

    def set_head(self, name: str, sha: str) -> None:
        """Record the branch head seen for one stack."""
        self._update_stack(name, head_sha=sha)

    def set_head_all(self, sha: str) -> None:
        """Record the branch head for every stack: they all live on the same branch."""
        with self._writing() as connection:
            connection.execute(update(schema.stacks).values(head_sha=sha, updated_at=utc_now()))

    def mark_stack_applied(self, name: str, sha: str) -> None:
        """Record the commit the stack's infrastructure now matches."""
        self._update_stack(name, applied_sha=sha)

    def set_drift(self, name: str, state: DriftState, *, summary: dict[str, Any] | None = None) -> None:
        """Record a drift check's outcome; ``summary`` must already be redacted."""
        now = utc_now()
        self._update_stack(
            name, drift=DriftState(state).value, drift_checked_at=now, drift_summary=summary, now=now
        )

    def _update_stack(self, name: str, *, now: datetime | None = None, **values: Any) -> None:
        with self._writing() as connection:
            result = connection.execute(
                update(schema.stacks)
                .where(schema.stacks.c.name == name)
                .values(**values, updated_at=now or utc_now())
            )
            if result.rowcount != 1:
                raise StackNotFound(f"stack {name!r} is not recorded in the store")

    # -- runs ----------------------------------------------------------------------------------------

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
            if not _stack_exists(connection, stack):
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
            run_id = _new_id(result)
            _append_event(connection, run_id, now, None, status, message)
            return _run_from_row(_existing(_select_run(connection, run_id), f"run {run_id}"))

    def get_run(self, run_id: int) -> Run | None:
        with self._reading() as connection:
            row = _select_run(connection, run_id)
        return _run_from_row(row) if row else None

    def list_runs(self, *, stack: str | None = None, limit: int = 20) -> list[Run]:
        """The newest runs first, optionally of one stack."""
        query = select(schema.runs).order_by(schema.runs.c.id.desc()).limit(limit)
        if stack is not None:
            query = query.where(schema.runs.c.stack == stack)
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [_run_from_row(row) for row in rows]

    def last_run(self, stack: str, *, kinds: Collection[RunKind] | None = None) -> Run | None:
        """The stack's newest run, or its newest run of one of `kinds`, however old."""
        query = select(schema.runs).where(schema.runs.c.stack == stack)
        if kinds is not None:
            query = query.where(schema.runs.c.kind.in_([RunKind(kind).value for kind in kinds]))
        with self._reading() as connection:
            row = connection.execute(query.order_by(schema.runs.c.id.desc()).limit(1)).first()
        return _run_from_row(row) if row else None

    def runs_with_status(self, statuses: Collection[RunStatus]) -> list[Run]:
        """Runs in any of ``statuses``, oldest first (the order they were queued)."""
        values = [RunStatus(status).value for status in statuses]
        if not values:
            return []
        query = select(schema.runs).where(schema.runs.c.status.in_(values)).order_by(schema.runs.c.id)
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [_run_from_row(row) for row in rows]

    def open_runs(self, stack: str) -> list[Run]:
        """The stack's runs that have not reached a terminal status, oldest first."""
        open_statuses = [status.value for status in RunStatus if not status.is_terminal]
        query = (
            select(schema.runs)
            .where(schema.runs.c.stack == stack, schema.runs.c.status.in_(open_statuses))
            .order_by(schema.runs.c.id)
        )
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [_run_from_row(row) for row in rows]

    def transition(
        self,
        run_id: int,
        to: RunStatus,
        *,
        allowed_from: Collection[RunStatus] | None = None,
        message: str = "",
        **fields: Any,
    ) -> Run:
        """Move a run to ``to``, set ``fields`` and append an event, all in one transaction.

        Raises InvalidTransition when the run is terminal already or its status is not in
        ``allowed_from``; TypeError for a field that is not settable. ``finished_at`` is set
        when ``to`` is terminal and ``started_at`` when the run leaves ``queued`` for work,
        unless given. ``error`` and ``summary`` must already be redacted.
        """
        unknown = set(fields) - SETTABLE_RUN_FIELDS
        if unknown:
            raise TypeError(f"transition() got fields it may not set: {', '.join(sorted(unknown))}")
        to = RunStatus(to)
        allowed = None if allowed_from is None else frozenset(RunStatus(s) for s in allowed_from)
        now = utc_now()
        with self._writing() as connection:
            row = _select_run(connection, run_id, for_update=True)
            if row is None:
                raise RunNotFound(f"run {run_id} does not exist")
            current = _status(row.status)
            _check_transition(run_id, current, to, allowed)
            values = {**_automatic_timestamps(current, to, now, fields), **fields, "status": to.value}
            result = connection.execute(
                update(schema.runs)
                .where(schema.runs.c.id == run_id, schema.runs.c.status == current.value)
                .values(**values)
            )
            if result.rowcount != 1:
                # Only reachable on a database without row locks: someone else moved it first.
                raise InvalidTransition(f"run {run_id} changed status concurrently; not moved to {to}")
            _append_event(connection, run_id, now, current, to, message)
            return _run_from_row(_existing(_select_run(connection, run_id), f"run {run_id}"))

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
        """The run's status history, oldest first."""
        query = (
            select(schema.run_events)
            .where(schema.run_events.c.run_id == run_id)
            .order_by(schema.run_events.c.id)
        )
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [
            RunEvent(
                at=row.at,
                from_status=_status(row.from_status) if row.from_status else None,
                to_status=_status(row.to_status),
                message=row.message,
            )
            for row in rows
        ]

    # -- meta ----------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any | None:
        with self._reading() as connection:
            return connection.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == key)
            ).scalar_one_or_none()

    def set_meta(self, key: str, value: Any) -> None:
        """Store a small JSON-serialisable value under ``key``, replacing any previous one."""
        with self._writing() as connection:
            connection.execute(_upsert_meta(connection, key, value, utc_now()))

    # -- outbox --------------------------------------------------------------------------------------

    def enqueue(
        self, channel: str, kind: OutboxKind, payload: dict[str, Any], run_id: int | None = None
    ) -> int:
        """Add a notification for ``channel`` behind every earlier one; returns its id.

        ``payload`` must already be redacted: it is stored as given and sent to Slack.
        """
        if not channel:
            raise ValueError("an outbox item needs a channel")
        kind = OutboxKind(kind)
        now = utc_now()
        with self._writing() as connection:
            if run_id is not None and _select_run(connection, run_id) is None:
                raise RunNotFound(f"cannot enqueue a notification for run {run_id}: it does not exist")
            result = connection.execute(
                insert(schema.outbox).values(
                    channel=channel,
                    run_id=run_id,
                    kind=kind.value,
                    payload=payload,
                    status=OutboxStatus.PENDING.value,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            return _new_id(result)

    def get_outbox_item(self, item_id: int) -> OutboxItem | None:
        with self._reading() as connection:
            row = _select_outbox(connection, item_id)
        return _outbox_item_from_row(row) if row else None

    def pending_for(self, channel: str, limit: int = 100) -> list[OutboxItem]:
        """The channel's queue, head first: the first item is the only one that may be sent now.

        A sender that works through this list must go in order and stop at the first item
        it cannot mark sent or failed.
        """
        query = (
            select(schema.outbox)
            .where(_is_pending(), schema.outbox.c.channel == channel)
            .order_by(schema.outbox.c.id)
            .limit(limit)
        )
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [_outbox_item_from_row(row) for row in rows]

    def next_due(self, now: datetime | None = None, limit: int = 100) -> list[OutboxItem]:
        """The head of every channel's queue that is due at ``now``, oldest first.

        At most one item per channel: an item is never due while an earlier item of its
        channel is pending, so delivering what this returns keeps each channel in order.
        """
        with self._reading() as connection:
            rows = connection.execute(_due_heads(now or utc_now()).limit(limit)).all()
        return [_outbox_item_from_row(row) for row in rows]

    def claim_next(
        self,
        channel: str | None = None,
        *,
        now: datetime | None = None,
        lease: timedelta = DEFAULT_CLAIM_LEASE,
    ) -> OutboxItem | None:
        """Take the oldest due head (of ``channel``, or of any channel) for delivery, or None.

        The claim pushes the item's ``next_attempt_at`` to ``now + lease`` in a write
        transaction: no other sender sees it due until the lease ends. The holder ends the
        claim with mark_sent, mark_retry or mark_failed. If the holder dies instead, the item
        becomes due again when the lease ends and is sent again: the only case of a resend,
        and it can only touch this one item of the channel.
        """
        if lease <= timedelta(0):
            raise ValueError(f"a claim's lease must be positive, not {lease}")
        now = now or utc_now()
        with self._writing() as connection:
            candidates = connection.execute(_due_heads(now, channel).limit(_CLAIM_CANDIDATES)).all()
            for candidate in candidates:
                # Compare-and-set: on PostgreSQL another sender may have claimed it since the read.
                claimed = connection.execute(
                    update(schema.outbox)
                    .where(
                        schema.outbox.c.id == candidate.id,
                        _is_pending(),
                        schema.outbox.c.next_attempt_at <= now,
                    )
                    .values(next_attempt_at=now + lease)
                )
                if claimed.rowcount == 1:
                    return _outbox_item_from_row(
                        _existing(_select_outbox(connection, candidate.id), "outbox item")
                    )
        return None

    def mark_sent(self, item_id: int, result: dict[str, Any] | None = None) -> bool:
        """Record that Slack accepted the item; False when it was recorded as sent already.

        For a run's ``post`` whose ``result`` carries Slack's ``ts``, the run's message is
        recorded in the same transaction (under ``result["channel"]``, the channel id Slack
        answers with, when given), so an update can never lose track of the message it edits.
        A late success of an item marked failed is still recorded: the message exists.
        """
        now = utc_now()
        with self._writing() as connection:
            row = _select_outbox(connection, item_id, for_update=True)
            if row is None:
                raise OutboxItemNotFound(f"outbox item {item_id} does not exist")
            if row.status == OutboxStatus.SENT.value:
                return False
            moved = connection.execute(
                update(schema.outbox)
                .where(schema.outbox.c.id == item_id, schema.outbox.c.status == row.status)
                .values(status=OutboxStatus.SENT.value, sent_at=now, result=result)
            )
            if moved.rowcount != 1:
                return False
            ts = (result or {}).get("ts")
            if row.kind == OutboxKind.POST.value and row.run_id is not None and ts:
                channel = (result or {}).get("channel") or row.channel
                connection.execute(_upsert_slack_message(connection, row.run_id, channel, str(ts), now))
            return True

    def mark_retry(self, item_id: int, error: str, next_attempt_at: datetime) -> None:
        """Count a failed attempt and hold the item (and its channel) until ``next_attempt_at``.

        ``error`` must be redacted; it is clipped to MAX_OUTBOX_ERROR_CHARS.
        """
        self._record_failed_attempt(item_id, error, next_attempt_at=next_attempt_at)

    def mark_failed(self, item_id: int, error: str) -> None:
        """Give up on the item: count the attempt, keep the error, let its channel move on."""
        self._record_failed_attempt(item_id, error, status=OutboxStatus.FAILED.value)

    def outbox_depth(self) -> int:
        """How many notifications are waiting to be delivered, over all channels."""
        query = select(func.count()).select_from(schema.outbox).where(_is_pending())
        with self._reading() as connection:
            return connection.execute(query).scalar_one()

    def _record_failed_attempt(self, item_id: int, error: str, **values: Any) -> None:
        with self._writing() as connection:
            row = _select_outbox(connection, item_id, for_update=True)
            if row is None:
                raise OutboxItemNotFound(f"outbox item {item_id} does not exist")
            if row.status != OutboxStatus.PENDING.value:
                raise OutboxItemNotPending(f"outbox item {item_id} is {row.status}, not pending")
            connection.execute(
                update(schema.outbox)
                .where(schema.outbox.c.id == item_id)
                .values(attempts=schema.outbox.c.attempts + 1, last_error=_clip_error(error), **values)
            )

    # -- Slack messages ------------------------------------------------------------------------------

    def set_slack_message(self, run_id: int, channel: str, ts: str) -> None:
        """Remember the message that shows the run, replacing any earlier one."""
        with self._writing() as connection:
            if _select_run(connection, run_id) is None:
                raise RunNotFound(f"run {run_id} does not exist")
            connection.execute(_upsert_slack_message(connection, run_id, channel, ts, utc_now()))

    def get_slack_message(self, run_id: int) -> SlackMessage | None:
        query = select(schema.slack_messages).where(schema.slack_messages.c.run_id == run_id)
        with self._reading() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return SlackMessage(run_id=row.run_id, channel=row.channel, ts=row.ts, updated_at=row.updated_at)

    # -- decisions and audit -------------------------------------------------------------------------

    def record_decision(
        self,
        run_id: int,
        decision: DecisionKind,
        actor_id: str,
        actor_name: str | None,
        source: DecisionSource,
        commit_sha: str | None,
        plan_sha256: str | None,
        outcome: DecisionOutcome,
        reason: str | None = None,
    ) -> Decision:
        """Record a decision as given and return it as recorded.

        One person counts once: a ``counted`` decision by an actor whose same decision on
        this run already counts is recorded as ``duplicate`` instead; the returned
        Decision says so. The check and the insert share one transaction that holds the
        write lock (and the run's row lock on PostgreSQL), so a double click cannot count twice.
        """
        decision = DecisionKind(decision)
        source = DecisionSource(source)
        outcome = DecisionOutcome(outcome)
        if not actor_id:
            raise ValueError("a decision needs the actor's id")
        now = utc_now()
        with self._writing() as connection:
            if _select_run(connection, run_id, for_update=True) is None:
                raise RunNotFound(f"run {run_id} does not exist")
            if outcome is DecisionOutcome.COUNTED and _already_counts(connection, run_id, actor_id, decision):
                outcome = DecisionOutcome.DUPLICATE
                reason = f"{actor_name or actor_id}'s {decision} of run {run_id} already counts"
            result = connection.execute(
                insert(schema.decisions).values(
                    run_id=run_id,
                    decision=decision.value,
                    actor_id=actor_id,
                    actor_name=actor_name,
                    source=source.value,
                    commit_sha=commit_sha,
                    plan_sha256=plan_sha256,
                    at=now,
                    outcome=outcome.value,
                    reason=reason,
                )
            )
            decision_id = _new_id(result)
            row = connection.execute(
                select(schema.decisions).where(schema.decisions.c.id == decision_id)
            ).one()
            return _decision_from_row(row)

    def decisions(self, run_id: int) -> list[Decision]:
        """Every decision given on the run, counted or not, oldest first."""
        return self._select_decisions(schema.decisions.c.run_id == run_id)

    def counted_approvals(self, run_id: int) -> list[Decision]:
        """The approvals that count towards the run's quorum: one per person, oldest first."""
        counted = self._select_decisions(
            schema.decisions.c.run_id == run_id,
            schema.decisions.c.decision == DecisionKind.APPROVE.value,
            schema.decisions.c.outcome == DecisionOutcome.COUNTED.value,
        )
        return _first_per_actor(counted)

    def audit(
        self,
        actor_id: str,
        actor_name: str | None,
        action: str,
        run_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> AuditEntry:
        """Append to the audit log. Entries are never changed or removed by tfops.

        ``run_id`` is kept as given, even when no such run exists (a forged button);
        ``detail`` must already be redacted.
        """
        now = utc_now()
        with self._writing() as connection:
            result = connection.execute(
                insert(schema.audit_log).values(
                    at=now,
                    actor_id=actor_id,
                    actor_name=actor_name,
                    action=action,
                    run_id=run_id,
                    detail=detail,
                )
            )
            entry_id = _new_id(result)
            row = connection.execute(select(schema.audit_log).where(schema.audit_log.c.id == entry_id)).one()
            return _audit_entry_from_row(row)

    def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries first."""
        query = select(schema.audit_log).order_by(schema.audit_log.c.id.desc()).limit(limit)
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [_audit_entry_from_row(row) for row in rows]

    def _select_decisions(self, *conditions: Any) -> list[Decision]:
        query = select(schema.decisions).where(*conditions).order_by(schema.decisions.c.id)
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [_decision_from_row(row) for row in rows]

    # -- connections ---------------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._engine.connect() as connection:
            yield connection

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._engine.connect() as connection:
            connection.execution_options(**{_WRITE_OPTION: True})
            with connection.begin():
                yield connection


# -- engine ------------------------------------------------------------------------------------------


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # The scheduler's worker threads share the pool; sqlite3 connections may move between threads
    # as long as only one uses a connection at a time, which the pool guarantees.
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module (which skips it before SELECT) so that
    # _on_sqlite_begin decides how each transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # synchronous stays FULL (the default): a terminal status must survive a power cut.
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    # Writers take the write lock up front, so a read-then-write transaction cannot be
    # overtaken between its SELECT and its UPDATE (and never fails with BUSY_SNAPSHOT).
    # Readers use a deferred BEGIN and never block each other or, under WAL, a writer.
    writes = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


# -- rows and rules (pure) ---------------------------------------------------------------------------


def _unique_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, path in pairs:
        if name in result and result[name] != path:
            raise ValueError(f"stack {name!r} given twice with different paths: {result[name]!r}, {path!r}")
        result[name] = path
    return result


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


def _stack_exists(connection: Connection, name: str) -> bool:
    query = select(func.count()).select_from(schema.stacks).where(schema.stacks.c.name == name)
    return connection.execute(query).scalar_one() == 1


def _existing(row: Row | None, what: str) -> Row:
    """The row a statement in this same transaction just wrote or locked: missing is a bug."""
    if row is None:
        raise LookupError(f"{what} vanished inside its own transaction")
    return row


def _new_id(result: Any) -> int:
    """The primary key of the row an INSERT just wrote."""
    key = result.inserted_primary_key
    if key is None:
        raise LookupError("the database returned no key for the inserted row")
    return int(key[0])


def _select_run(connection: Connection, run_id: int, *, for_update: bool = False) -> Row | None:
    query = select(schema.runs).where(schema.runs.c.id == run_id)
    if for_update:
        query = query.with_for_update()
    return connection.execute(query).first()


def _append_event(
    connection: Connection,
    run_id: int,
    at: datetime,
    from_status: RunStatus | None,
    to_status: RunStatus,
    message: str,
) -> None:
    connection.execute(
        insert(schema.run_events).values(
            run_id=run_id,
            at=at,
            from_status=from_status.value if from_status else None,
            to_status=to_status.value,
            message=message,
        )
    )


def _upsert_meta(connection: Connection, key: str, value: Any, now: datetime) -> Executable:
    dialect = connection.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"the store supports SQLite and PostgreSQL, not {dialect}")
    dialect_insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = dialect_insert(schema.meta).values(key=key, value=value, updated_at=now)
    return statement.on_conflict_do_update(
        index_elements=[schema.meta.c.key],
        set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
    )


# Values that older versions declared and never wrote, read as what they would have meant, so
# that a database holding one still reads: a run blocked by policy did not apply; a remediation
# was the apply of a drift plan.
_LEGACY_STATUSES = {"blocked": RunStatus.FAILED}
_LEGACY_KINDS = {"remediate": RunKind.DRIFT}


def _status(value: str) -> RunStatus:
    return _LEGACY_STATUSES.get(value) or RunStatus(value)


def _kind(value: str) -> RunKind:
    return _LEGACY_KINDS.get(value) or RunKind(value)


def _run_from_row(row: Row) -> Run:
    return Run(
        id=row.id,
        stack=row.stack,
        kind=_kind(row.kind),
        status=_status(row.status),
        trigger=Trigger.from_dict(row.trigger),
        commit_sha=row.commit_sha,
        plan_sha256=row.plan_sha256,
        summary=row.summary,
        log_path=row.log_path,
        exit_code=row.exit_code,
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        decided_by=row.decided_by,
    )


def _stack_from_row(row: Row) -> StackState:
    return StackState(
        name=row.name,
        path=row.path,
        head_sha=row.head_sha,
        applied_sha=row.applied_sha,
        drift=DriftState(row.drift),
        drift_checked_at=row.drift_checked_at,
        updated_at=row.updated_at,
        # StackState has no drift_summary field; it travels in `extra` so models.py stays as is.
        extra={"drift_summary": row.drift_summary} if row.drift_summary is not None else {},
    )


# -- outbox, decisions and audit rows (pure where possible) -----------------------------------------


def _is_pending() -> ColumnElement[bool]:
    return schema.outbox.c.status == OutboxStatus.PENDING.value


def _due_heads(now: datetime, channel: str | None = None) -> Select:
    """The oldest pending item of each channel, when it is due at ``now``, oldest first."""
    heads = select(func.min(schema.outbox.c.id).label("id")).where(_is_pending())
    if channel is not None:
        heads = heads.where(schema.outbox.c.channel == channel)
    head_ids = heads.group_by(schema.outbox.c.channel).subquery()
    return (
        select(schema.outbox)
        .join(head_ids, schema.outbox.c.id == head_ids.c.id)
        .where(schema.outbox.c.next_attempt_at <= now)
        .order_by(schema.outbox.c.id)
    )


def _select_outbox(connection: Connection, item_id: int, *, for_update: bool = False) -> Row | None:
    query = select(schema.outbox).where(schema.outbox.c.id == item_id)
    if for_update:
        query = query.with_for_update()
    return connection.execute(query).first()


def _clip_error(error: str) -> str:
    if len(error) <= MAX_OUTBOX_ERROR_CHARS:
        return error
    return error[:MAX_OUTBOX_ERROR_CHARS] + " … (clipped)"


def _upsert_slack_message(
    connection: Connection, run_id: int, channel: str, ts: str, now: datetime
) -> Executable:
    dialect = connection.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"the store supports SQLite and PostgreSQL, not {dialect}")
    dialect_insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = dialect_insert(schema.slack_messages).values(
        run_id=run_id, channel=channel, ts=ts, updated_at=now
    )
    return statement.on_conflict_do_update(
        index_elements=[schema.slack_messages.c.run_id],
        set_={
            "channel": statement.excluded.channel,
            "ts": statement.excluded.ts,
            "updated_at": statement.excluded.updated_at,
        },
    )


def _already_counts(connection: Connection, run_id: int, actor_id: str, decision: DecisionKind) -> bool:
    query = (
        select(func.count())
        .select_from(schema.decisions)
        .where(
            schema.decisions.c.run_id == run_id,
            schema.decisions.c.actor_id == actor_id,
            schema.decisions.c.decision == decision.value,
            schema.decisions.c.outcome == DecisionOutcome.COUNTED.value,
        )
    )
    return connection.execute(query).scalar_one() > 0


def _first_per_actor(decisions: Iterable[Decision]) -> list[Decision]:
    seen: set[str] = set()
    first: list[Decision] = []
    for decision in decisions:
        if decision.actor_id not in seen:
            seen.add(decision.actor_id)
            first.append(decision)
    return first


def _outbox_item_from_row(row: Row) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        channel=row.channel,
        run_id=row.run_id,
        kind=OutboxKind(row.kind),
        payload=row.payload,
        status=OutboxStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
        result=row.result,
    )


def _decision_from_row(row: Row) -> Decision:
    return Decision(
        id=row.id,
        run_id=row.run_id,
        decision=DecisionKind(row.decision),
        actor_id=row.actor_id,
        actor_name=row.actor_name,
        source=DecisionSource(row.source),
        commit_sha=row.commit_sha,
        plan_sha256=row.plan_sha256,
        at=row.at,
        outcome=DecisionOutcome(row.outcome),
        reason=row.reason,
    )


def _audit_entry_from_row(row: Row) -> AuditEntry:
    return AuditEntry(
        id=row.id,
        at=row.at,
        actor_id=row.actor_id,
        actor_name=row.actor_name,
        action=row.action,
        run_id=row.run_id,
        detail=row.detail,
    )
