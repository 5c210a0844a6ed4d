"""Set-based reads for deciding what a new commit deploys: one query for every stack at once.

The poller asks the same two questions of every stack at each new head (the commit it was last
applied at, and its newest deploy run's commit and status). Asked stack by stack they cost
O(stacks) round-trips and decoded runs per commit; here they are one query whose rows carry
only those columns (no trigger JSON to decode).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

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


class DeploysMixin(StoreBase):
    """Reads for the poller's per-commit decision; part of :class:`tfops.store.Store`."""

    def deploy_facts(self) -> dict[str, DeployFacts]:
        """Every recorded stack's applied commit and newest deploy run, by name, in one query."""
        runs = schema.runs
        newest = (
            select(runs.c.stack, func.max(runs.c.id).label("id"))
            .where(runs.c.kind == RunKind.DEPLOY.value)
            .group_by(runs.c.stack)
            .subquery()
        )
        query = (
            select(schema.stacks.c.name, schema.stacks.c.applied_sha, runs.c.commit_sha, runs.c.status)
            .select_from(schema.stacks)
            .outerjoin(newest, newest.c.stack == schema.stacks.c.name)
            .outerjoin(runs, runs.c.id == newest.c.id)
        )
        with self._reading() as connection:
            rows = connection.execute(query).all()
        return {
            row.name: DeployFacts(
                applied_sha=row.applied_sha,
                last_deploy_sha=row.commit_sha,
                last_deploy_status=_status(row.status) if row.status is not None else None,
            )
            for row in rows
        }
