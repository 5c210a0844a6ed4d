"""Runs queued by another instance reach this one: at every heartbeat (with several daemons).

The queued runs in the store, and the approved runs whose saved plan this instance made, go to this
instance's own `RunQueue` (`RunQueue.adopt`): the queue's admission rules pick among them as among
its own, and the store's claim (`queued -> planning`, one working run per stack) decides which
instance runs each. A follower does not poll; a run at a commit its clone does not have yet makes
it fetch (and discover the stacks again) before it takes the runs in, so that it plans what the
leader saw. Runs on a thread of its own: a slow fetch must never delay a heartbeat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from tfops.errors import TfopsError
from tfops.models import Run, RunStatus, Stack
from tfops.store import Store

log = logging.getLogger(__name__)


class Clone(Protocol):
    """What the intake asks of Git (`GitSource`)."""

    def is_on_branch(self, sha: str) -> bool: ...

    def fetch(self, *, checkout: bool = True) -> object: ...


class Stacks(Protocol):
    def refresh(self) -> Mapping[str, Stack]: ...


class Adopting(Protocol):
    def adopt(self, runs: Iterable[Run]) -> list[Run]: ...


class Intake:
    """Takes the store's runnable runs into this instance's queue; call it at every heartbeat."""

    def __init__(
        self,
        store: Store,
        queue: Adopting,
        git: Clone,
        registry: Stacks,
        instance_id: str,
        leading: Callable[[], bool] = lambda: False,
    ) -> None:
        self.leading = leading
        self.store = store
        self.queue = queue
        self.git = git
        self.registry = registry
        self.instance_id = instance_id
        self._known: set[str] = set()  # commits this clone has (a commit never leaves it)

    def __call__(self) -> list[Run]:
        runs = self.runnable()
        if not runs:
            return []
        commits = {run.commit_sha for run in runs if run.commit_sha} - self._known
        missing = {sha for sha in commits if not self.git.is_on_branch(sha)}
        if missing:
            try:
                self.git.fetch()
            except TfopsError as exc:
                log.error("cannot fetch the commits of queued runs; they wait: %s", exc)
                return []
            self.registry.refresh()
        self._known |= {sha for sha in commits if sha not in missing or self.git.is_on_branch(sha)}
        return self.queue.adopt(
            [run for run in runs if run.commit_sha is None or run.commit_sha in self._known]
        )

    def runnable(self) -> list[Run]:
        """Queued runs, whoever queued them, and approved runs whose saved plan is this instance's;
        the leader also takes the approved runs of instances that are gone: their plan went with
        them, so the worker supersedes the run and plans afresh (never an apply of anything else).
        Not the runs of a stack that has a run planning or applying (here or elsewhere): the claim
        would refuse them until it ends, and a free worker would take them in again and again."""
        working = {run.stack for run in self.store.runs_with_status({RunStatus.PLANNING, RunStatus.APPLYING})}
        queued = [run for run in self.store.runs_with_status({RunStatus.QUEUED}) if run.stack not in working]
        approved = [
            run for run in self.store.runs_with_status({RunStatus.APPROVED}) if run.stack not in working
        ]
        live = {instance.id for instance in self.store.instances()} if approved else set()
        leading = self.leading()
        mine = [
            run
            for run in approved
            if run.instance_id == self.instance_id or (leading and run.instance_id not in live)
        ]
        return sorted([*queued, *mine], key=lambda run: run.id)
