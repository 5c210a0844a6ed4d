"""Timers, the run queue, and the rules for what gets queued.

- `RunQueue`: every trigger becomes a run here. A bounded pool runs at most
  `max_parallel` runs, never two on one stack; a newer commit supersedes queued
  runs of its stack; a drift check is not queued twice.
- `RepoPoller`: fetch, rediscover stacks, queue a deploy for each stack whose code
  changed since it was last applied.
- `Scheduler`: APScheduler jobs that call the poller and queue drift checks.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from tfops import proc
from tfops.errors import GitFetchError, TfopsError
from tfops.gitsource import FetchResult, GitSource, fetch_with_backoff
from tfops.models import Run, RunKind, RunStatus, Stack, Trigger, TriggerSource
from tfops.reconcile import Transitions
from tfops.stacks import Discovery, ModuleAwareDetector, RefusedStack, affected_stacks
from tfops.store import Store

log = logging.getLogger(__name__)

# Store meta key: the stacks refused at the head the poller last worked out, for `tfops status`.
REFUSED_STACKS_META = "refused_stacks"
# Store meta key: {"head": sha, "stacks": [names whose code at that head is their applied code]}.
HEAD_CODE_APPLIED = "head_code_applied"

# Runs that have not started work yet and that a newer commit makes pointless.
_WAITING = frozenset({RunStatus.QUEUED, RunStatus.AWAITING_APPROVAL})
# A deploy whose outcome leaves its commit's code undeployed on purpose: a later commit that does
# not touch the stack must not ask the same question again.
_DECLINED_OR_WAITING = frozenset({RunStatus.AWAITING_APPROVAL, RunStatus.REJECTED, RunStatus.EXPIRED})


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


class RunQueue:
    def __init__(
        self,
        store: Store,
        transitions: Transitions,
        execute: Callable[[int, proc.Cancel], object],
        max_parallel: int,
    ) -> None:
        self.store = store
        self.transitions = transitions
        self.execute = execute
        self.max_parallel = max_parallel
        self._cond = threading.Condition()
        self._pending: list[tuple[int, str]] = []  # (run id, stack), oldest first
        self._busy: dict[str, tuple[int, proc.Cancel]] = {}
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="tfops-run")
        self._accepting = True

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
            self._pending.append((run.id, stack))
            self._dispatch_locked()
            return run

    def resume(self, runs: Iterable[Run]) -> None:
        """Queue existing runs: queued ones a previous daemon never started, approved ones to apply."""
        with self._cond:
            if not self._accepting:
                return  # they stay queued/approved in the store for the next start
            for run in sorted(runs, key=lambda r: r.id):
                self._pending.append((run.id, run.stack))
            self._dispatch_locked()

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
                self._pending = [entry for entry in self._pending if entry[0] != run.id]

    # -- dispatch -------------------------------------------------------------

    def _dispatch_locked(self) -> None:
        for entry in list(self._pending):
            if len(self._busy) >= self.max_parallel:
                return
            run_id, stack = entry
            if stack in self._busy:
                continue  # one run per stack: it waits for the current one
            self._pending.remove(entry)
            cancel = proc.Cancel()
            self._busy[stack] = (run_id, cancel)
            self._pool.submit(self._work, run_id, stack, cancel)

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

    # -- observation and shutdown ------------------------------------------------

    @property
    def depth(self) -> int:
        with self._cond:
            return len(self._pending)

    def running(self) -> dict[str, int]:
        with self._cond:
            return {stack: run_id for stack, (run_id, _) in self._busy.items()}

    def wait_idle(self, timeout: float | None = None) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._busy, timeout=timeout)

    def shutdown(self, *, wait: float | None = None) -> None:
        """Stop taking work and interrupt what runs: one SIGINT to each Terraform."""
        with self._cond:
            self._accepting = False
            self._pending.clear()  # they stay `queued` in the store and resume next start
            for _, cancel in self._busy.values():
                cancel.cancel()
            self._cond.wait_for(lambda: not self._busy, timeout=wait)
        self._pool.shutdown(wait=False, cancel_futures=True)


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


class RepoPoller:
    """Fetch, and queue a deploy for every stack whose code moved since it was applied."""

    def __init__(
        self,
        *,
        git: GitSource,
        store: Store,
        queue: RunQueue,
        registry: StackRegistry,
        fetch_attempts: int = 3,
        first_backoff: float = 2.0,
        on_fetch: Callable[[float, bool], None] = lambda seconds, ok: None,
    ) -> None:
        self.on_fetch = on_fetch
        self.last_fetch_ok_at: datetime | None = None
        self.git = git
        self.store = store
        self.queue = queue
        self.registry = registry
        self.fetch_attempts = fetch_attempts
        self.first_backoff = first_backoff
        self._polling = threading.Lock()
        self.last_fetch: FetchResult | None = None
        self.last_error: str | None = None
        # The head whose deploys this process has already worked out. A poll that finds the
        # same head again has nothing new to decide: skip the per-stack checks (a git diff
        # per stack whose applied commit is behind the head) until the head moves.
        self._settled_head: str | None = None
        # The head and refusals last reported: a refused stack is logged once per head, not per poll.
        self._reported_refusals: tuple[str, tuple[RefusedStack, ...]] | None = None

    def confirm_head(self, max_age: float) -> str | None:
        """Fetch once, now, so that the recorded head is the branch's; None when it is current.

        For binding an approval: nothing is queued here (the next poll does that). When the fetch
        fails, a successful fetch younger than `max_age` seconds still counts; otherwise the
        reason the head cannot be confirmed is returned.
        """
        with self._polling:
            last_ok = self.last_fetch_ok_at
            try:
                fetched = self._fetch(attempts=1)
            except GitFetchError:
                age = (datetime.now(UTC) - last_ok).total_seconds() if last_ok else None
                if age is not None and age < max_age:
                    log.warning("fetch failed; using the head fetched %.0fs ago", age)
                    return None
                return "the branch head could not be confirmed (the Git remote did not answer)"
            self.store.set_head_all(fetched.head.sha)
            return None

    def poll(
        self, source: TriggerSource = TriggerSource.POLL, actor: str = "poll", *, note: str = ""
    ) -> list[Run]:
        """`note`: recorded on the deploys this poll queues (e.g. the webhook deliveries behind it)."""
        # The timer, a webhook and an approval (which fetches to learn the head) may poll at once.
        with self._polling:
            return self._poll(source, actor, note)

    def _fetch(self, *, attempts: int) -> FetchResult:
        """Fetch (cloning first if an earlier start could not), and record how it went."""
        started = time.monotonic()
        try:
            if not self.git.has_clone():
                self.git.ensure_clone()  # the remote was unreachable when the daemon started
            fetched = fetch_with_backoff(self.git, attempts=attempts, first_delay=self.first_backoff)
        except GitFetchError as exc:
            self.on_fetch(time.monotonic() - started, False)
            self.last_error = str(exc)
            self.store.set_meta("last_fetch_error", {"at": _now(), "error": str(exc)})
            log.error("fetch failed; nothing new is planned until it succeeds: %s", exc)
            raise
        self.on_fetch(time.monotonic() - started, True)
        self.last_fetch, self.last_error = fetched, None
        self.last_fetch_ok_at = datetime.now(UTC)
        self.store.set_meta("last_fetch", {"at": _now(), "sha": fetched.head.sha, "forced": fetched.forced})
        return fetched

    def _poll(self, source: TriggerSource, actor: str, note: str) -> list[Run]:
        fetched = self._fetch(attempts=self.fetch_attempts)
        stacks = self.registry.refresh()
        self.store.sync_stacks((stack.name, stack.path) for stack in stacks.values())
        self.store.set_head_all(fetched.head.sha)
        self._report_refusals(fetched.head.sha)
        if fetched.head.sha == self._settled_head:
            return []
        queued = self.queue_deploys(stacks.values(), fetched, source=source, actor=actor, note=note)
        self._settled_head = fetched.head.sha
        return queued

    def _report_refusals(self, head: str) -> None:
        """Log each refused stack at ERROR once per head, and record them for `tfops status`."""
        refused = self.registry.refused
        if self._reported_refusals == (head, refused):
            return
        previous = self._reported_refusals
        self._reported_refusals = (head, refused)
        self.store.set_meta(
            REFUSED_STACKS_META,
            {"head": head, "at": _now(), "stacks": [item.to_dict() for item in refused]},
        )
        for item in refused:
            log.error("%s; not planned at %s (the other stacks are)\n  hint: %s", item, head[:10], item.hint)
        if not refused and previous is not None and previous[1]:
            log.info("no stack is refused at %s any more", head[:10])

    def queue_deploys(
        self,
        stacks: Iterable[Stack],
        fetched: FetchResult,
        *,
        source: TriggerSource,
        actor: str,
        note: str = "",
    ) -> list[Run]:
        head = fetched.head.sha
        queued = []
        changes = _ChangesSince(self.git, ModuleAwareDetector(self.registry.root), head)
        ordered = sorted(stacks, key=lambda s: s.name)
        for stack in ordered:
            reason = self._deploy_reason(stack, head, changes)
            if reason is None:
                continue
            state = self.store.get_stack(stack.name)
            trigger = Trigger(
                source=source,
                actor=actor,
                previous_sha=state.applied_sha if state else None,
                forced=fetched.forced,
                note=f"{reason}; {note}" if note else reason,
            )
            run = self.queue.submit(stack.name, RunKind.DEPLOY, trigger, head)
            if run is not None:
                queued.append(run)
        self._record_head_code(ordered, head, changes)
        return queued

    def _record_head_code(self, stacks: Iterable[Stack], head: str, changes: _ChangesSince) -> None:
        """Which stacks' code at `head` is the code they were last applied with (no change since
        the applied commit touches them: a revert, or commits to other stacks), so `tfops status`
        can say "in sync" without a git diff of its own. One record per head."""
        applied = []
        for stack in stacks:
            state = self.store.get_stack(stack.name)
            if state is None or state.applied_sha is None:
                continue
            if state.applied_sha == head or not changes.touch(stack, state.applied_sha):
                applied.append(stack.name)
        self.store.set_meta(HEAD_CODE_APPLIED, {"head": head, "stacks": sorted(applied)})

    def _deploy_reason(self, stack: Stack, head: str, changes: _ChangesSince) -> str | None:
        """Why `stack` needs a deploy at `head`, or None. Each rule says why not."""
        last = _last_deploy(self.store, stack.name)
        if last is not None and last.commit_sha == head and last.status is RunStatus.SUPERSEDED:
            # Its re-plan never came (the daemon was stopping): this commit is not dealt with yet.
            return f"the plan of {head[:10]} was superseded and not made again"
        if last is not None and last.commit_sha == head:
            return None  # this commit was already taken up for this stack (whatever its outcome)
        if last is not None and last.commit_sha is not None and last.status in _DECLINED_OR_WAITING:
            if not changes.touch(stack, last.commit_sha):
                return None  # the stack's code is what was asked about (and is awaiting or declined)
            return f"changed since {last.commit_sha[:10]} ({last.status.value})"
        state = self.store.get_stack(stack.name)
        if state is None or state.applied_sha is None:
            return "never applied by tfops"
        if state.applied_sha == head:
            return None
        if not changes.touch(stack, state.applied_sha):
            return None
        return f"changed since {state.applied_sha[:10]}"


class _ChangesSince:
    """Does any commit after `since` up to `head` touch a stack? One git diff per distinct `since`
    and one answer per (stack, since) for the whole poll: deciding the deploys and recording which
    stacks' head code is applied ask the same questions. Unknown history counts as a change."""

    def __init__(self, git: GitSource, detector: ModuleAwareDetector, head: str) -> None:
        self.git, self.detector, self.head = git, detector, head
        self._diffs: dict[str, frozenset[str] | None] = {}
        self._answers: dict[tuple[str, str], bool] = {}

    def touch(self, stack: Stack, since: str) -> bool:
        key = (stack.name, since)
        if key not in self._answers:
            if since not in self._diffs:
                self._diffs[since] = self.git.changed_paths(since, self.head)
            changed = self._diffs[since]
            self._answers[key] = changed is None or bool(affected_stacks([stack], changed, self.detector))
        return self._answers[key]


