"""Fixtures shared by the store tests.

Set TFOPS_TEST_POSTGRES_URL (a PostgreSQL database the tests may wipe) to run the store
scenarios on PostgreSQL as well; without it those variants are skipped with that reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tfops.store import Store


def empty_postgres_url() -> str:
    url = os.environ.get("TFOPS_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("TFOPS_TEST_POSTGRES_URL is not set")
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return empty_postgres_url()
    return Store.sqlite_url(tmp_path / "state" / "tfops.db")
