"""Runs that carry a saved plan go to the instance that made it, whoever releases or approves them.

With several daemons, the leader's window wake-up job releases runs waiting for a sync window;
their saved plan is on the instance that planned them. `PlanHolderRouting` stands where the
scheduler expects the queue: a run planned here (or by no instance) is resumed here; one planned
elsewhere is only moved on (`awaiting_window -> approved`, reason `window_opened`, which the
worker trusts as the release), and its instance takes it in at its next heartbeat
(`tfops.ha.intake`), or the leader does if that instance is gone (then the plan is missing and
the run is superseded with a fresh plan).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

from tfops.models import Run, RunKind, RunStatus, Stack, Trigger
from tfops.store import InvalidTransition

log = logging.getLogger(__name__)


class Queue(Protocol):
    def submit(self, stack: str, kind: RunKind, trigger: Trigger, commit_sha: str) -> Run | None: ...

    def resume(self, runs: Iterable[Run]) -> None: ...


class Releasing(Protocol):
    def mark_window_open(self, run: Run) -> Run: ...


class PlanHolderRouting:
    def __init__(self, queue: Queue, transitions: Releasing, instance_id: str) -> None:
        self.queue = queue
        self.transitions = transitions
        self.instance_id = instance_id

    def submit(self, stack: str, kind: RunKind, trigger: Trigger, commit_sha: str) -> Run | None:
        return self.queue.submit(stack, kind, trigger, commit_sha)

    def resume(self, runs: Iterable[Run]) -> None:
        here = []
        for run in runs:
            if run.instance_id in (None, self.instance_id) or run.status is RunStatus.QUEUED:
                here.append(run)
            elif run.status is RunStatus.AWAITING_WINDOW:
                try:
                    self.transitions.mark_window_open(run)  # its instance takes it in and applies
                except InvalidTransition:
                    continue  # superseded or released meanwhile
                log.info("run %s: window open; released for instance %s", run.id, run.instance_id)
        if here:
            self.queue.resume(here)


class BindingCheck(Protocol):
    """`Reconciler.stale_binding`: why a run's saved plan may no longer be applied, or None."""

    def stale_binding(self, run: Run, stack: Stack) -> str | None: ...


class HolderBinding:
    """The approval desk's binding check with several daemons: the saved plan is a file on the
    instance that made it, so only that instance can compare its SHA-256 at the click. Elsewhere
    the click is recorded and the holder checks the whole binding (plan hash and branch) under
    the stack's lock just before it applies, as it does for every approved run: a stale plan is
    then superseded there instead of at the click, and never applied."""

    def __init__(self, binding: BindingCheck, instance_id: str) -> None:
        self.binding = binding
        self.instance_id = instance_id

    def stale_binding(self, run: Run, stack: Stack) -> str | None:
        if run.instance_id not in (None, self.instance_id):
            return None
        return self.binding.stale_binding(run, stack)
