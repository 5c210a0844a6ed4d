"""Alembic environment for the tfops store.

tfops runs migrations programmatically (``Store.upgrade``): there is no alembic.ini
and no logging configuration here. The caller passes an open connection, already
inside a transaction that holds the write lock, in ``config.attributes["connection"]``,
so the whole upgrade commits or rolls back as one and two daemons cannot migrate at
once on SQLite.

To write a new migration during development, point Alembic at this directory with a
URL, e.g. ``alembic -x url=sqlite:///tmp/dev.db revision --autogenerate -m "..."``
after building a Config whose script_location is this folder.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from tfops.store.schema import metadata


def _configure_and_run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        # The store starts every SQLite transaction itself, so DDL is transactional there too.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no connection given: pass one in config.attributes or -x url=...")
    engine = create_engine(url)
    try:
        with engine.begin() as own_connection:
            _configure_and_run(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("tfops migrations run online only (Store.upgrade / `tfops db upgrade`)")
run_migrations_online()
