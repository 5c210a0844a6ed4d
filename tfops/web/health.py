"""Liveness and readiness: `GET /healthz` and `GET /readyz`.

- `/healthz` answers 200 as long as the process serves HTTP at all. It reads nothing, so a slow or
  broken database never makes a supervisor restart a daemon that a restart would not fix.
- `/readyz` answers 200 when the daemon is doing its job, 503 with the reasons when not:

      store      the database answers
      scheduler  the job scheduler runs
      fetch      a git fetch succeeded within the last 3 poll intervals; right after start, before
                 the first success, the daemon has 3 poll intervals of grace

  and one check that degrades but never fails readiness (the daemon still deploys every other stack):

      stacks     no stack is refused at the head (a folder symlinked out of the repository, a
                 configured folder gone, a name clash); when some are, the answer is still 200 with
                 `"status": "degraded"` and a `warnings` line naming each refused stack and why

  With several daemons on one store (tfops.ha), the answer also carries this daemon's `role` and
  the `instances` (id, host, role, last heartbeat, runs in flight), and a follower passes the fetch
  check without fetching: the leader polls.

  The decision is `readiness(facts)`, a pure function; the route only gathers the facts (through
  the daemon's callable) and turns the result into JSON. A reason says that the last fetch failed,
  never git's error: that names the remote URL and local paths, and these routes are open to anyone
  who reaches the listener (the daemon's log has the error).

Neither route is authenticated; both say little (no commits, no host paths; only refused stacks are
named, with their repository path, so that whoever watches the probe sees what to fix), but keep the
listener on loopback or behind a proxy all the same.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from tfops.config import format_duration
from tfops.ha.shown_role import shown_role
from tfops.models import Instance

log = logging.getLogger(__name__)

HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
FETCH_INTERVALS = 3  # missed polls tolerated before the daemon counts as blind to the repository
FAILED_CHECK_REASON = "readiness check failed"
LAST_FETCH_FAILED = "the last fetch failed — see the daemon's log"
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class ReadinessFacts:
    """What the daemon knows about itself right now; all datetimes timezone-aware."""

    store_ok: bool
    scheduler_running: bool
    last_fetch_ok_at: datetime | None  # the last successful fetch of this process, if any
    last_fetch_error: str | None  # the last fetch failure, if any: only whether there is one is shown
    poll_interval: float  # seconds
    started_at: datetime
    now: datetime
    refused_stacks: tuple[str, ...] = ()  # one line per stack refused at the head, naming it and why
    leader: bool = True  # this daemon leads (tfops.ha); a follower does not fetch: the leader polls
    instances: tuple[Instance, ...] = ()  # the daemons sharing the store, leader first
    failover: float | None = None  # seconds (ha.failover): an instance silent longer is presumed dead

    def __post_init__(self) -> None:
        for name in ("last_fetch_ok_at", "started_at", "now"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware (UTC), not {value!r}")
        if not self.poll_interval > 0:
            raise ValueError(f"poll_interval must be more than 0 seconds, not {self.poll_interval!r}")


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: tuple[str, ...]  # one per failed check, in check order; empty when ready
    checks: Mapping[str, bool]  # check name → passed
    warnings: tuple[str, ...] = ()  # what degrades the daemon without making it unready

    @property
    def status(self) -> str:
        if not self.ready:
            return "not ready"
        return "degraded" if self.warnings else "ready"


def readiness(facts: ReadinessFacts) -> Readiness:
    """Whether the daemon is ready, each check's result, why not, and what degrades it."""
    results = (
        ("store", None if facts.store_ok else "the store (database) is not reachable"),
        ("scheduler", None if facts.scheduler_running else "the scheduler is not running"),
        ("fetch", fetch_problem(facts)),
    )
    checks = {name: reason is None for name, reason in results}
    checks["stacks"] = not facts.refused_stacks
    reasons = tuple(reason for _, reason in results if reason is not None)
    return Readiness(ready=not reasons, reasons=reasons, checks=checks, warnings=facts.refused_stacks)


