"""The stacks and meta tables: what tfops remembers between runs.

A stack's row holds the branch head last seen, the commit last applied and the last drift
check; ``meta`` holds small JSON facts under a key (the last fetch, the stacks refused).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select, update

from tfops.errors import TerminalError
from tfops.models import DriftState, StackState
from tfops.store import schema
from tfops.store.engine import StoreBase, from_row, upsert, utc_now


class StackNotFound(TerminalError):
    hint = "stacks are recorded when the daemon loads its configuration; check the stack name"


class StacksMixin(StoreBase):
    """Stacks and meta facts; part of :class:`tfops.store.Store`."""

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

    def set_drift(
        self,
        name: str,
        state: DriftState,
        *,
        summary: dict[str, Any] | None = None,
        seen_at: datetime | None = None,
    ) -> None:
        """Record a drift check's outcome; ``summary`` must already be redacted. ``seen_at``: when
        the infrastructure was seen in this state (default now); an in-sync state records it as
        the moment the stack was last in sync, from which drift attribution looks."""
        now = utc_now()
        values: dict[str, Any] = {"drift": DriftState(state).value, "drift_checked_at": now}
        if DriftState(state) is DriftState.IN_SYNC:
            values["in_sync_at"] = seen_at or now
        self._update_stack(name, drift_summary=summary, now=now, **values)

    def _update_stack(self, name: str, *, now: datetime | None = None, **values: Any) -> None:
        with self._writing() as connection:
            result = connection.execute(
                update(schema.stacks)
                .where(schema.stacks.c.name == name)
                .values(**values, updated_at=now or utc_now())
            )
            if result.rowcount != 1:
                raise StackNotFound(f"stack {name!r} is not recorded in the store")

    # -- meta ----------------------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any | None:
        with self._reading() as connection:
            return connection.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == key)
            ).scalar_one_or_none()

    def set_meta(self, key: str, value: Any) -> None:
        """Store a small JSON-serialisable value under ``key``, replacing any previous one."""
        with self._writing() as connection:
            connection.execute(
                upsert(connection, schema.meta, "key", key=key, value=value, updated_at=utc_now())
            )


def stack_exists(connection: Connection, name: str) -> bool:
    query = select(func.count()).select_from(schema.stacks).where(schema.stacks.c.name == name)
    return connection.execute(query).scalar_one() == 1


def _unique_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, path in pairs:
        if name in result and result[name] != path:
            raise ValueError(f"stack {name!r} given twice with different paths: {result[name]!r}, {path!r}")
        result[name] = path
    return result


def _stack_from_row(row: Row) -> StackState:
    # StackState has no drift_summary field; it travels in `extra` so models.py stays as is.
    extra = {"drift_summary": row.drift_summary} if row.drift_summary is not None else {}
    return from_row(StackState, row, drift=DriftState(row.drift), extra=extra)
