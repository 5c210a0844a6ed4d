"""When a stack's first drift check after a (re)start is due, from what the store remembers.

A drift timer resumes where the last one left off: a stack checked 10 minutes ago with a 1 h
interval is next checked in about 50 minutes, whether or not the daemon restarted meanwhile.
The rules, for a stack with interval `I` and jitter window `J = I * jitter`:

- *Last checked* is the stack's `drift_checked_at`: the last time tfops looked at its
  infrastructure and got an answer (a drift plan that finished, or a successful apply).
  Next check: last checked + I + uniform(0, J), the same jitter the timer adds afterwards.
- A drift run that *failed* after that (failed, timed out, interrupted) gave no answer: waiting
  a full interval would hide a broken stack for that long, and a restart is often the fix (new
  credentials, a new binary). It is retried J after it ended, spread over J.
- A drift run still *open* (queued, planning, awaiting approval) is resumed by recovery: it is
  this interval's check, so the next one is I after it was queued.
- A stack *never checked* is spread uniformly over one interval: a new estate (or a store from
  before drift checks) does not plan every stack at once.
- A check already overdue (the daemon was down) is spread over the next J rather than started
  at once; the queue bounds how many drift checks run together anyway.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from tfops.models import Run, RunStatus, StackState

# A drift run that ended in one of these never answered "drifted or not".
_NO_ANSWER = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.INTERRUPTED})


def first_drift_check(
    state: StackState | None,
    last_drift: Run | None,
    *,
    interval: float,
    jitter: float,
    now: datetime,
    rng: random.Random,
) -> datetime:
    """The moment the stack's drift timer should first fire, never before `now`."""
    window = max(interval * jitter, 1.0)
    checked = state.drift_checked_at if state is not None else None
    newer_run = _newer_than(last_drift, checked)
    if newer_run is not None and not newer_run.status.is_terminal:
        return _not_before(_when(newer_run) + timedelta(seconds=interval), now, window, rng)
    if newer_run is not None and newer_run.status in _NO_ANSWER:
        ended = newer_run.finished_at or _when(newer_run)
        return _not_before(ended + timedelta(seconds=window), now, window, rng)
    if checked is None:
        return now + timedelta(seconds=rng.uniform(0, interval))
    due = checked + timedelta(seconds=interval + rng.uniform(0, window))
    return _not_before(due, now, window, rng)


def _newer_than(run: Run | None, checked: datetime | None) -> Run | None:
    """The drift run, if it is the stack's latest word: queued after the last answer."""
    if run is None or run.created_at is None:
        return None
    if checked is not None and run.created_at <= checked:
        return None
    return run


def _when(run: Run) -> datetime:
    assert run.created_at is not None  # _newer_than only returns runs with one
    return run.created_at


def _not_before(due: datetime, now: datetime, window: float, rng: random.Random) -> datetime:
    """`due`, or a moment spread over the next window when it has passed."""
    if due > now:
        return due
    return now + timedelta(seconds=rng.uniform(0, window))
