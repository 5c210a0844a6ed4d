"""The persistent store: SQLAlchemy schema, queries and Alembic migrations.

SQLite (WAL) by default; the schema is written to run unchanged on PostgreSQL.
Only redacted data is ever given to the store.
"""

from tfops.store.store import (
    InvalidTransition,
    RunEvent,
    RunNotFound,
    StackBusy,
    StackNotFound,
    Store,
)

__all__ = ["InvalidTransition", "RunEvent", "RunNotFound", "StackBusy", "StackNotFound", "Store"]