def _last_deploy(store: Store, stack: str) -> Run | None:
    # However many drift checks and plans came since: one query, not a window of recent runs.
    return store.last_run(stack, kinds={RunKind.DEPLOY})


class Scheduler:
    """APScheduler drives the clock; everything it starts goes through the queue."""

    def __init__(
        self,
        *,
        poller: RepoPoller,
        queue: RunQueue,
        registry: StackRegistry,
        store: Store,
        poll_interval: float,
        jitter: float = 0.1,
        housekeeping: Callable[[], object] | None = None,
        housekeeping_interval: float = 30.0,
    ) -> None:
        """`housekeeping`: run every `housekeeping_interval` (expire approval requests, retry recovery)."""
        self.housekeeping = housekeeping
        self.housekeeping_interval = housekeeping_interval
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
        self._aps.start()

    def _housekeeping_job(self) -> None:
        if self.housekeeping is None:
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
        try:
            self.poller.poll()
        except GitFetchError:
            pass  # recorded and logged at ERROR by the poller; the next tick retries
        except Exception as exc:  # noqa: BLE001 - logged with its traceback; the job must keep its schedule
            self._poll_failures.failed(exc)
        else:
            self._poll_failures.recovered()
        try:
            self._sync_drift_jobs()
        except Exception:
            log.exception("updating the drift check timers failed; the next poll tries again")

    def _sync_drift_jobs(self) -> None:
        stacks = self.registry.current()
        wanted = {name: stack for name, stack in stacks.items() if stack.drift_interval > 0}
        for job in self._aps.get_jobs():
            if job.id.startswith("drift:") and job.id[6:] not in wanted:
                job.remove()
        for name, stack in wanted.items():
            job_id = f"drift:{name}"
            existing = self._aps.get_job(job_id)
            if existing is not None and existing.trigger.interval.total_seconds() == stack.drift_interval:
                continue
            jitter = stack.drift_interval * self.jitter
            self._aps.add_job(
                self.check_drift,
                IntervalTrigger(seconds=stack.drift_interval, jitter=jitter, timezone=UTC),
                args=[name],
                id=job_id,
                replace_existing=True,
                # Spread the first checks out instead of planning every stack at once.
                next_run_time=datetime.now(UTC) + timedelta(seconds=random.uniform(0, max(jitter, 1.0))),
            )

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
    store: Store, queue: RunQueue, stack_name: str, *, source: TriggerSource, actor: str
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


def _now() -> str:
    return datetime.now(UTC).isoformat()
