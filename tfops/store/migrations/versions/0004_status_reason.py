"""Runs and their events say why a status was reached: runs.reason, run_events.reason.

Revision ID: 0004_status_reason
Revises: 0003_gitproc_pgid
Create Date: 2026-11-28

One short word from a fixed set (tfops.models.RunReason) next to the free-text message, so that
metrics and notifications can group runs by why they ended. Existing rows get NULL: their
message still says why. Plain ALTER TABLE ADD/DROP COLUMN on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_status_reason"
down_revision: str | None = "0003_gitproc_pgid"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("reason", sa.String(32), nullable=True))
    op.add_column("run_events", sa.Column("reason", sa.String(32), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as in 0003: batch mode would copy tables that others
    # reference.
    op.drop_column("run_events", "reason")
    op.drop_column("runs", "reason")
