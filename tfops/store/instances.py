"""The instances table: every `tfops serve` alive on this store, its heartbeat and its role.

A daemon registers at start, beats every `ha.heartbeat` seconds and removes its row when it stops
cleanly. A row whose heartbeat is older than `ha.failover` belongs to an instance that died (kill
-9, its VM, its network): the leader settles its runs (tfops.ha.instances) and removes the row.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import delete, func, insert, select, update

from tfops.models import IN_FLIGHT_STATUSES, Instance, InstanceRole, Run, RunStatus
from tfops.store import schema
from tfops.store.engine import StoreBase, from_row, utc_now

_T = schema.instances


class InstancesMixin(StoreBase):
    """Instances and their heartbeats; part of :class:`tfops.store.Store`."""

    def register_instance(
        self, instance_id: str, host: str, pid: int, *, now: datetime | None = None
    ) -> None:
        """Record this daemon as a follower (it leads once its leadership says so); a row of the
        same id left by a previous process of this instance is replaced."""
        now = now or utc_now()
        with self._writing() as connection:
            connection.execute(delete(_T).where(_T.c.id == instance_id))
            connection.execute(
                insert(_T).values(
                    id=instance_id,
                    host=host,
                    pid=pid,
                    started_at=now,
                    heartbeat_at=now,
                    role=InstanceRole.FOLLOWER.value,
                )
            )

    def beat(self, instance_id: str, role: InstanceRole, *, now: datetime | None = None) -> bool:
        """Refresh the heartbeat and the role; False when the row is gone (declared dead meanwhile)."""
        with self._writing() as connection:
            result = connection.execute(
                update(_T)
                .where(_T.c.id == instance_id)
                .values(heartbeat_at=now or utc_now(), role=InstanceRole(role).value)
            )
        return result.rowcount == 1

    def remove_instance(self, instance_id: str) -> None:
        with self._writing() as connection:
            connection.execute(delete(_T).where(_T.c.id == instance_id))

    def instances(self) -> list[Instance]:
        """Every registered instance with its runs in flight, leader first, then by id."""
        in_flight = [status.value for status in IN_FLIGHT_STATUSES]
        counts = (
            select(schema.runs.c.instance_id, func.count().label("n"))
            .where(schema.runs.c.status.in_(in_flight), schema.runs.c.instance_id.is_not(None))
            .group_by(schema.runs.c.instance_id)
        )
        with self._reading() as connection:
            rows = connection.execute(select(_T).order_by(_T.c.id)).all()
            flying = {row.instance_id: row.n for row in connection.execute(counts)}
        found = [
            from_row(Instance, row, role=_role(row.role), runs_in_flight=flying.get(row.id, 0))
            for row in rows
        ]
        return sorted(found, key=lambda instance: instance.role is not InstanceRole.LEADER)

    def expired_instances(self, older_than: float, *, now: datetime | None = None) -> list[str]:
        """The ids of instances whose last heartbeat is more than `older_than` seconds old."""
        limit = (now or utc_now()) - timedelta(seconds=older_than)
        with self._reading() as connection:
            return list(connection.execute(select(_T.c.id).where(_T.c.heartbeat_at < limit)).scalars())

    def runs_of_instance(self, instance_id: str, statuses: Collection[RunStatus]) -> list[Run]:
        """The instance's runs in any of `statuses`, oldest first."""
        from tfops.store.runs import run_from_row

        values = [RunStatus(status).value for status in statuses]
        query = (
            select(schema.runs)
            .where(schema.runs.c.instance_id == instance_id, schema.runs.c.status.in_(values))
            .order_by(schema.runs.c.id)
        )
        with self._reading() as connection:
            return [run_from_row(row) for row in connection.execute(query)]


def _role(value: str) -> InstanceRole:
    try:
        return InstanceRole(value)
    except ValueError:  # written by a newer tfops
        return InstanceRole.FOLLOWER
