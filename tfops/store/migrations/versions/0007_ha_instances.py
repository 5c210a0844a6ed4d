"""Several daemons on one store: instances, runs.instance_id, one working run per stack.

Revision ID: 0007_ha_instances
Revises: 0006_drift_incidents
Create Date: 2026-11-28

- `instances`: one row per `tfops serve` alive on this store (its heartbeat and its role).
- `runs.instance_id`: the instance that works on a run (NULL for runs before this migration and
  for runs no instance took yet).
- `uq_runs_stack_working`: a partial unique index, so the database itself refuses a second
  `planning`/`applying` run on a stack, whichever process asks. SQLite and PostgreSQL both have
  partial indexes. Written out in full, not imported from schema.py (see 0002).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_ha_instances"
down_revision: str | None = "0006_drift_incidents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WORKING = sa.text("status IN ('planning', 'applying')")


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(100), nullable=False),
        sa.Column("host", sa.String(200), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
    )
    op.add_column("runs", sa.Column("instance_id", sa.String(100), nullable=True))
    op.create_index(
        "uq_runs_stack_working",
        "runs",
        ["stack"],
        unique=True,
        sqlite_where=_WORKING,
        postgresql_where=_WORKING,
    )


def downgrade() -> None:
    op.drop_index("uq_runs_stack_working", table_name="runs")
    op.drop_column("runs", "instance_id")  # plain DROP COLUMN (SQLite 3.35+), as in 0005
    op.drop_table("instances")
