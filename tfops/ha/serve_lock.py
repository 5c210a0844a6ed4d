"""One `tfops serve` per SQLite database file, and one per data directory: an OS lock for life.

The lock is an exclusive `flock` on a sidecar file next to the database (`tfops.db.serve-lock`),
or in the data directory for a server database. The kernel drops it when the process ends in any
way (kill -9 included), so a crashed daemon never leaves a stale lock behind, and nothing needs to
be cleaned up by hand. The file also holds the pid of the holder, for the refusal's message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import TextIO

from sqlalchemy.engine import make_url

from tfops.errors import TerminalError

POSTGRES_HINT = (
    "to run several daemons (failover, scale-out), give them one PostgreSQL database: "
    "store.url: postgresql+psycopg://USER@HOST/DB (see docs/ha.md); "
    "otherwise stop the other daemon first"
)


class AlreadyServing(TerminalError):
    """Another `tfops serve` holds this SQLite file or this data directory."""


def sqlite_file(store_url: str) -> Path | None:
    """The database file of a SQLite URL; None for a server database or an in-memory one."""
    url = make_url(store_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def lock_path(store_url: str, data_dir: Path) -> Path:
    database = sqlite_file(store_url)
    if database is not None:
        return database.with_name(database.name + ".serve-lock")
    return Path(data_dir) / "serve.lock"


class ServeLock:
    """Taken by `take()` (AlreadyServing when another process holds it), held until `release()`
    or the end of the process."""

    def __init__(self, store_url: str, data_dir: Path) -> None:
        self.path = lock_path(store_url, data_dir)
        self._database = sqlite_file(store_url)
        self._handle: TextIO | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def take(self) -> None:
        if self._handle is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            handle.close()
            raise self._refusal(holder) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the file drops its flock
            self._handle = None

    def _refusal(self, holder: str) -> AlreadyServing:
        who = f"another tfops serve (pid {holder})" if holder else "another tfops serve"
        if self._database is not None:
            return AlreadyServing(
                f"{who} already uses the SQLite store {self._database}; SQLite holds one daemon",
                hint=POSTGRES_HINT,
            )
        return AlreadyServing(
            f"{who} already uses the data directory {self.path.parent}",
            hint="each daemon sharing a PostgreSQL store needs its own data_dir",
        )


def _holder(handle: TextIO) -> str:
    with contextlib.suppress(OSError):
        handle.seek(0)
        text = handle.read().strip()
        if text.isdigit():
            return text
    return ""
