"""Sync windows on a run's way to its apply: pure decisions, beside `policy.decide`.

`decide` says whether a plan is applied; these say whether it is applied now. A plan `decide`
would apply outside the stack's windows waits (`Action.WAIT`: `awaiting_window`); a plan people
approved outside them waits too, its approvals kept; `tfops deploy --override-window` (the run's
trigger) applies at once, recorded as an override. A run released by the wake-up job (reason
`window_opened`) is not asked again: the job saw its window open.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from tfops.models import Run, RunReason, Stack
from tfops.policy import Action, Decision
from tfops.windows import Hold, action_for, hold, is_open

OVERRIDE = "overridden by `tfops deploy --override-window`"
# How long a release by the wake-up job holds without asking the windows again: the apply starts
# within seconds, unless the daemon stopped in between (and its successor may be in a freeze).
RELEASE_GRACE = timedelta(minutes=10)


def outside_window(stack: Stack, run: Run, now: datetime) -> Hold | None:
    """Why `run` may not apply at `now`, or None when it may (a plan never applies: None)."""
    action = action_for(run.kind)
    return None if action is None else hold(stack.windows, action, now)


def may_apply_now(stack: Stack, run: Run, now: datetime) -> bool:
    """`outside_window(...) is None`, cheaply: for the wake-up job, which asks every tick."""
    action = action_for(run.kind)
    return action is None or is_open(stack.windows, action, now)


def windowed(decision: Decision, stack: Stack, run: Run, now: datetime) -> Decision:
    """`decide`'s answer for a fresh plan, with the stack's sync windows applied to an apply."""
    if decision.action is not Action.APPLY:
        return decision
    held = outside_window(stack, run, now)
    if held is None:
        return decision
    if run.trigger.override_window:
        return Decision(
            Action.APPLY, f"{decision.reason}; {held.reason}; {OVERRIDE}", RunReason.WINDOW_OVERRIDDEN
        )
    return Decision(Action.WAIT, f"{decision.reason}; {held.reason}", RunReason.WINDOW_CLOSED)


def cleared_apply(run: Run, stack: Stack, now: datetime, *, released_at: datetime | None = None) -> Decision:
    """For a run cleared to apply its saved plan (approved, or released by its window): apply now
    (with what its move to `applying` says), or wait for a window. `released_at`: when it was
    released; a release older than `RELEASE_GRACE` (the daemon stopped in between) is asked again."""
    approved = f"applying the plan approved by {run.decided_by}"
    fresh = released_at is not None and now - released_at <= RELEASE_GRACE
    if run.reason is RunReason.WINDOW_OPENED and fresh:
        if run.decided_by is None:
            return Decision(
                Action.APPLY, "the sync window is open: applying the saved plan", RunReason.WINDOW_OPENED
            )
        return Decision(Action.APPLY, f"the sync window is open: {approved}", RunReason.WINDOW_OPENED)
    held = outside_window(stack, run, now)
    if held is None:
        return Decision(Action.APPLY, approved, RunReason.APPROVED)
    if run.trigger.override_window:
        return Decision(Action.APPLY, f"{approved}; {held.reason}; {OVERRIDE}", RunReason.WINDOW_OVERRIDDEN)
    return Decision(Action.WAIT, f"approved by {run.decided_by}; {held.reason}", RunReason.WINDOW_CLOSED)
