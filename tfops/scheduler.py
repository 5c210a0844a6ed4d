"""The clock, and the rules for what is queued besides deploys.

- `Scheduler`: APScheduler jobs that call the poller and queue drift checks; each drift timer
  resumes from the store (`tfops.drift_timers`), so a restart does not re-plan the estate.
- `StackRegistry`: the stacks discovered at the current head.
- the `windows` job: runs waiting for a sync window (`awaiting_window`) go on when one opens; the
  runs wait in the store, so after a restart they are still waiting and go on at the same time.
- `queue_drift_check`, `replan`, `queue_for_api`: when a drift check, a fresh plan after a stale
  one, or a run asked for over the API is queued.

The queue (`tfops.run_queue`) and the poller (`tfops.poller`) are used through the Protocols
declared here, so a queue kept in a database can stand where the in-process one does.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from tfops.drift_timers import first_drift_check
from tfops.errors import GitFetchError, TfopsError
from tfops.models import Run, RunKind, RunStatus, Stack, StackWindows, Trigger, TriggerSource
from tfops.poller import HEAD_CODE_APPLIED, REFUSED_STACKS_META
from tfops.run_queue import RunQueue
from tfops.stacks import Discovery, RefusedStack
from tfops.store import Store
from tfops.window_gate import may_apply_now

log = logging.getLogger(__name__)

# Re-exported after the split: `tfops status` reads the poller's meta keys, tests import RunQueue.
__all__ = [
    "HEAD_CODE_APPLIED",
    "REFUSED_STACKS_META",
    "FailureStreak",
    "RunIntake",
    "RunQueue",
    "Scheduler",
    "StackRegistry",
    "head_of",
    "queue_drift_check",
    "queue_for_api",
    "replan",
]


class RunIntake(Protocol):
    """What the rules here need of a queue (`RunQueue.submit`); None: not queued (coalesced, stopping)."""

    def submit(self, stack: str, kind: RunKind, trigger: Trigger, commit_sha: str) -> Run | None: ...


@runtime_checkable
class Resumes(Protocol):
    """A queue that takes existing runs (`RunQueue.resume`): where runs whose window opened go."""

    def resume(self, runs: Iterable[Run]) -> None: ...


class Poller(Protocol):
    """What the poll job needs (`RepoPoller.poll`): fetch, and queue what changed."""

    def poll(self) -> object: ...


@dataclass
class StackRegistry:
    """The stacks discovered at the current head, and those refused there; replaced whole on every fetch."""

    discover: Callable[[Path], Discovery]
    root: Path
    _stacks: dict[str, Stack] | None = None
    refused: tuple[RefusedStack, ...] = ()

    def refresh(self) -> dict[str, Stack]:
        found = self.discover(self.root)
        stacks = {stack.name: stack for stack in found.stacks}
        self._stacks, self.refused = stacks, found.refused
        return stacks

    def current(self) -> Mapping[str, Stack]:
        if self._stacks is None:
            return self.refresh()
        return self._stacks


class Scheduler:
    """APScheduler drives the clock; everything it starts goes through the queue."""

    def __init__(
        self,
        *,
        poller: Poller,
        queue: RunIntake,
        registry: StackRegistry,
        store: Store,
        poll_interval: float,
        jitter: float = 0.1,
        housekeeping: Callable[[], object] | None = None,
        housekeeping_interval: float = 30.0,
        window_interval: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        """`housekeeping`: run every `housekeeping_interval` (expire approval requests, retry recovery).

        `clock` and `rng` place the first drift checks; tests and benchmarks pass fakes. `leading`:
        whether this daemon leads (tfops.ha.leadership), asked by every job when it fires: only the
        leader polls, checks drift, expires approvals and wakes waiting runs."""
        self.leading = leading
        self.clock = clock
        self.rng = rng or random.Random()
        self.housekeeping = housekeeping
        self.housekeeping_interval = housekeeping_interval
        self.window_interval = window_interval  # how late after a window opens its runs may go on
        self._woken: set[int] = set()  # runs handed to the queue that have not started yet
        self.poller = poller
        self.queue = queue
        self.registry = registry
        self.store = store
        self.poll_interval = poll_interval
        self.jitter = jitter
        self._aps = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
        self._poll_failures = FailureStreak("the poll")

    @property
    def running(self) -> bool:
        return self._aps.running

    def start(self) -> None:
        self._aps.add_job(
            self._poll_job,
            IntervalTrigger(seconds=self.poll_interval, timezone=UTC),
            id="poll",
            next_run_time=datetime.now(UTC),
        )
        if self.housekeeping is not None:
            self._aps.add_job(
                self._housekeeping_job,
                IntervalTrigger(seconds=self.housekeeping_interval, timezone=UTC),
                id="housekeeping",
            )
        if isinstance(self.queue, Resumes):
            self._aps.add_job(
                self._windows_job,
                IntervalTrigger(seconds=self.window_interval, timezone=UTC),
                id="windows",
                next_run_time=datetime.now(UTC),  # after a restart, what became due meanwhile goes now
            )
        self._aps.start()

    def wake_waiting_runs(self, now: datetime | None = None) -> list[Run]:
        """Queue the runs waiting for a sync window that is open at `now` (the clock's time): they
        go on to their apply, re-checked against the branch first. Returns the runs queued."""
        waiting = self.store.runs_with_status({RunStatus.AWAITING_WINDOW})
        self._woken &= {run.id for run in waiting}  # the others started, or ended
        due = [
            run
            for run in due_window_runs(waiting, self.registry.current(), now or self.clock())
            if run.id not in self._woken
        ]
        if due and isinstance(self.queue, Resumes):
            log.info("sync window open: %s", ", ".join(f"run {run.id} ({run.stack})" for run in due))
            self.queue.resume(due)
            self._woken |= {run.id for run in due}
        return due

    def _windows_job(self) -> None:
        if not self.leading():
            return
        try:
            self.wake_waiting_runs()
        except Exception:
            log.exception("waking the runs waiting for a sync window failed; the next tick tries again")

    def _housekeeping_job(self) -> None:
        if self.housekeeping is None or not self.leading():
            return
        try:
            self.housekeeping()
        except Exception:
            log.exception("housekeeping failed; it runs again shortly")

    def stop(self) -> None:
        if self._aps.running:
            self._aps.shutdown(wait=False)

    def next_drift_check(self, stack: str) -> datetime | None:
        job = self._aps.get_job(f"drift:{stack}")
        return job.next_run_time if job else None

    def _poll_job(self) -> None:
        """Poll; whatever goes wrong is logged here (fetch failures by the poller), never lost."""
        if not self.leading():
            return
        try:
            self.poller.poll()
        except GitFetchError:
            pass  # recorded and logged at ERROR by the poller; the next tick retries
        except Exception as exc:  # noqa: BLE001 - logged with its traceback; the job must keep its schedule
            self._poll_failures.failed(exc)
        else:
            self._poll_failures.recovered()
        try:
            self.sync_drift_timers()
        except Exception:
            log.exception("updating the drift check timers failed; the next poll tries again")

    def sync_drift_timers(self) -> None:
        """One timer per stack with a drift interval; a new or changed timer resumes from the store."""
        stacks = self.registry.current()
        wanted = {name: stack for name, stack in stacks.items() if stack.drift_interval > 0}
        for job in self._aps.get_jobs():
            if job.id.startswith("drift:") and job.id[6:] not in wanted:
                job.remove()
        new = {
            name: stack
            for name, stack in wanted.items()
            if (job := self._aps.get_job(f"drift:{name}")) is None
            or job.trigger.interval.total_seconds() != stack.drift_interval
        }
        if new:
            self._add_drift_timers(new)

    def _add_drift_timers(self, stacks: Mapping[str, Stack]) -> None:
        """Each timer's first check resumes from the store (see tfops.drift_timers): two queries."""
        now = self.clock()
        states = {state.name: state for state in self.store.list_stacks()}
        last_drift = self.store.last_drift_runs()
        for name, stack in stacks.items():
            first = first_drift_check(
                states.get(name),
                last_drift.get(name),
                interval=stack.drift_interval,
                jitter=self.jitter,
                now=now,
                rng=self.rng,
            )
            self._aps.add_job(
                self._drift_job,
                IntervalTrigger(
                    seconds=stack.drift_interval, jitter=stack.drift_interval * self.jitter, timezone=UTC
                ),
                args=[name],
                id=f"drift:{name}",
                replace_existing=True,
                next_run_time=first,
                # A timer that fires late (a busy start, many due at once) still runs, once; the
                # default grace of 1 s would skip it for a whole interval.
                misfire_grace_time=None,
            )

    def _drift_job(self, stack_name: str) -> None:
        if self.leading():
            self.check_drift(stack_name)

    # -- leadership (tfops.ha): the jobs keep their schedule; only the leader's do anything ------

    def lead(self) -> None:
        """This daemon became the leader: poll now (drift timers are placed from the store by it)."""
        if self._aps.running and self._aps.get_job("poll") is not None:
            self._aps.modify_job("poll", next_run_time=datetime.now(UTC))

    def follow(self) -> None:
        """This daemon stopped leading: its drift timers go (the next leader places its own, from
        the store); the other jobs stay and do nothing while it follows."""
        for job in self._aps.get_jobs():
            if job.id.startswith("drift:"):
                job.remove()

    def check_drift(self, stack_name: str, source: TriggerSource = TriggerSource.DRIFT_TIMER) -> Run | None:
        return queue_drift_check(self.store, self.queue, stack_name, source=source, actor="drift timer")


class FailureStreak:
    """Logs a job's failure at ERROR when it starts or changes, at DEBUG while it repeats, and says
    at INFO when the job works again: a poll every few seconds must not flood the log, and an error
    must never go unlogged."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._last: str | None = None  # the failure being repeated, if any

    def failed(self, exc: BaseException) -> None:
        text = f"{type(exc).__name__}: {exc}"
        if text == self._last:
            log.debug("%s still fails: %s", self.what, text)
            return
        self._last = text
        # A TfopsError says what to do; anything else is a bug, and its traceback is what helps.
        details = None if isinstance(exc, TfopsError) else exc
        log.error("%s failed; it runs again at the next tick: %s", self.what, exc, exc_info=details)

    def recovered(self) -> None:
        if self._last is not None:
            self._last = None
            log.info("%s works again", self.what)


def queue_drift_check(
    store: Store, queue: RunIntake, stack_name: str, *, source: TriggerSource, actor: str
) -> Run | None:
    """Queue a drift plan of the branch head for a stack that tfops applied at least once."""
    state = store.get_stack(stack_name)
    if state is None or state.head_sha is None:
        return None
    if state.applied_sha is None:
        log.debug("no drift check for %s: never applied; its deploy comes first", stack_name)
        return None
    trigger = Trigger(source=source, actor=actor, previous_sha=state.applied_sha)
    return queue.submit(stack_name, RunKind.DRIFT, trigger, state.head_sha)


def due_window_runs(waiting: Iterable[Run], stacks: Mapping[str, Stack], now: datetime) -> list[Run]:
    """The runs among `waiting` whose stack's windows let them apply at `now`. A run whose stack is
    gone is due too: the reconciler ends it (`stack_removed`) rather than leaving it waiting.
    Stacks mostly share the defaults' windows: each set of windows is asked once per kind."""
    answers: dict[tuple[StackWindows, RunKind], bool] = {}
    due = []
    for run in waiting:
        stack = stacks.get(run.stack)
        if stack is not None:
            key = (stack.windows, run.kind)
            if key not in answers:
                answers[key] = may_apply_now(stack, run, now)
            if not answers[key]:
                continue
        due.append(run)
    return due


def head_of(store: Store, stack: str) -> str | None:
    """The branch head last recorded for `stack`, if tfops knows the stack."""
    state = store.get_stack(stack)
    return state.head_sha if state is not None else None


def replan(store: Store, queue: RunIntake, run: Run) -> None:
    """A stale saved plan is never retried as is: a fresh plan of the branch head is queued."""
    trigger = Trigger(
        source=run.trigger.source, actor="tfops", note=f"re-plan after stale plan in run {run.id}"
    )
    head = head_of(store, run.stack) or run.commit_sha
    if head is None:
        log.error("run %s: no commit is known for %s; the re-plan waits for the next poll", run.id, run.stack)
        return
    queue.submit(run.stack, run.kind, trigger, head)


def queue_for_api(store: Store, queue: RunIntake, stack: str, kind: RunKind, actor: str) -> Run | None:
    """A run asked for over the API: a drift check, or a plan/deploy of the recorded head."""
    if kind is RunKind.DRIFT:
        return queue_drift_check(store, queue, stack, source=TriggerSource.API, actor=actor)
    head = head_of(store, stack)
    if head is None:
        return None
    return queue.submit(stack, kind, Trigger(source=TriggerSource.API, actor=actor), head)