def fetch_problem(facts: ReadinessFacts) -> str | None:
    """Why the fetch check fails, or None when a fetch succeeded recently enough (or in the grace),
    or when this daemon follows (the leader fetches)."""
    if not facts.leader:
        return None
    window = FETCH_INTERVALS * facts.poll_interval
    allowed = f"{FETCH_INTERVALS} poll intervals, {format_duration(window)}"
    last_ok = facts.last_fetch_ok_at
    if last_ok is not None and last_ok >= facts.started_at:
        age = (facts.now - last_ok).total_seconds()
        if age <= window:
            return None
        problem = f"the last successful git fetch was {_ago(age)} ago, more than {allowed}"
    else:
        # A success recorded before this process started says nothing about the daemon that runs now.
        uptime = (facts.now - facts.started_at).total_seconds()
        if uptime <= window:
            return None
        problem = f"no successful git fetch since the start {_ago(uptime)} ago (allowed: {allowed})"
    if facts.last_fetch_error:
        problem += f"; {LAST_FETCH_FAILED}"
    return problem


def health_router(facts: Callable[[], ReadinessFacts]) -> APIRouter:
    """`GET /healthz` (alive) and `GET /readyz` (ready, from `facts()` gathered at each request)."""
    router = APIRouter(tags=["observability"])
    failures = _FailureLog()

    @router.get(HEALTHZ_PATH, summary="Liveness: the process serves HTTP")
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok"}, headers=_NO_STORE)

    # A plain `def`: gathering the facts may query the store, so it runs on the thread pool.
    @router.get(
        READYZ_PATH,
        summary="Readiness: store reachable, scheduler running, repository fetched recently",
        responses={503: {"description": "not ready; `reasons` says why"}},
    )
    def readyz() -> JSONResponse:
        try:
            gathered = facts()
            result = readiness(gathered)
        except Exception:  # noqa: BLE001 - a probe must get an answer, whatever broke
            failures.failed()
            return _not_ready({}, (FAILED_CHECK_REASON,))
        failures.recovered()
        if not result.ready:
            return _not_ready(result.checks, result.reasons, result.warnings, gathered)
        body: dict[str, object] = {"status": result.status, "checks": dict(result.checks)}
        if result.warnings:
            body["warnings"] = list(result.warnings)
        return JSONResponse({**body, **_instances(gathered)}, headers=_NO_STORE)

    return router


def _not_ready(
    checks: Mapping[str, bool],
    reasons: tuple[str, ...],
    warnings: tuple[str, ...] = (),
    facts: ReadinessFacts | None = None,
) -> JSONResponse:
    body: dict[str, object] = {"status": "not ready", "checks": dict(checks), "reasons": list(reasons)}
    if warnings:
        body["warnings"] = list(warnings)
    if facts is not None:
        body.update(_instances(facts))
    return JSONResponse(body, status_code=503, headers=_NO_STORE)


def _instances(facts: ReadinessFacts) -> dict[str, object]:
    """This daemon's role and the instances sharing its store (id, host, role, last heartbeat,
    runs in flight); nothing when no instance is registered (a store without `tfops serve`)."""
    if not facts.instances:
        return {}
    return {
        "role": "leader" if facts.leader else "follower",
        "instances": [
            {
                "id": instance.id,
                "host": instance.host,
                "role": shown_role(instance, facts.now, facts.failover),  # a silent leader is none
                "heartbeat_at": instance.heartbeat_at.isoformat(),
                "runs_in_flight": instance.runs_in_flight,
            }
            for instance in facts.instances
        ],
    }


class _FailureLog:
    """Logs the first failure of a streak with its traceback; probes repeat every few seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing = False

    def failed(self) -> None:
        with self._lock:
            first, self._failing = not self._failing, True
        if first:
            log.error("readiness: gathering the facts failed; answering 503", exc_info=True)
        else:
            log.debug("readiness: gathering the facts still fails", exc_info=True)

    def recovered(self) -> None:
        with self._lock:
            was_failing, self._failing = self._failing, False
        if was_failing:
            log.info("readiness: gathering the facts works again")


def _ago(seconds: float) -> str:
    return format_duration(round(seconds))
