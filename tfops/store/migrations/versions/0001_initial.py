"""Initial schema: stacks, runs, run_events, meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Written out in full rather than imported from schema.py, so this migration keeps
creating the same tables after schema.py moves on. Timestamps are plain
DateTime(timezone=True) here: the UTC handling of schema.UTCDateTime happens in
Python and needs nothing in the database.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stacks",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("head_sha", sa.String(64), nullable=True),
        sa.Column("applied_sha", sa.String(64), nullable=True),
        sa.Column("drift", sa.String(32), nullable=False),
        sa.Column("drift_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("drift_summary", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_stacks"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("stack", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("trigger", sa.JSON(), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("plan_sha256", sa.String(64), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("log_path", sa.Text(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(["stack"], ["stacks.name"], name="fk_runs_stack_stacks"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_stack_id", "runs", ["stack", "id"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_events_run_id_runs"),
        sa.PrimaryKeyConstraint("id", name="pk_run_events"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_run_events_run_id_id", "run_events", ["run_id", "id"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_meta"),
    )


def downgrade() -> None:
    op.drop_table("meta")
    op.drop_index("ix_run_events_run_id_id", table_name="run_events")
    op.drop_table("run_events")
    op.drop_index("ix_runs_status", table_name="runs")
    op.drop_index("ix_runs_stack_id", table_name="runs")
    op.drop_table("runs")
    op.drop_table("stacks")
