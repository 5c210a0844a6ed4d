"""Set-based reads for deciding what a new commit deploys: every stack at once, and only what moved.

The poller asks the same two questions of every stack at each new head (the commit it was last
applied at, and its newest deploy run's commit and status). Asked stack by stack they cost
O(stacks) round-trips and decoded runs per commit. Here they are one read transaction: the
stacks' applied commits, and the deploy runs created or moved since the previous snapshot
(found from the runs' and run events' ids, both primary keys: every status change of a run
appends an event, see ``runs.py``). Only the first snapshot reads the newest deploy of every
stack from the whole runs table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, union

from tfops.models import RunKind, RunStatus
from tfops.store import schema
from tfops.store.engine import StoreBase
from tfops.store.runs import _status


@dataclass(frozen=True)
class DeployFacts:
    """What deciding a stack's deploy needs from the store, for one stack."""

    applied_sha: str | None
    last_deploy_sha: str | None = None  # the commit of the stack's newest deploy run
    last_deploy_status: RunStatus | None = None  # None: the stack has no deploy run


@dataclass(frozen=True)
class _Deploy:
    run_id: int
    commit_sha: str | None
    status: RunStatus


@dataclass(frozen=True)
class DeploySnapshot:
    """Every recorded stack's :class:`DeployFacts` at one moment, and where to read on from."""

    applied: Mapping[str, str | None]
    newest: Mapping[str, _Deploy]
    last_run_id: int
    last_event_id: int

    def facts(self) -> dict[str, DeployFacts]:
        return {name: self.get(name) for name in self.applied}

    def get(self, name: str) -> DeployFacts:
        deploy = self.newest.get(name)
        if deploy is None:
            return DeployFacts(applied_sha=self.applied.get(name))
        return DeployFacts(self.applied.get(name), deploy.commit_sha, deploy.status)


class DeploysMixin(StoreBase):
    """Reads for the poller's per-commit decision; part of :class:`tfops.store.Store`."""

    def deploy_facts(self, since: DeploySnapshot | None = None) -> DeploySnapshot:
        """Every recorded stack's applied commit and newest deploy run, in one read transaction.

        With `since` (an earlier snapshot of this store), only the deploy runs created or moved
        after it are read: the cost follows what happened, not the length of the history.
        """
        runs, events = schema.runs, schema.run_events
        with self._reading() as connection:  # one transaction: one consistent snapshot
            if connection.dialect.name != "sqlite":
                # SQLite commits ids in order (one writer at a time); elsewhere a sequence may
                # commit a lower id after a higher one, so read everything.
                since = None
            last_run_id = connection.execute(select(func.max(runs.c.id))).scalar() or 0
            last_event_id = connection.execute(select(func.max(events.c.id))).scalar() or 0
            applied = dict(
                connection.execute(select(schema.stacks.c.name, schema.stacks.c.applied_sha)).all()
            )
            newest = dict(since.newest) if since is not None else {}
            for deploy_stack, deploy in _deploys(connection, since):
                known = newest.get(deploy_stack)
                if known is None or deploy.run_id >= known.run_id:
                    newest[deploy_stack] = deploy
        return DeploySnapshot(applied, newest, last_run_id, last_event_id)


def _deploys(connection: Connection, since: DeploySnapshot | None) -> list[tuple[str, _Deploy]]:
    """(stack, deploy) for the newest deploy of each stack, or for those created or moved since."""
    runs, events = schema.runs, schema.run_events
    columns = select(runs.c.id, runs.c.stack, runs.c.commit_sha, runs.c.status)
    if since is None:
        newest = (
            select(func.max(runs.c.id))
            .where(runs.c.kind == RunKind.DEPLOY.value)
            .group_by(runs.c.stack)
            .scalar_subquery()
        )
        query = columns.where(runs.c.id.in_(newest))
    else:
        # A union of ids, not an OR of conditions: each side is a primary-key range, and the runs
        # are then looked up by id (an OR makes SQLite scan the whole runs table).
        created = select(runs.c.id).where(runs.c.id > since.last_run_id)
        moved = select(events.c.run_id).where(events.c.id > since.last_event_id)
        query = columns.where(runs.c.kind == RunKind.DEPLOY.value, runs.c.id.in_(union(created, moved)))
    rows = connection.execute(query.order_by(runs.c.id)).all()
    return [(row.stack, _Deploy(row.id, row.commit_sha, _status(row.status))) for row in rows]
