"""The tables of the tfops store, written once for SQLite and PostgreSQL.

Portability rules, so the same schema runs on both without edits:

- enums are stored as VARCHAR holding the ``StrEnum`` value; the store validates
  them in Python, so adding a status never needs an ``ALTER TYPE`` or a rebuilt
  CHECK constraint;
- JSON columns use ``sqlalchemy.JSON`` (TEXT on SQLite, JSON on PostgreSQL);
- timestamps are ``DateTime(timezone=True)`` through :class:`UTCDateTime`, which
  refuses naive datetimes on the way in and hands back aware UTC datetimes on the
  way out, even from SQLite, which keeps no zone;
- every constraint and index has a name from :data:`NAMING_CONVENTION`, so later
  migrations can drop or alter them by name on either database.

The Alembic migrations in ``migrations/versions`` create exactly these tables; a
test compares them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import SchemaItem
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Long enough for a SHA-256 Git object name; SHA-1 names (40) fit too.
SHA_LENGTH = 64
NAME_LENGTH = 200
STATUS_LENGTH = 32
INSTANCE_ID_LENGTH = 100
# The statuses of a run that works on its stack (models.WORKING_STATUSES), as SQL for the index.
WORKING_SQL = "status IN ('planning', 'applying')"


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL stores ``timestamptz``; SQLite stores the UTC wall time as text and
    the zone is put back on read. Naive datetimes are refused rather than guessed
    at, because a local time silently stored as UTC is a bug nobody notices.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; tfops stores aware UTC times")
        in_utc = value.astimezone(UTC)
        # SQLite's DATETIME ignores the zone; store UTC wall time so text order is time order.
        return in_utc.replace(tzinfo=None) if dialect.name == "sqlite" else in_utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> JSON:
    # Python None is SQL NULL, so "no summary" and "summary is null" do not differ.
    return JSON(none_as_null=True)


def _table_keyed_by_id(name: str, *items: SchemaItem) -> Table:
    """A table whose first column is an ``id`` SQLite never hands out twice (AUTOINCREMENT).

    Ids leave the database (run ids in Slack buttons, outbox ids as the delivery order, audit
    entries naming a run), so the id of a row gone must never come back for another.
    """
    return Table(
        name,
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        *items,
        sqlite_autoincrement=True,
    )


stacks = Table(
    "stacks",
    metadata,
    Column("name", String(NAME_LENGTH), primary_key=True),
    Column("path", Text, nullable=False),
    Column("head_sha", String(SHA_LENGTH), nullable=True),
    Column("applied_sha", String(SHA_LENGTH), nullable=True),
    Column("drift", String(STATUS_LENGTH), nullable=False),
    Column("drift_checked_at", UTCDateTime, nullable=True),
    Column("drift_summary", _json(), nullable=True),
    Column("in_sync_at", UTCDateTime, nullable=True),  # last seen in sync with its code (0005)
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

runs = _table_keyed_by_id(
    "runs",
    Column("stack", String(NAME_LENGTH), ForeignKey("stacks.name"), nullable=False),
    Column("kind", String(STATUS_LENGTH), nullable=False),
    Column("status", String(STATUS_LENGTH), nullable=False),
    Column("trigger", _json(), nullable=False),
    Column("commit_sha", String(SHA_LENGTH), nullable=True),
    Column("plan_sha256", String(SHA_LENGTH), nullable=True),
    Column("summary", _json(), nullable=True),
    Column("log_path", Text, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("decided_by", String(NAME_LENGTH), nullable=True),
    # The process group of the run's Terraform while one runs, and its leader's identity
    # (boot id and start time): after a crash the next start ends what is left of it (0003).
    Column("pgid", Integer, nullable=True),
    Column("pgid_leader", String(NAME_LENGTH), nullable=True),
    # Why the run is in its status (models.RunReason); NULL for runs moved before 0004.
    Column("reason", String(STATUS_LENGTH), nullable=True),
    # The `tfops serve` instance working on the run (0007); NULL before it is taken.
    Column("instance_id", String(INSTANCE_ID_LENGTH), nullable=True),
    Index(None, "stack", "id"),
    Index(None, "status"),
    # One planning or applying run per stack, refused by the database whichever process asks (0007).
    # Its PostgreSQL form is added by `with_postgresql_options`: naming a dialect's option here
    # would import that dialect, which costs a reading command on SQLite ~30 ms.
    Index("uq_runs_stack_working", "stack", unique=True, sqlite_where=text(WORKING_SQL)),
)

run_events = _table_keyed_by_id(
    "run_events",
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("from_status", String(STATUS_LENGTH), nullable=True),
    Column("to_status", String(STATUS_LENGTH), nullable=False),
    Column("message", Text, nullable=False),
    Column("reason", String(STATUS_LENGTH), nullable=True),  # models.RunReason; the message is the detail
    Index(None, "run_id", "id"),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(NAME_LENGTH), primary_key=True),
    Column("value", JSON(none_as_null=False), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

# -- Slack delivery and approvals (migration 0002) --------------------------------------------------

# Slack message timestamps ("1712345678.123456") are the message ids of the Web API.
SLACK_TS_LENGTH = 32

outbox = _table_keyed_by_id(
    "outbox",
    Column("channel", String(NAME_LENGTH), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=True),
    Column("kind", String(STATUS_LENGTH), nullable=False),
    Column("payload", _json(), nullable=False),
    Column("status", String(STATUS_LENGTH), nullable=False),
    Column("attempts", Integer, nullable=False),
    # When the item may next be tried; a claim pushes it forward as a lease (see Store.claim_next).
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("result", _json(), nullable=True),
    # The head of each channel's queue: min(id) per channel among pending items.
    Index(None, "status", "channel", "id"),
)

slack_messages = Table(
    "slack_messages",
    metadata,
    Column("run_id", Integer, ForeignKey("runs.id"), primary_key=True),
    Column("channel", String(NAME_LENGTH), nullable=False),
    Column("ts", String(SLACK_TS_LENGTH), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

decisions = _table_keyed_by_id(
    "decisions",
    Column("run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("decision", String(STATUS_LENGTH), nullable=False),
    Column("actor_id", String(NAME_LENGTH), nullable=False),
    Column("actor_name", String(NAME_LENGTH), nullable=True),
    Column("source", String(STATUS_LENGTH), nullable=False),
    Column("commit_sha", String(SHA_LENGTH), nullable=True),
    Column("plan_sha256", String(SHA_LENGTH), nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Column("outcome", String(STATUS_LENGTH), nullable=False),
    Column("reason", Text, nullable=True),
    Index(None, "run_id", "id"),
)

audit_log = _table_keyed_by_id(
    "audit_log",
    Column("at", UTCDateTime, nullable=False),
    Column("actor_id", String(NAME_LENGTH), nullable=False),
    Column("actor_name", String(NAME_LENGTH), nullable=True),
    Column("action", String(NAME_LENGTH), nullable=False),
    # Not a foreign key: the log keeps what was claimed, even a forged button's id of no run.
    Column("run_id", Integer, nullable=True),
    Column("detail", _json(), nullable=True),
)

# -- Drift incidents (migration 0006) ---------------------------------------------------------------

drift_incidents = _table_keyed_by_id(
    "drift_incidents",
    Column("stack", String(NAME_LENGTH), ForeignKey("stacks.name"), nullable=False),
    Column("opened_at", UTCDateTime, nullable=False),
    # Its Slack message is the message of the run that opened it.
    Column("opened_run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("last_seen_at", UTCDateTime, nullable=False),
    Column("last_run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("seen_count", Integer, nullable=False),
    Column("fingerprint", String(SHA_LENGTH), nullable=False),
    Column("resources", _json(), nullable=False),
    Column("commit_sha", String(SHA_LENGTH), nullable=True),
    Column("mentioned_run_id", Integer, ForeignKey("runs.id"), nullable=False),
    Column("resolved_at", UTCDateTime, nullable=True),
    Column("resolved_run_id", Integer, ForeignKey("runs.id"), nullable=True),
    Column("resolution", String(STATUS_LENGTH), nullable=True),
    Column("resolved_commit", String(SHA_LENGTH), nullable=True),
    # A stack's open incident: its newest row, while resolved_at is NULL.
    Index(None, "stack", "id"),
)

# -- Instances of `tfops serve` on this store (migration 0007) -------------------------------------

instances = Table(
    "instances",
    metadata,
    Column("id", String(INSTANCE_ID_LENGTH), primary_key=True),
    Column("host", String(NAME_LENGTH), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("role", String(STATUS_LENGTH), nullable=False),  # models.InstanceRole
)


def with_postgresql_options() -> None:
    """Give the metadata its PostgreSQL-only options (a store on PostgreSQL calls it; idempotent).
    The migrations create the same index themselves; this keeps the metadata what they create."""
    index = next(index for index in runs.indexes if index.name == "uq_runs_stack_working")
    index.dialect_kwargs["postgresql_where"] = text(WORKING_SQL)
