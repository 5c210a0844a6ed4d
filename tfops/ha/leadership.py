"""Who leads: the one instance that runs the poller, the drift timers, approval expiry and Slack.

`Leadership` is the Protocol the daemon uses; there are two implementations:

- `SqliteLeadership`: always the leader. One daemon per SQLite file is guaranteed by the serve lock
  (`tfops.ha.serve_lock`), which `start()` takes: a second daemon stops there.
- `PostgresLeadership`: a session-level advisory lock (`pg_try_advisory_lock`) held on a dedicated
  connection. The server releases it when that session ends: the process dies (the kernel closes
  the socket), or the connection is lost (TCP keepalives, set here to give up well within
  `ha.failover`). `check()` is called at every heartbeat: it confirms the lock with a query on the
  same session, or tries to take it.

Fencing. `is_leader()` is true only while the last confirmation is younger than the lease
(`LEASE_BEATS` heartbeats). The server releases a lost session only after its keepalives give up,
which takes longer than the lease (see `_keepalives`), so a leader cut off from the database stops
scheduling (every job asks `is_leader()` when it fires) before anyone else can take the lock.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from tfops.ha.serve_lock import ServeLock

log = logging.getLogger(__name__)

# The advisory lock's key: "tfops-ld" as a signed 64-bit integer. Advisory locks are per database,
# so two tfops estates on two databases of one server do not meet.
LEADER_LOCK_KEY = int.from_bytes(b"tfops-ld", "big")
# How many heartbeats a confirmation of the lock is trusted for.
LEASE_BEATS = 2


class Leadership(Protocol):
    """Whether this daemon leads; `check()` at every heartbeat, `is_leader()` whenever a job fires."""

    def start(self) -> None:
        """Take what serving needs (the serve lock); raises AlreadyServing when refused."""

    def check(self) -> bool:
        """Confirm or try to take the leadership now; returns `is_leader()`."""

    def is_leader(self) -> bool: ...

    def close(self) -> None:
        """Give the leadership (and the serve lock) up; safe to call again."""


class SqliteLeadership:
    """One daemon per SQLite file, so it always leads. A one-shot command (no `start()`) leads too:
    it sends its own Slack messages and applies what it was asked to."""

    def __init__(self, serve_lock: ServeLock) -> None:
        self.serve_lock = serve_lock

    def start(self) -> None:
        self.serve_lock.take()

    def check(self) -> bool:
        return True

    def is_leader(self) -> bool:
        return True

    def close(self) -> None:
        self.serve_lock.release()


class PostgresLeadership:
    """The advisory lock on a connection of its own (not from the store's pool: a pooled connection
    goes back to the pool, and a session-level lock with it)."""

    def __init__(
        self,
        url: str,
        serve_lock: ServeLock,
        *,
        heartbeat: float,
        failover: float,
        clock: Callable[[], float] = time.monotonic,
        key: int = LEADER_LOCK_KEY,
    ) -> None:
        self.serve_lock = serve_lock
        self.heartbeat = heartbeat
        self.lease = LEASE_BEATS * heartbeat
        self.clock = clock
        self.key = key
        self._engine: Engine = create_engine(url, poolclass=NullPool, connect_args=_connect_args(failover))
        self._failover = failover
        self._connection: Connection | None = None
        self._confirmed_at: float | None = None  # clock() of the last confirmation, while held
        self._failing = False  # the last check could not reach the database (logged once)

    def start(self) -> None:
        self.serve_lock.take()

    def check(self) -> bool:
        try:
            self._confirm_or_take()
        except SQLAlchemyError as exc:
            if self._confirmed_at is not None:
                log.error("the leader lock's database connection failed: %s", _first_line(exc))
            elif not self._failing:
                log.warning("cannot reach the database for the leader lock: %s", _first_line(exc))
            self._failing = True
            self._drop()
            return False
        self._failing = False
        return self.is_leader()

    def is_leader(self) -> bool:
        confirmed = self._confirmed_at
        return confirmed is not None and self.clock() - confirmed < self.lease

    def close(self) -> None:
        self._drop()  # ending the session releases the lock at once
        self._engine.dispose()
        self.serve_lock.release()

    def _confirm_or_take(self) -> None:
        connection = self._connection or self._connect()
        asked = self.clock()
        if self._confirmed_at is not None:
            connection.execute(text("SELECT 1")).scalar_one()  # the session, and so the lock, lives
            self._confirmed_at = asked
            return
        if connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self.key}).scalar_one():
            self._confirmed_at = asked

    def _connect(self) -> Connection:
        connection = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        for name, value in _session_settings(self.heartbeat, self._failover).items():
            connection.execute(text(f"SET {name} = {int(value)}"))  # our own integers, not input
        self._connection = connection
        return connection

    def _drop(self) -> None:
        self._confirmed_at = None
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.invalidate()  # never back to a pool: the session must end
                connection.close()
            except SQLAlchemyError:
                pass


def _keepalives(failover: float) -> tuple[int, int, int]:
    """(idle, interval, count) in whole seconds: the server gives a silent client up after
    idle + interval * count, about 0.7 of `failover`: always after the lease (LEASE_BEATS
    heartbeats, 0.4 of it), so the old leader has stopped first, and early enough that a follower's
    next heartbeat still takes over within `failover`."""
    target = 0.7 * failover
    idle = max(1, math.floor(target / 2))
    interval = max(1, math.floor((target - idle) / 3))
    count = max(1, min(3, math.floor((target - idle) / interval)))
    return idle, interval, count


def _session_settings(heartbeat: float, failover: float) -> dict[str, int]:
    """What the server does with this session: give a silent client up within `failover` (so the
    lock is freed), and never let the lock's check wait longer than a heartbeat."""
    idle, interval, count = _keepalives(failover)
    return {
        "tcp_keepalives_idle": idle,
        "tcp_keepalives_interval": interval,
        "tcp_keepalives_count": count,
        "statement_timeout": max(1, int(heartbeat * 1000)),
    }


def _connect_args(failover: float) -> dict[str, int]:
    """The client side of the same: libpq's keepalives and a connect timeout (psycopg)."""
    idle, interval, count = _keepalives(failover)
    return {
        "connect_timeout": max(2, math.ceil(failover / 3)),
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": count,
    }


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def leadership_for(store_url: str, serve_lock: ServeLock, *, heartbeat: float, failover: float) -> Leadership:
    """PostgreSQL elects a leader; SQLite has one daemon, which leads."""
    if store_url.startswith("postgresql"):
        return PostgresLeadership(store_url, serve_lock, heartbeat=heartbeat, failover=failover)
    return SqliteLeadership(serve_lock)
