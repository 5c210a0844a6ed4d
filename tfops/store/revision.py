"""Which schema revision a store holds, and which this tfops expects, without importing Alembic.

Alembic (and the migration scripts it loads) costs more than everything else a read-only command
does, so reading the store only compares two sets of revision ids: the ones recorded in the
``alembic_version`` table (a plain query) and the heads of the migration chain (read from the
scripts' text). Alembic is imported only when there is something to migrate
(:meth:`tfops.store.engine.StoreBase.upgrade`). A test checks the heads against Alembic's own.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from sqlalchemy import Connection, inspect, text

from tfops.errors import TerminalError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

VERSIONS_DIR = MIGRATIONS_DIR / "versions"
VERSION_TABLE = "alembic_version"

# `revision: str = "0004_status_reason"` and `down_revision: str | None = "0003"` (or a tuple of
# ids, for a merge) at the start of a line, as `alembic revision` writes them.
_ASSIGNMENT = re.compile(r"^(revision|down_revision)\s*(?::[^=\n]*)?=\s*(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


class StoreSchemaError(TerminalError):
    """The store's schema is not the one this tfops reads: a person must migrate or upgrade."""


class StoreNeedsMigration(StoreSchemaError):
    hint = "run `tfops db upgrade` (or start the daemon, which migrates at start), then try again"


class StoreTooNew(StoreSchemaError):
    hint = "the store was migrated by a newer tfops: use that version (or restore a backup)"


@functools.cache
def _chain(versions_dir: Path) -> tuple[frozenset[str], frozenset[str]]:
    """Every revision of the migration scripts in ``versions_dir``, and the heads among them."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in versions_dir.glob("*.py"):
        for name, value in _ASSIGNMENT.findall(script.read_text(encoding="utf-8")):
            (revisions if name == "revision" else parents).update(_QUOTED.findall(value))
    return frozenset(revisions), frozenset(revisions - parents)


def head_revisions(versions_dir: Path = VERSIONS_DIR) -> frozenset[str]:
    """The revisions no other revision builds on: what a fully migrated store records."""
    return _chain(versions_dir)[1]


def known_revisions(versions_dir: Path = VERSIONS_DIR) -> frozenset[str]:
    return _chain(versions_dir)[0]


def recorded_revisions(connection: Connection) -> frozenset[str] | None:
    """The revisions the store records; None when it has no schema at all (never migrated)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    rows = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    return frozenset(row[0] for row in rows)


def check_current(recorded: frozenset[str] | None) -> bool:
    """True when the store is at the heads; False when it has no schema yet (nothing to lose by
    creating it); raises when it holds data in a schema this tfops must not read as it is."""
    if recorded is None:
        return False
    if recorded == head_revisions():
        return True
    unknown = sorted(recorded - known_revisions())
    if unknown:
        raise StoreTooNew(f"the store's schema is at revision {', '.join(unknown)}, unknown to this tfops")
    have = ", ".join(sorted(recorded)) or "none"
    want = ", ".join(sorted(head_revisions()))
    raise StoreNeedsMigration(f"the store's schema is at revision {have}; this tfops reads revision {want}")
