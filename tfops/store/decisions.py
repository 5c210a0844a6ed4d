"""The decisions and audit_log tables: who approved or rejected what, and who did what.

Both are append-only: a decision is recorded as given, whether it counted or not, and an
audit entry is never changed or removed by tfops.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, Table, func, insert, select

from tfops.models import DecisionKind, DecisionOutcome, DecisionSource
from tfops.store import schema
from tfops.store.engine import StoreBase, from_row, new_id, utc_now
from tfops.store.runs import require_run


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


class DecisionsMixin(StoreBase):
    """Approvals, rejections and the audit log; part of :class:`tfops.store.Store`."""

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
            require_run(connection, run_id, for_update=True)
            if outcome is DecisionOutcome.COUNTED and _already_counts(connection, run_id, actor_id, decision):
                outcome = DecisionOutcome.DUPLICATE
                reason = f"{actor_name or actor_id}'s {decision} of run {run_id} already counts"
            row = _insert_and_read(
                connection,
                schema.decisions,
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
        with self._writing() as connection:
            row = _insert_and_read(
                connection,
                schema.audit_log,
                at=utc_now(),
                actor_id=actor_id,
                actor_name=actor_name,
                action=action,
                run_id=run_id,
                detail=detail,
            )
            return from_row(AuditEntry, row)

    def audit_entries(self, limit: int = 100) -> list[AuditEntry]:
        """The newest audit entries first."""
        query = select(schema.audit_log).order_by(schema.audit_log.c.id.desc()).limit(limit)
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [from_row(AuditEntry, row) for row in rows]

    def _select_decisions(self, *conditions: Any) -> list[Decision]:
        query = select(schema.decisions).where(*conditions).order_by(schema.decisions.c.id)
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [_decision_from_row(row) for row in rows]


def _insert_and_read(connection: Connection, table: Table, **values: Any) -> Row:
    """Insert a row keyed by ``id`` and read it back as the database stored it."""
    row_id = new_id(connection.execute(insert(table).values(**values)))
    return connection.execute(select(table).where(table.c.id == row_id)).one()


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


def _decision_from_row(row: Row) -> Decision:
    return from_row(
        Decision,
        row,
        decision=DecisionKind(row.decision),
        source=DecisionSource(row.source),
        outcome=DecisionOutcome(row.outcome),
    )
