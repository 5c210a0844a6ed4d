"""The store's connection to its database: engine, sessions, migrations, shared row helpers.

Every store method opens its own short transaction through :meth:`StoreBase._reading` or
:meth:`StoreBase._writing`; one engine (one connection pool) is shared by every thread of the
daemon. On SQLite a writing transaction takes the write lock when it begins (``BEGIN
IMMEDIATE``), so a read-then-write check cannot be overtaken between its SELECT and its UPDATE;
on PostgreSQL the same checks lock the rows they read (``SELECT ... FOR UPDATE``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection, Engine, Row, Table, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql import Executable

from tfops.store.outages import connect_through_outages
from tfops.store.revision import MIGRATIONS_DIR, check_current, head_revisions, recorded_revisions

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["MIGRATIONS_DIR", "SQLITE_BUSY_TIMEOUT_MS", "StoreBase", "utc_now"]

# How long the daemon's store calls wait for a PostgreSQL server that does not answer (a restart).
OUTAGE_WAIT = 120.0

# How long a SQLite connection waits for another writer before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000

# PostgreSQL advisory lock held while migrating: "tfops-mg" as a 64-bit integer.
_MIGRATION_LOCK_KEY = int.from_bytes(b"tfops-mg", "big")

# Execution option that marks a connection as about to write (see _on_sqlite_begin).
_WRITE_OPTION = "tfops_write"

_Data = TypeVar("_Data", bound="DataclassInstance")


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoreBase:
    """The engine and the sessions every table's methods share; see :class:`tfops.store.Store`."""

    def __init__(self, url: str, *, outage_wait: float = 0.0) -> None:
        """`outage_wait`: how long a call waits for a database server that does not answer or
        dropped its session (a PostgreSQL restart; see tfops.store.outages) before it raises: the
        daemon waits (OUTAGE_WAIT), a reading command answers at once; SQLite has no server."""
        parsed = make_url(url)
        self._outage_wait = 0.0
        if parsed.get_backend_name() == "sqlite":
            self._engine = _sqlite_engine(parsed)
        else:
            from tfops.store.schema import with_postgresql_options

            with_postgresql_options()
            self._engine = create_engine(parsed, pool_pre_ping=True)
            self._outage_wait = outage_wait
        # Serializes upgrade() inside this process; the database lock covers other processes.
        self._upgrade_lock = threading.Lock()

    @classmethod
    def sqlite_url(cls, path: Path) -> str:
        """A SQLAlchemy URL for a SQLite file, safe for any characters in the path."""
        return URL.create("sqlite", database=str(Path(path).absolute())).render_as_string(hide_password=False)

    def upgrade(self) -> None:
        """Bring the schema to the newest migration; a no-op when it is there already.

        Alembic is imported only when there is something to migrate (see tfops.store.revision)."""
        with self._reading() as connection:
            if recorded_revisions(connection) == head_revisions():
                return
        from alembic import command
        from alembic.config import Config

        config = Config()
        # ConfigParser interpolates '%': escape it so any directory name works.
        config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
        with self._upgrade_lock, self._writing() as connection:
            if connection.dialect.name == "postgresql":
                # Several daemons may start together on one database (tfops.ha): one migrates, the
                # others wait here and then find nothing left to do. SQLite's write lock does this.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                if recorded_revisions(connection) == head_revisions():
                    return
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def open_for_reading(self) -> None:
        """Make sure the schema is the one this tfops reads, without migrating data a running
        daemon of another version may depend on: a store with no schema yet is created; one at
        an older or newer revision raises (StoreNeedsMigration, StoreTooNew) with what to do."""
        with self._reading() as connection:
            current = check_current(recorded_revisions(connection))
        if not current:
            self.upgrade()

    def _connect(self) -> Connection:
        if not self._outage_wait:
            return self._engine.connect()
        return connect_through_outages(self._engine, self._outage_wait)

    def ping(self) -> bool:
        """True when the database answers a trivial query (readiness check)."""
        try:
            with self._engine.connect() as connection:
                return connection.execute(text("SELECT 1")).scalar_one() == 1
        except SQLAlchemyError:
            return False

    def close(self) -> None:
        self._engine.dispose()

    @property
    def engine(self) -> Engine:
        """The underlying engine, for tests and `tfops db` tooling; not for queries elsewhere."""
        return self._engine

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._connect() as connection:
            yield connection

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._connect() as connection:
            connection.execution_options(**{_WRITE_OPTION: True})
            with connection.begin():
                yield connection


# -- SQLite --------------------------------------------------------------------------------------------


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    # The scheduler's worker threads share the pool; sqlite3 connections may move between threads
    # as long as only one uses a connection at a time, which the pool guarantees.
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take BEGIN away from the sqlite3 module (which skips it before SELECT) so that
    # _on_sqlite_begin decides how each transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        # synchronous stays FULL (the default): a terminal status must survive a power cut.
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    # Writers take the write lock up front, so a read-then-write transaction cannot be
    # overtaken between its SELECT and its UPDATE (and never fails with BUSY_SNAPSHOT).
    # Readers use a deferred BEGIN and never block each other or, under WAL, a writer.
    writes = connection.get_execution_options().get(_WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


# -- rows shared by every table ------------------------------------------------------------------------


def existing(row: Row | None, what: str) -> Row:
    """The row a statement in this same transaction just wrote or locked: missing is a bug."""
    if row is None:
        raise LookupError(f"{what} vanished inside its own transaction")
    return row


def new_id(result: Any) -> int:
    """The primary key of the row an INSERT just wrote."""
    key = result.inserted_primary_key
    if key is None:
        raise LookupError("the database returned no key for the inserted row")
    return int(key[0])


def upsert(connection: Connection, table: Table, key_column: str, /, **values: Any) -> Executable:
    """Insert ``values``, or update the other columns of the row whose ``key_column`` matches."""
    dialect = connection.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"the store supports SQLite and PostgreSQL, not {dialect}")
    # Imported here: the PostgreSQL dialect alone costs a reading command more than its query.
    from sqlalchemy.dialects import postgresql, sqlite

    dialect_insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
    statement = dialect_insert(table).values(**values)
    return statement.on_conflict_do_update(
        index_elements=[table.c[key_column]],
        set_={name: statement.excluded[name] for name in values if name != key_column},
    )


def from_row(cls: type[_Data], row: Row, **converted: Any) -> _Data:
    """A ``cls`` whose fields are copied from the row's columns of the same names.

    ``converted`` gives the fields that need more than a copy (an enum, a legacy value);
    a field without a column keeps its default.
    """
    columns = row._mapping
    copied = {f.name: columns[f.name] for f in fields(cls) if f.name in columns and f.name not in converted}
    return cls(**copied, **converted)
