"""What a previous process left behind: runs cut off mid-flight, their Terraform, and queued work.

Runs cut off mid-flight are marked for review, never retried; queued ones resume, and approved ones
go on to their (re-checked) apply. Only the process that holds the data directory alone does this:
the owner lock (`owner.lock`, taken shared for the process's life) tells a `tfops plan` next to a
running daemon that the daemon's runs are not crashed ones.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TextIO

from tfops import orphans
from tfops.config import Settings
from tfops.models import IN_FLIGHT_STATUSES, Run, RunReason, RunStatus
from tfops.reconcile import Transitions
from tfops.store import Store
from tfops.terraform.runner import tf_data_dir

log = logging.getLogger(__name__)

# What a run cut off by a crash says; a person decides whether to run it again.
CRASH_REASON = (
    "the previous tfops process stopped during this run (crash or kill); review the log before re-running"
)


class Resumable(Protocol):
    """Where the runs that were waiting go (`RunQueue.resume`)."""

    def resume(self, runs: Iterable[Run]) -> None: ...


class Refreshable(Protocol):
    """The stacks at the head (`StackRegistry`), learned again before queued runs resume."""

    def refresh(self) -> object: ...


@dataclass(eq=False, repr=False)
class Recovery:
    """Settles what a previous process left, once this one holds the data directory alone."""

    store: Store
    transitions: Transitions
    registry: Refreshable
    queue: Resumable
    settings: Settings
    # With several daemons on one store (tfops.ha): only this instance's runs (and those of no
    # instance) are its to settle; a dead instance's runs are settled by the leader.
    instance_id: str | None = None
    recovered: bool = field(default=False, init=False)  # once, by this process
    _owner_lock: TextIO | None = field(default=None, init=False, repr=False)

    def recover(self) -> None:
        """Settle what a previous process left, when no other tfops process works on this data
        directory: a `tfops plan` next to a running daemon must not take the daemon's runs for
        crashed ones."""
        if not self._claim():
            log.info("another tfops process works on %s; its runs are left to it", self.settings.data_dir)
            return
        self.recovered = True
        cut_off = self._mine(self.store.runs_with_status(IN_FLIGHT_STATUSES - {RunStatus.APPROVED}))
        # First: an orphaned apply must stop before the queue may start another on its stack.
        notes = self._end_orphaned_terraform(cut_off)
        for run in cut_off:
            log.warning("run %s (%s) was cut off while %s", run.id, run.stack, run.status.value)
            note = notes.get(run.id)
            self.transitions.mark_interrupted(
                run, f"{CRASH_REASON}; {note}" if note else CRASH_REASON, why=RunReason.DAEMON_RESTARTED
            )
        queued = self.store.runs_with_status({RunStatus.QUEUED})
        pending = sorted([*queued, *self._mine(self.store.runs_with_status({RunStatus.APPROVED}))], key=_id)
        if pending:
            self.registry.refresh()
            self.queue.resume(pending)

    def _mine(self, runs: list[Run]) -> list[Run]:
        if self.instance_id is None:
            return runs
        return [run for run in runs if run.instance_id in (None, self.instance_id)]

    def retry(self) -> None:
        """Recover now if another process held the data directory when this one started."""
        if not self.recovered:
            self.recover()

    def release(self) -> None:
        if self._owner_lock is not None:
            self._owner_lock.close()  # closing the file releases its flock
            self._owner_lock = None

    def _end_orphaned_terraform(self, runs: list[Run]) -> dict[int, str]:
        """End what is left of the cut-off runs' Terraform (SIGINT, grace, SIGKILL); say what was done."""
        found: dict[int, orphans.Orphan] = {}
        for run in runs:
            group = self.store.run_process_group(run.id)
            if group is not None:
                # Terraform passes TF_DATA_DIR (set by the runner) to its providers and local-exec.
                data_dir = tf_data_dir(Path(self.settings.stacks_dir) / run.stack).absolute()
                found[run.id] = orphans.Orphan(orphans.GroupRecord(*group), f"TF_DATA_DIR={data_dir}")
        grace = self.settings.terraform.stop_grace
        endings = orphans.end_orphans(list(found.values()), grace)
        notes = {}
        for (run_id, orphan), ending in zip(found.items(), endings, strict=True):
            self.store.set_run_process_group(run_id, None, None)
            if ending is orphans.Ending.GONE:
                continue  # nothing was left to do: the crash reason alone says it all
            notes[run_id] = orphans.describe(orphan.record.pgid, ending, grace)
            log.warning("run %s: %s", run_id, notes[run_id])
        return notes

    def _claim(self) -> bool:
        """Exclusive while recovering, then shared for this process's life (`release` or exit ends it)."""
        if self._owner_lock is None:
            self._owner_lock = open(Path(self.settings.data_dir) / "owner.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(self._owner_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._owner_lock, fcntl.LOCK_SH)
            return False
        fcntl.flock(self._owner_lock, fcntl.LOCK_SH)  # held for life: later processes leave us be
        return True


def _id(run: Run) -> int:
    return run.id


def record_group(store: Store, run_id: int, record: orphans.GroupRecord | None) -> None:
    """The runner's hook: the process group of a run's Terraform, kept so a later start can end it."""
    if record is None:
        store.set_run_process_group(run_id, None, None)
    else:
        store.set_run_process_group(run_id, record.pgid, record.leader)
