"""Store calls that outlive a PostgreSQL restart: the daemon's calls wait for the server and run again.

Two things go wrong when PostgreSQL restarts under the daemon, and both are waited out with one
backoff, within the store's `outage_wait` (the daemon's OUTAGE_WAIT; a reading command's store
has 0 and fails at once):

- connecting fails while the server is down (:func:`connect_through_outages`); nothing was sent,
  so nothing can happen twice;
- a statement is cut off because the server dropped the session (``pg_ctl restart -m fast``
  terminates the backends: SQLAlchemy reports a disconnect, ``connection_invalidated``). The
  server rolls back a transaction it did not commit, so the whole store method (one transaction)
  is run again once the server is back (:func:`run_through_outages`).

The one ambiguous moment is a disconnect while COMMIT is in flight: the first attempt may have
committed. :meth:`tfops.store.runs.RunsMixin.transition` recognises its own committed attempt;
the residual for other writes is described in docs/decisions.md.

:func:`wrap_public_methods` applies this to every public method of the store's table mixins, in
one place (tfops/store/store.py), rather than in every method.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)

__all__ = [
    "connect_through_outages",
    "is_disconnect",
    "retries_itself",
    "run_through_outages",
    "wrap_public_methods",
]

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])

_FIRST_DELAY = 0.2
_MAX_DELAY = 5.0

# The deadline of the store call this thread is running through an outage: a nested store call and
# the reconnects inside it share it, so one call never waits longer than `outage_wait` in all.
_current = threading.local()

# Marks a method that applies run_through_outages itself (it needs to know which attempt it is).
_RETRIES_ITSELF = "_tfops_retries_itself"


def is_disconnect(exc: BaseException) -> bool:
    """True when SQLAlchemy's dialect recognised the error as the server dropping the connection."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class _Backoff:
    """Doubling pauses until a deadline; each pause is logged with the error's first line only
    (never the URL or a password: a driver's message may quote its connection string below)."""

    def __init__(self, deadline: float) -> None:
        self._deadline = deadline
        self._delay = _FIRST_DELAY

    def pause(self, exc: BaseException, what: str) -> bool:
        """Wait before the next attempt and return True, or False when the deadline is reached."""
        if time.monotonic() + self._delay > self._deadline:
            return False
        log.warning("%s; trying again in %.1fs: %s", what, self._delay, first_line(exc))
        time.sleep(self._delay)
        self._delay = min(self._delay * 2, _MAX_DELAY)
        return True


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _deadline(wait: float) -> float:
    current: float | None = getattr(_current, "deadline", None)
    return current if current is not None else time.monotonic() + wait


def connect_through_outages(engine: Engine, wait: float) -> Connection:
    """A connection, retried with backoff while the server does not answer (up to `wait` seconds,
    or what is left of the running store call's). `pool_pre_ping` makes a pooled connection that
    died with the old server fail here too, before anything is sent on it."""
    backoff = _Backoff(_deadline(wait))
    while True:
        try:
            return engine.connect()
        except OperationalError as exc:
            if not backoff.pause(exc, "the database does not answer"):
                raise


def run_through_outages(call: Callable[[int], _T], wait: float) -> _T:
    """``call(attempt)``, run again (attempt 2, 3, ...) when the server dropped the connection under
    it, with backoff, for up to `wait` seconds; any other error is raised at once.

    `call` must be one transaction: the server rolled back what it did not commit. Inside a store
    call that is already retried (a nested call) it runs once: the outer call runs them again."""
    if wait <= 0 or getattr(_current, "deadline", None) is not None:
        return call(1)
    _current.deadline = time.monotonic() + wait
    try:
        backoff = _Backoff(_current.deadline)
        attempt = 1
        while True:
            try:
                return call(attempt)
            except DBAPIError as exc:
                if not is_disconnect(exc) or not backoff.pause(exc, "the database went away mid-transaction"):
                    raise
            attempt += 1
    finally:
        _current.deadline = None


def retries_itself(method: _F) -> _F:
    """Mark a store method that calls run_through_outages itself, so wrap_public_methods leaves it."""
    setattr(method, _RETRIES_ITSELF, True)
    return method


def wrap_public_methods(store_class: type, base: type) -> None:
    """Run every public method that `store_class` gets from its mixins (the classes between it and
    `base`) through run_through_outages, with the instance's `_outage_wait`. `base`'s own methods
    (ping, close, upgrade) are left as they are: they must answer at once or run before the daemon."""
    for mixin in reversed(store_class.__mro__):
        if mixin is store_class or not issubclass(mixin, base) or mixin is base:
            continue
        for name, attribute in vars(mixin).items():
            if name.startswith("_") or not inspect.isfunction(attribute):
                continue
            if getattr(attribute, _RETRIES_ITSELF, False):
                continue
            setattr(store_class, name, _through_outages(attribute))


def _through_outages(method: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> _T:
        return run_through_outages(lambda _attempt: method(self, *args, **kwargs), self._outage_wait)

    return call
