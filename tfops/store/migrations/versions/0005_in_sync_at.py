"""A stack remembers when it was last seen in sync with its code: stacks.in_sync_at.

Revision ID: 0005_in_sync_at
Revises: 0004_status_reason
Create Date: 2026-11-28

Drift attribution asks CloudTrail for the write events since that moment: earlier events cannot
have caused the drift. Existing rows get NULL (not known: the lookup reaches back the 90 days
CloudTrail keeps). Plain ALTER TABLE ADD/DROP COLUMN on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_in_sync_at"
down_revision: str | None = "0004_status_reason"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stacks", sa.Column("in_sync_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as in 0003 and 0004.
    op.drop_column("stacks", "in_sync_at")
