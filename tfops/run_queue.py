"""The run queue: every trigger becomes a run here.

A bounded pool runs at most `max_parallel` runs, never two on one stack; a newer commit supersedes
queued runs of its stack; a drift check is not queued twice. Deploys, plans and approved applies
are dispatched before any waiting drift check, and drift checks hold at most `drift_parallel`
workers at once, so a deploy never waits behind a drift sweep. The queue knows the reconciler only
as an `Executor` (declared here, where it is used), so whatever runs a run can stand behind it.

Stack order (`depends_on`, tfops.ordering) is kept here, at admission, the one place every deploy
passes: a queued deploy whose upstream stacks have an open deploy stays queued (its message says
what it waits for) and one whose upstream's deploy did not land ends `blocked`. The state is the
store's runs, so a restart holds the same runs again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Protocol

from tfops import proc
from tfops.errors import TfopsError
from tfops.models import Run, RunKind, RunStatus, Stack, Trigger
from tfops.ordering import Verdict, admit, ancestors
from tfops.store import Store

log = logging.getLogger(__name__)

_SIGNAL_CHECK = 1.0  # seconds: how long a waiting main thread may leave a signal unhandled

# Runs that have not started work yet and that a newer commit makes pointless.
_WAITING = frozenset({RunStatus.QUEUED, RunStatus.AWAITING_APPROVAL, RunStatus.AWAITING_WINDOW})


class Executor(Protocol):
    """Takes a run to its terminal status (the reconciler's `execute`); `cancel` asks it to stop."""

    def __call__(self, run_id: int, cancel: proc.Cancel) -> object: ...


class Superseding(Protocol):
    """The one status change the queue makes itself (the reconciler's `Transitions` make it)."""

    def mark_superseded(
        self, run: Run, reason: str, *, allowed_from: AbstractSet[RunStatus] | None = None
    ) -> Run: ...


class Holding(Protocol):
    """The status changes stack order makes (the reconciler's `Transitions`)."""

    def mark_upstream_blocked(self, run: Run, reason: str) -> Run: ...

    def note_decision(self, run: Run, message: str) -> None: ...


class StackOrder(NamedTuple):
    """What the queue needs to keep `depends_on`: the stacks at the head (`StackRegistry.current`)
    and who marks a held run. `recheck`: seconds between looks at held runs, for what ends an
    upstream's deploy outside the queue (a rejection, an expiry)."""

    stacks: Callable[[], Mapping[str, Stack]]
    transitions: Holding
    recheck: float = 5.0


def _same_kind_waiting(open_runs: Iterable[Run], kind: RunKind) -> Run | None:
    """A waiting run that a new drift check or plan would only repeat."""
    if kind not in (RunKind.DRIFT, RunKind.PLAN):
        return None
    for run in open_runs:
        if run.kind is kind and run.status is RunStatus.QUEUED:
            return run
        if kind is RunKind.DRIFT and run.kind is kind and run.status is RunStatus.AWAITING_APPROVAL:
            return run
    return None


class _Entry(NamedTuple):
    run_id: int
    stack: str
    drift: bool  # a drift check waiting for a worker: it yields to every other kind of run
    run: Run | None = None  # the run as queued: what stack order reads of it, without a store read


class _Busy(NamedTuple):
    run_id: int
    cancel: proc.Cancel
    drift: bool


def _is_drift_check(run: Run) -> bool:
    # An approved drift remediation is an apply a person asked for: it goes with the deploys.
    return run.kind is RunKind.DRIFT and run.status is RunStatus.QUEUED


class RunQueue:
    def __init__(
        self,
        store: Store,
        transitions: Superseding,
        execute: Executor,
        max_parallel: int,
        drift_parallel: int | None = None,
        order: StackOrder | None = None,
        keeps: Callable[[str], bool] | None = None,
        on_free: Callable[[], object] | None = None,
    ) -> None:
        """`drift_parallel`: at most this many drift checks at once (None: up to `max_parallel`);
        `order`: keep `depends_on` between deploys (None: no order); `keeps`: whether this queue
        runs a stack's runs (tfops.ha.pinning; the others stay queued in the store for another
        instance); `on_free`: called when a worker ends and its slot stays free (several daemons:
        take others' runs in now)."""
        self.store = store
        self.transitions = transitions
        self.execute = execute
        self.max_parallel = max_parallel
        self.drift_parallel = max(1, min(drift_parallel or max_parallel, max_parallel))
        self._cond = threading.Condition()
        self._pending: list[_Entry] = []  # oldest first
        self._busy: dict[str, _Busy] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="tfops-run")
        self._accepting = True
        self.order = order
        self.keeps = keeps or (lambda _stack: True)
        self._held: dict[int, str] = {}  # run id -> what it waits for, as last announced
        self._recheck: threading.Timer | None = None
        self._order_source: Mapping[str, Stack] | None = None
        self._order_graph: Mapping[str, Sequence[str]] = {}
        self._upstream_deploys: dict[str, Sequence[Run]] = {}
        self.on_free = on_free

    # -- intake ---------------------------------------------------------------

    def submit(self, stack: str, kind: RunKind, trigger: Trigger, commit_sha: str) -> Run | None:
        """Queue a run; returns None when it was not needed (coalesced) or we are stopping."""
        with self._cond:
            if not self._accepting:
                log.info("not queuing %s for %s: shutting down", kind.value, stack)
                return None
            open_runs = self.store.open_runs(stack)
            waiting = [run for run in open_runs if run.status in _WAITING]
            same = _same_kind_waiting(open_runs, kind)
            if same is not None:
                # A drift check or plan already waits for a worker (or a drift plan for approvers):
                # it will report the same thing. Repeated API calls cannot pile runs up either.
                log.debug("%s for %s coalesced into run %s", kind.value, stack, same.id)
                return None
            if kind is RunKind.DEPLOY:
                self._supersede(waiting, commit_sha)
            run = self.store.create_run(
                stack, kind, trigger, commit_sha, message=f"queued by {trigger.source}"
            )
            if self.keeps(stack):
                self._pending.append(_Entry(run.id, stack, _is_drift_check(run), run))
            self._dispatch_locked()
            return run

    def resume(self, runs: Iterable[Run]) -> None:
        """Queue existing runs: queued ones a previous daemon never started, approved ones to apply."""
        with self._cond:
            if not self._accepting:
                return  # they stay queued/approved in the store for the next start
            for run in sorted(runs, key=lambda r: r.id):
                if self.keeps(run.stack):
                    self._pending.append(_Entry(run.id, run.stack, _is_drift_check(run), run))
            self._dispatch_locked()

    def adopt(self, runs: Iterable[Run]) -> list[Run]:
        """Queue those of the store's `runs` this queue does not hold yet: runs another instance
        queued (tfops.ha), or one whose start lost to a busy stack. The same admission rules pick
        among them; the store's claim (`queued -> planning`, one working run per stack) decides
        which instance runs each. Returns the runs taken in."""
        with self._cond:
            known = {entry.run_id for entry in self._pending} | {busy.run_id for busy in self._busy.values()}
            new = [run for run in runs if run.id not in known and self.keeps(run.stack)]
            if new:
                self.resume(new)
            return new

    def _supersede(self, waiting: list[Run], commit_sha: str) -> None:
        """A newer commit of the stack makes queued plans and plans awaiting approval pointless."""
        for run in waiting:
            if run.kind in (RunKind.DEPLOY, RunKind.DRIFT):
                try:
                    self.transitions.mark_superseded(
                        run, f"superseded by commit {commit_sha[:10]}", allowed_from=_WAITING
                    )
                except TfopsError:
                    continue  # it started meanwhile; the newer run waits for it
                self._pending = [entry for entry in self._pending if entry.run_id != run.id]
                self._held.pop(run.id, None)

    # -- dispatch -------------------------------------------------------------

    def _dispatch_locked(self) -> None:
        # Every other kind first (oldest first), then drift checks: the sort is stable, so a deploy
        # queued behind a sweep of hundreds of drift checks takes the next free worker.
        drift_busy = sum(1 for busy in self._busy.values() if busy.drift)
        self._upstream_deploys = {}  # read once per dispatch, per upstream
        for entry in sorted(self._pending, key=lambda waiting: waiting.drift):
            if len(self._busy) >= self.max_parallel:
                return
            if entry.stack in self._busy:
                continue  # one run per stack: it waits for the current one
            if entry.drift and drift_busy >= self.drift_parallel:
                return  # drift checks come last; none may start until one ends
            if not entry.drift and self._held_back(entry):
                continue  # its upstreams go first (or it just ended blocked)
            drift_busy += entry.drift
            self._pending.remove(entry)
            cancel = proc.Cancel()
            self._busy[entry.stack] = _Busy(entry.run_id, cancel, entry.drift)
            self._pool.submit(self._work, entry.run_id, entry.stack, cancel)

    def _work(self, run_id: int, stack: str, cancel: proc.Cancel) -> None:
        try:
            self.execute(run_id, cancel)
        except Exception:
            log.exception("run %s: unexpected error escaped the reconciler", run_id)
        finally:
            with self._cond:
                self._busy.pop(stack, None)
                if self._accepting:
                    self._dispatch_locked()
                self._cond.notify_all()
                free = self._accepting and len(self._busy) < self.max_parallel
            if free and self.on_free is not None:
                self.on_free()

    # -- stack order ----------------------------------------------------------

    def _held_back(self, entry: _Entry) -> bool:
        """Whether a deploy must not start now: an upstream's deploy is open, or did not land (then
        it ends `blocked` here and leaves the queue). Drift checks and plans are not ordered."""
        if self.order is None:
            return False
        graph = self._graph()
        upstreams = ancestors(graph, entry.stack) if entry.stack in graph else []
        run = entry.run
        if not upstreams or run is None or run.status is not RunStatus.QUEUED:
            return False  # approved applies go: their plan was made once the upstreams landed
        deploys = {name: self._deploys_of(name) for name in upstreams}
        verdict = admit(run, upstreams, deploys)
        if verdict.verdict is Verdict.GO:
            self._held.pop(run.id, None)
            return False
        if verdict.verdict is Verdict.BLOCKED:
            self._pending = [item for item in self._pending if item.run_id != run.id]
            self._held.pop(run.id, None)
            with contextlib.suppress(TfopsError):  # superseded meanwhile: nothing to block
                self.order.transitions.mark_upstream_blocked(run, verdict.reason)
            return True
        if self._held.get(run.id) != verdict.reason:
            self._held[run.id] = verdict.reason
            # Said once per run, whichever instances hold it: the store decides (its last event).
            if self.store.note_once(run.id, verdict.reason):
                self.order.transitions.note_decision(run, verdict.reason)  # its Slack message says so
        self._schedule_recheck()
        return True

    def _graph(self) -> Mapping[str, Sequence[str]]:
        """The stacks that have upstreams, rebuilt only when the registry rediscovered: a dispatch
        looks at every pending deploy, and must not walk the whole estate for each."""
        assert self.order is not None
        stacks = self.order.stacks()
        if self._order_source is not stacks:
            self._order_source = stacks
            self._order_graph = {name: stack.depends_on for name, stack in stacks.items() if stack.depends_on}
        return self._order_graph

    def _deploys_of(self, stack: str) -> Sequence[Run]:
        """The stack's open deploys and its newest deploy (what `admit` reads), read once per
        dispatch: a hundred deploys held behind `network` cost one read of `network`'s runs."""
        if stack not in self._upstream_deploys:
            runs = {run.id: run for run in self.store.open_runs(stack) if run.kind is RunKind.DEPLOY}
            newest = self.store.last_run(stack, kinds=[RunKind.DEPLOY])
            if newest is not None:
                runs[newest.id] = newest
            self._upstream_deploys[stack] = list(runs.values())
        return self._upstream_deploys[stack]

    def _schedule_recheck(self) -> None:
        if self.order is None or (self._recheck is not None and self._recheck.is_alive()):
            return
        self._recheck = threading.Timer(self.order.recheck, self._look_again)
        self._recheck.daemon = True
        self._recheck.start()

    def _look_again(self) -> None:
        with self._cond:
            self._recheck = None  # this timer is done: a run still held schedules the next one
            if self._accepting:
                self._dispatch_locked()
            self._cond.notify_all()

    # -- observation and shutdown ------------------------------------------------

    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._pending)

    def has_free_slot(self) -> bool:
        """A worker is free and nothing held here may start on it: the queue could take more runs."""
        with self._cond:
            return len(self._busy) < self.max_parallel and not self._pending

    def running(self) -> dict[str, int]:
        with self._cond:
            return {stack: busy.run_id for stack, busy in self._busy.items()}

    def wait_idle(self, timeout: float | None = None) -> bool:
        # Runs held for an upstream that waits on people (approval) count as idle: nothing in this
        # process moves them, and a one-shot pass must not wait for them.
        def idle() -> bool:
            return not self._busy and all(entry.run_id in self._held for entry in self._pending)

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not idle():
                left = _SIGNAL_CHECK if deadline is None else min(_SIGNAL_CHECK, deadline - time.monotonic())
                if left <= 0:
                    return False
                # In slices: Ctrl-C (handled in the main thread, which may be this one) is then
                # acted on within one, even when the kernel gave the signal to another thread.
                self._cond.wait(left)
            return True

    def shutdown(self, *, wait: float | None = None) -> None:
        """Stop taking work and interrupt what runs: one SIGINT to each Terraform."""
        with self._cond:
            self._accepting = False
            self._pending.clear()  # they stay `queued` in the store and resume next start
            if self._recheck is not None:
                self._recheck.cancel()
            for busy in self._busy.values():
                busy.cancel.cancel()
            self._cond.wait_for(lambda: not self._busy, timeout=wait)
        self._pool.shutdown(wait=False, cancel_futures=True)
