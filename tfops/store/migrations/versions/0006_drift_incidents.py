"""Drift incidents: drift_incidents, one row per stretch of drift of a stack.

Revision ID: 0006_drift_incidents
Revises: 0005_in_sync_at
Create Date: 2026-11-28

Only a new table: nothing existing changes. Written out in full rather than imported from
schema.py, like 0002, so this migration keeps creating the same table after schema.py moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_drift_incidents"
down_revision: str | None = "0005_in_sync_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drift_incidents",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stack", sa.String(200), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_run_id", sa.Integer(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_id", sa.Integer(), nullable=False),
        sa.Column("seen_count", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("resources", sa.JSON(), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("mentioned_run_id", sa.Integer(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_run_id", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.String(32), nullable=True),
        sa.Column("resolved_commit", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["stack"], ["stacks.name"], name="fk_drift_incidents_stack_stacks"),
        sa.ForeignKeyConstraint(["opened_run_id"], ["runs.id"], name="fk_drift_incidents_opened_run_id_runs"),
        sa.ForeignKeyConstraint(["last_run_id"], ["runs.id"], name="fk_drift_incidents_last_run_id_runs"),
        sa.ForeignKeyConstraint(
            ["mentioned_run_id"], ["runs.id"], name="fk_drift_incidents_mentioned_run_id_runs"
        ),
        sa.ForeignKeyConstraint(
            ["resolved_run_id"], ["runs.id"], name="fk_drift_incidents_resolved_run_id_runs"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_drift_incidents"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_drift_incidents_stack_id", "drift_incidents", ["stack", "id"])


def downgrade() -> None:
    op.drop_index("ix_drift_incidents_stack_id", table_name="drift_incidents")
    op.drop_table("drift_incidents")
