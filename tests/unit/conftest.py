"""Fixtures shared by the store tests.

Every store scenario runs on SQLite and on PostgreSQL. The PostgreSQL server is a throwaway
cluster started once per session (tests/pgserver.py), or the database named by
TFOPS_TEST_POSTGRES_URL (one the tests may wipe). Without server binaries the PostgreSQL variants
skip with that reason, except in CI (CI=true), where that is a failure: CI never skips them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgserver import start_or_skip
from sqlalchemy import create_engine, text

from tfops.store import Store


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    url = os.environ.get("TFOPS_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    server = start_or_skip()
    try:
        yield server.url
    finally:
        server.stop()


def empty_postgres_url(url: str) -> str:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return empty_postgres_url(request.getfixturevalue("postgres_url"))
    return Store.sqlite_url(tmp_path / "state" / "tfops.db")


@pytest.fixture
def postgres_store_url(postgres_url: str) -> str:
    """An empty PostgreSQL database, for a scenario that is about PostgreSQL alone."""
    return empty_postgres_url(postgres_url)


@pytest.fixture
def store(store_url: str):
    """A migrated store with two stacks, `network` and `dns` (a test module may define its own)."""
    store = Store(store_url)
    store.upgrade()
    store.sync_stacks([("network", "stacks/network"), ("dns", "stacks/dns")])
    yield store
    store.close()
