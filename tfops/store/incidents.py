"""The drift_incidents table: one row per stretch of drift of a stack (tfops.incidents).

A stack has at most one open incident (resolved_at NULL): its newest row. Each method is one
short transaction; `track_drift` and `resolve_incident` read the open incident and write the
step in the same transaction, so two writers can never open two incidents for one stack.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from tfops.incidents import (
    DriftedResource,
    DriftSeen,
    Incident,
    IncidentChange,
    Resolution,
    Step,
    after_drift_check,
)
from tfops.store import schema
from tfops.store.engine import StoreBase, from_row, new_id

_T = schema.drift_incidents


class IncidentsMixin(StoreBase):
    """Drift incidents; part of :class:`tfops.store.Store`."""

    def open_incident(self, stack: str) -> Incident | None:
        with self._reading() as connection:
            return _open_incident(connection, stack)

    def open_incidents(self) -> list[Incident]:
        """Every open incident, oldest first."""
        query = select(_T).where(_T.c.resolved_at.is_(None)).order_by(_T.c.id)
        with self._reading() as connection:
            return [_incident_from_row(row) for row in connection.execute(query)]

    def get_incident(self, incident_id: int) -> Incident | None:
        with self._reading() as connection:
            row = connection.execute(select(_T).where(_T.c.id == incident_id)).first()
        return _incident_from_row(row) if row else None

    def incident_of_run(self, stack: str, run_id: int) -> Incident | None:
        """The incident the run last saw (or opened, or resolved), if any."""
        query = (
            select(_T)
            .where(_T.c.stack == stack, (_T.c.last_run_id == run_id) | (_T.c.resolved_run_id == run_id))
            .order_by(_T.c.id.desc())
            .limit(1)
        )
        with self._reading() as connection:
            row = connection.execute(query).first()
        return _incident_from_row(row) if row else None

    def track_drift(self, stack: str, seen: DriftSeen) -> IncidentChange | None:
        """Take the step a drift run's finding takes on the stack's incident; None: no incident."""
        with self._writing() as connection:
            current = _open_incident(connection, stack, for_update=True)
            step = after_drift_check(current, seen)
            if step is Step.NONE:
                return None
            if step is Step.RESOLVE:
                assert current is not None
                values = _resolved(seen.run_id, seen.at, Resolution.CHANGED_BACK, seen.commit_sha)
                return IncidentChange(step, _write(connection, current.id, values))
            if step is Step.OPEN:
                return IncidentChange(step, _insert(connection, stack, seen))
            assert current is not None
            values = {
                "last_seen_at": seen.at,
                "last_run_id": seen.run_id,
                "seen_count": _T.c.seen_count + 1,
                "commit_sha": seen.commit_sha,
            }
            if step is Step.REMENTION:
                resources = [resource.to_dict() for resource in seen.resources]
                values |= {
                    "fingerprint": seen.fingerprint,
                    "resources": resources,
                    "mentioned_run_id": seen.run_id,
                }
            return IncidentChange(step, _write(connection, current.id, values))

    def resolve_incident(
        self, stack: str, run_id: int, at: datetime, resolution: Resolution, commit_sha: str | None
    ) -> IncidentChange | None:
        """Close the stack's open incident, saying how; None when none was open."""
        with self._writing() as connection:
            current = _open_incident(connection, stack, for_update=True)
            if current is None:
                return None
            values = _resolved(run_id, at, resolution, commit_sha)
            return IncidentChange(Step.RESOLVE, _write(connection, current.id, values))


def _resolved(run_id: int, at: datetime, resolution: Resolution, commit_sha: str | None) -> dict[str, Any]:
    return {
        "resolved_at": at,
        "resolved_run_id": run_id,
        "resolution": resolution.value,
        "resolved_commit": commit_sha,
    }


def _open_incident(connection: Connection, stack: str, *, for_update: bool = False) -> Incident | None:
    query = (
        select(_T).where(_T.c.stack == stack, _T.c.resolved_at.is_(None)).order_by(_T.c.id.desc()).limit(1)
    )
    if for_update:
        query = query.with_for_update()
    row = connection.execute(query).first()
    return _incident_from_row(row) if row else None


def _insert(connection: Connection, stack: str, seen: DriftSeen) -> Incident:
    result = connection.execute(
        insert(_T).values(
            stack=stack,
            opened_at=seen.at,
            opened_run_id=seen.run_id,
            last_seen_at=seen.at,
            last_run_id=seen.run_id,
            seen_count=1,
            fingerprint=seen.fingerprint,
            resources=[resource.to_dict() for resource in seen.resources],
            commit_sha=seen.commit_sha,
            mentioned_run_id=seen.run_id,
        )
    )
    return _read(connection, new_id(result))


def _write(connection: Connection, incident_id: int, values: dict[str, Any]) -> Incident:
    connection.execute(update(_T).where(_T.c.id == incident_id).values(**values))
    return _read(connection, incident_id)


def _read(connection: Connection, incident_id: int) -> Incident:
    return _incident_from_row(connection.execute(select(_T).where(_T.c.id == incident_id)).one())


def _incident_from_row(row: Row) -> Incident:
    return from_row(
        Incident,
        row,
        resources=tuple(DriftedResource.from_dict(item) for item in row.resources or ()),
        resolution=Resolution(row.resolution) if row.resolution else None,
    )
