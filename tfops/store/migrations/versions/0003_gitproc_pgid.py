"""Runs remember the process group of their running Terraform: runs.pgid, runs.pgid_leader.

Revision ID: 0003_gitproc_pgid
Revises: 0002
Create Date: 2026-12-05

Two nullable columns, set while a Terraform command of the run is running and
cleared when it ends. After a crash (kill -9) the next start finds the group still
recorded and ends what is left of it (tfops.orphans). Existing runs get NULL: no
Terraform of theirs is running. Plain ALTER TABLE ADD/DROP COLUMN on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_gitproc_pgid"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("pgid", sa.Integer(), nullable=True))
    op.add_column("runs", sa.Column("pgid_leader", sa.String(200), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): batch mode would copy and drop `runs`, which the
    # foreign keys of run_events and outbox forbid.
    op.drop_column("runs", "pgid_leader")
    op.drop_column("runs", "pgid")
