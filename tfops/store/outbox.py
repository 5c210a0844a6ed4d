"""The outbox and slack_messages tables: Slack delivery, in order, at most one resend.

Slack delivery goes through the ``outbox`` table. The store's guarantees there:
items of one channel are handed out strictly in id order, one at a time (only
the oldest pending item of a channel is ever due, so a failing item holds back
the ones behind it until it is sent or marked failed); :meth:`OutboxMixin.claim_next`
leases that item in a write transaction, so two senders never hold it at once;
:meth:`OutboxMixin.mark_sent` records the result (and, for a run's post, Slack's
``ts``) in one transaction. A crash between Slack's answer and ``mark_sent``
therefore resends at most the one claimed item per channel, once its lease ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update
from sqlalchemy.sql import ColumnElement, Executable, Select

from tfops.errors import TerminalError
from tfops.models import OutboxKind, OutboxStatus
from tfops.store import schema
from tfops.store.engine import StoreBase, existing, from_row, new_id, upsert, utc_now
from tfops.store.runs import RunNotFound, require_run, select_run

# How long a claimed item is held by its sender before another may take it. Must exceed the
# longest delivery attempt, including any waiting the Slack client does inside one call.
DEFAULT_CLAIM_LEASE = timedelta(minutes=2)

# Delivery errors are kept for people to read; an HTML error page from a proxy need not be.
MAX_OUTBOX_ERROR_CHARS = 2000

# Channels whose heads claim_next tries in one transaction before giving up (PostgreSQL races).
_CLAIM_CANDIDATES = 8


class OutboxItemNotFound(TerminalError):
    hint = "outbox items are never deleted; check the id the sender holds"


class OutboxItemNotPending(TerminalError):
    """A retry or failure was recorded for an item that is already sent or failed."""

    hint = "another sender finished this item first; nothing to do"


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


class OutboxMixin(StoreBase):
    """The Slack outbox and the message of each run; part of :class:`tfops.store.Store`."""

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
            if run_id is not None and select_run(connection, run_id) is None:
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
            return new_id(result)

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
                        existing(_select_outbox(connection, candidate.id), "outbox item")
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
            row = _require_outbox(connection, item_id)
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
            row = _require_outbox(connection, item_id)
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
            require_run(connection, run_id)
            connection.execute(_upsert_slack_message(connection, run_id, channel, ts, utc_now()))

    def get_slack_message(self, run_id: int) -> SlackMessage | None:
        query = select(schema.slack_messages).where(schema.slack_messages.c.run_id == run_id)
        with self._reading() as connection:
            row = connection.execute(query).first()
        return from_row(SlackMessage, row) if row else None


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


def _require_outbox(connection: Connection, item_id: int) -> Row:
    """The item's row, locked (PostgreSQL) until the commit, or OutboxItemNotFound."""
    row = _select_outbox(connection, item_id, for_update=True)
    if row is None:
        raise OutboxItemNotFound(f"outbox item {item_id} does not exist")
    return row


def _clip_error(error: str) -> str:
    if len(error) <= MAX_OUTBOX_ERROR_CHARS:
        return error
    return error[:MAX_OUTBOX_ERROR_CHARS] + " … (clipped)"


def _upsert_slack_message(
    connection: Connection, run_id: int, channel: str, ts: str, now: datetime
) -> Executable:
    return upsert(
        connection, schema.slack_messages, "run_id", run_id=run_id, channel=channel, ts=ts, updated_at=now
    )


def _outbox_item_from_row(row: Row) -> OutboxItem:
    return from_row(OutboxItem, row, kind=OutboxKind(row.kind), status=OutboxStatus(row.status))
