"""``store:``: the database tfops keeps its runs in (SQLite under data_dir unless set)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator

from tfops.config.fields import FileRelative, Section

_DATABASE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+_-]*://")
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def mask_url_password(url: str) -> str:
    """``postgresql://tfops:s3cret@db/tfops`` → ``postgresql://tfops:***@db/tfops``."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def _database_url(url: str) -> str:
    url = url.strip()
    if not _DATABASE_URL.match(url):
        raise ValueError(
            "must be a database URL such as sqlite:////var/lib/tfops/tfops.db or postgresql://host/db"
        )
    return url


def _anchor_sqlite(value: Any, anchor: Callable[[Any], Any]) -> Any:
    prefix = "sqlite:///"
    if isinstance(value, str) and value.startswith(prefix) and value[len(prefix) :] not in ("", ":memory:"):
        return prefix + anchor(value[len(prefix) :])
    return value


class StoreSettings(Section):
    url: Annotated[str, AfterValidator(_database_url), FileRelative(_anchor_sqlite)] | None = None

    def __repr_args__(self):  # a PostgreSQL URL may hold a password
        yield "url", mask_url_password(self.url) if self.url else None
