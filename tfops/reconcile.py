"""One run, from queued to exactly one terminal status.

`Reconciler.execute` walks a run through plan → decide → apply and maps every failure to one of
the outcomes named in `Transitions` (tfops.transitions), the only place where a run's status
changes.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from tfops import proc
from tfops.attribution import ResourceAttribution
from tfops.changes import ModuleAwareDetector, affected_stacks
from tfops.errors import RunCancelled, RunTimedOut, StalePlanError, TerraformError, TfopsError
from tfops.incident_tracker import IncidentTracker
from tfops.logs import run_context
from tfops.models import DriftState, PlanSummary, Run, RunKind, RunReason, RunStatus, Stack
from tfops.policy import Action, Decision, decide, drift_report, drift_state_after_plan, without_ignored_drift
from tfops.stack_lock import stack_lock
from tfops.store import InvalidTransition, Store
from tfops.terraform.plan import scrub, secrets_in, summarize, summary_to_dict
from tfops.terraform.runner import Deadline, PlanResult, TerraformRunner, Workspace, sha256_file
from tfops.transitions import PLAN_FILE, Transitions, drop_plan_unless_kept
from tfops.window_gate import cleared_apply, windowed

__all__ = [
    "PLAN_FILE",
    "GitViews",
    "ReconcileSettings",
    "Reconciler",
    "RunTiming",
    "RunWork",
    "Transitions",
    "drop_plan_unless_kept",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunTiming:
    """Where a run's working time went (time spent waiting for approval is not in it)."""

    wall: float
    terraform: float

    @property
    def tfops(self) -> float:
        return max(0.0, self.wall - self.terraform)

    def __add__(self, other: RunTiming) -> RunTiming:
        return RunTiming(self.wall + other.wall, self.terraform + other.terraform)


class GitViews(Protocol):
    def is_on_branch(self, sha: str) -> bool: ...
    def view(self, sha: str): ...
    def changed_paths(self, old_sha: str | None, new_sha: str) -> frozenset[str] | None: ...


@dataclass(frozen=True)
class ReconcileSettings:
    runs_dir: Path
    stacks_dir: Path
    timeout: float
    redact_patterns: Sequence = ()
    # The secrets tfops holds itself (tfops.secrets): scrubbed from every run from its first line.
    held_secrets: frozenset[str] = frozenset()


class PhaseEnv(Protocol):
    """What a run's Terraform gets from the cloud for one phase, and what must be redacted."""

    @property
    def env(self) -> Mapping[str, str]: ...

    @property
    def values(self) -> frozenset[str]: ...


class RunCloudAccess(Protocol):
    def environment(self, phase: Literal["plan", "apply"]) -> PhaseEnv: ...

    def who_changed(
        self, drifted: Sequence[Mapping[str, Any]], since: datetime | None
    ) -> tuple[ResourceAttribution, ...]: ...


class CloudAccess(Protocol):
    """The AWS side of runs (tfops.aws.runs.RunIdentities)."""

    def for_run(self, stack: Stack, run_id: int) -> RunCloudAccess: ...


@dataclass(frozen=True, eq=False)
class RunWork:
    """What one execution of a run works with, from taking the run to the status it ends in.

    `run` is the run as it was taken: its id, stack, kind, commit and approved plan stay the same
    while it works, so each step returns the run as it moved on instead of changing this value.
    `secrets` grows as the plan's secrets are learned; `redact` scrubs them from then on.
    """

    run: Run
    stack: Stack
    run_dir: Path
    cancel: proc.Cancel | None
    secrets: set[str]
    patterns: Sequence
    cloud: RunCloudAccess | None = None  # None: the stack needs nothing from AWS
    # The plan's raw `resource_drift` entries (unredacted: never stored or shown), from which
    # drift attribution takes each resource's AWS identifiers.
    drift_entries: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def commit_sha(self) -> str:
        """The commit the run works on (a run is only ever queued for one)."""
        assert self.run.commit_sha is not None
        return self.run.commit_sha

    def redact(self, text: str) -> str:
        return scrub(text, self.secrets, self.patterns)

    def cloud_env(self, command: str) -> Mapping[str, str]:
        """The AWS environment of one Terraform command: `apply` runs with the apply role, every
        other command with the plan role. What it hands out joins the redaction first."""
        assert self.cloud is not None
        phase: Literal["plan", "apply"] = "apply" if command == "apply" else "plan"
        cloud = self.cloud.environment(phase)
        self.secrets.update(cloud.values)
        return cloud.env

    def summarize(self, shown: Mapping[str, Any]) -> PlanSummary:
        """The plan's summary; its secrets are learned first, so that from now on the log and
        errors are scrubbed of them."""
        self.secrets.update(secrets_in(shown))
        self.drift_entries[:] = shown.get("resource_drift") or ()
        return summarize(shown, patterns=self.patterns, secrets=self.secrets)


class Reconciler:
    def __init__(
        self,
        *,
        store: Store,
        git: GitViews,
        runner: TerraformRunner,
        transitions: Transitions,
        stacks: Callable[[], Mapping[str, Stack]],
        settings: ReconcileSettings,
        on_stale_plan: Callable[[Run], None] | None = None,
        on_finished: Callable[[Run, RunTiming], None] | None = None,
        confirm_head: Callable[[], str | None] = lambda: None,
        cloud: CloudAccess | None = None,
        incidents: IncidentTracker | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`confirm_head()`: fetch to learn the branch head now; the reason when it cannot be known.
        `clock`: the time sync windows are checked at."""
        self.clock = clock
        self.on_finished = on_finished
        self.cloud = cloud
        self.incidents = incidents or IncidentTracker(store)
        self.confirm_head = confirm_head
        self._timings: dict[int, RunTiming] = {}
        self._executing: set[int] = set()
        self._timings_lock = threading.Lock()
        self.store = store
        self.git = git
        self.runner = runner
        self.transitions = transitions
        self.stacks = stacks
        self.settings = settings
        self.on_stale_plan = on_stale_plan

    def execute(self, run_id: int, cancel: proc.Cancel | None = None) -> Run | None:
        """Run a queued run to its terminal status, or apply an approved one. Never raises for a
        run's own failure. None: there is no such run."""
        started, terraform_before = time.monotonic(), self.runner.thread_terraform_seconds()
        with self._timings_lock:
            self._executing.add(run_id)
        try:
            run = self._execute(run_id, cancel)
            # A run another instance works (or finished) is only looked at here: its end is that
            # instance's to report, or every instance that saw it would count it (tfops.ha).
            if run is not None and run.instance_id in (None, self.transitions.instance_id):
                terraform = self.runner.thread_terraform_seconds() - terraform_before
                self._account(run, RunTiming(time.monotonic() - started, terraform))
            return run
        finally:
            with self._timings_lock:
                self._executing.discard(run_id)

    def is_executing(self, run_id: int) -> bool:
        """A worker of this process has the run: its end is reported with its timing by `execute`."""
        with self._timings_lock:
            return run_id in self._executing

    def _account(self, run: Run, spent: RunTiming) -> None:
        """Add up a run's working time (its plan and, after approval, its apply); report it at the end."""
        with self._timings_lock:
            total = self._timings.pop(run.id, RunTiming(0.0, 0.0)) + spent
            if not run.status.is_terminal:
                self._timings[run.id] = total
                return
        if self.on_finished is not None:
            try:
                self.on_finished(run, total)
            except Exception:
                log.exception("reporting the end of run %s failed", run.id)

    def _execute(self, run_id: int, cancel: proc.Cancel | None) -> Run | None:
        run = self.store.get_run(run_id)
        # An `awaiting_window` run is queued only by the wake-up job, which saw its window open.
        if run is None or run.status not in (RunStatus.QUEUED, RunStatus.APPROVED, RunStatus.AWAITING_WINDOW):
            return run  # superseded or taken meanwhile: nothing to do
        stack = self.stacks().get(run.stack)
        if stack is None:
            return self.transitions.mark_failed(
                run, f"stack {run.stack!r} is no longer configured", why=RunReason.STACK_REMOVED
            )
        try:
            with run_context(run.id, run.stack), stack_lock(self.settings.stacks_dir, stack, cancel):
                if run.status is not RunStatus.QUEUED:
                    return self._apply_approved(self._current(run), stack, cancel)
                return self._execute_locked(run, stack, cancel)
        except RunCancelled:
            return self._current(run)  # never started: it stays queued (or approved) for the next daemon

    def _execute_locked(self, run: Run, stack: Stack, cancel: proc.Cancel | None) -> Run:
        try:
            run = self.transitions.mark_planning(run, log_path=self._run_dir(run) / "run.log")
        except InvalidTransition:
            return self._current(run)  # taken or superseded meanwhile
        self.transitions.supersede_window_waiters(run)
        return self._conclude(self._take(run, stack, cancel), self._plan_and_decide)

    def _apply_approved(self, run: Run, stack: Stack, cancel: proc.Cancel | None) -> Run:
        if run.status is RunStatus.AWAITING_WINDOW:
            try:
                run = self.transitions.mark_window_open(run)
            except InvalidTransition:
                return self._current(run)  # superseded meanwhile
        if run.status is not RunStatus.APPROVED:
            return run  # another process applied it meanwhile
        return self._conclude(self._take(run, stack, cancel), self._check_then_apply)

    def _take(self, run: Run, stack: Stack, cancel: proc.Cancel | None) -> RunWork:
        secrets = set(self.settings.held_secrets)
        cloud = None
        if self.cloud is not None and stack.needs_aws:
            cloud = self.cloud.for_run(stack, run.id)
        return RunWork(run, stack, self._run_dir(run), cancel, secrets, self.settings.redact_patterns, cloud)

    def _conclude(self, work: RunWork, step: Callable[[RunWork], Run]) -> Run:
        """The one way a run's work ends, planned or approved: in exactly one status, and without
        its saved plan unless that status may still apply it."""
        try:
            return self._guarded(work, step)
        finally:
            drop_plan_unless_kept(work.run_dir, self._current(work.run))

    def _guarded(self, work: RunWork, step: Callable[[RunWork], Run]) -> Run:
        """Do the run's work; map every way it can fail to exactly one terminal status."""
        run, redact = work.run, work.redact
        try:
            return step(work)
        except RunCancelled as exc:
            return self.transitions.mark_interrupted(run, redact(str(exc)))
        except RunTimedOut as exc:
            return self.transitions.mark_timed_out(self._current(run), redact(str(exc)))
        except StalePlanError as exc:
            return self._supersede_stale(run, redact(exc.args[0]))
        except TfopsError as exc:
            current = self._current(run)
            why = RunReason.TERRAFORM_FAILED if isinstance(exc, TerraformError) else RunReason.ERROR
            return self.transitions.mark_failed(
                current, redact(str(exc)), exit_code=getattr(exc, "exit_code", None), why=why
            )
        except Exception as exc:  # noqa: BLE001 - a bug in tfops must still end the run
            # The exception's own text may quote plan data: log it redacted, with the frames
            # (code locations only) for the bug report.
            frames = "".join(traceback.format_tb(exc.__traceback__))
            log.error("run %s crashed inside tfops: %s\n%s", run.id, redact(repr(exc)), frames)
            message = redact(f"internal error: {exc!r}")
        # Outside the handler: a failure here must not carry the unredacted exception along.
        try:
            return self.transitions.mark_failed(self._current(run), message, why=RunReason.INTERNAL_ERROR)
        except InvalidTransition:
            return self._current(run)  # it had ended already

    def _check_then_apply(self, work: RunWork) -> Run:
        """Apply exactly the plan people approved, after checking it is still the one they saw."""
        released = self.store.events(work.run.id)[-1].at  # when it became `approved`
        cleared = cleared_apply(work.run, work.stack, self.clock(), released_at=released)
        if cleared.action is Action.WAIT:  # approved outside the sync windows: it waits, approved
            return self.transitions.mark_awaiting_window(work.run, None, None, cleared.reason)
        # The head as it is now, not as the last poll (or a previous process) saw it.
        unconfirmed = self.confirm_head()
        if unconfirmed is not None:
            return self._supersede_stale(work.run, unconfirmed)
        stale = self.stale_binding(work.run, work.stack)
        if stale is not None:
            return self._supersede_stale(work.run, stale)
        return self._apply_saved_plan(work, cleared)

    def stale_binding(self, run: Run, stack: Stack) -> str | None:
        """Why the run's saved plan may no longer be applied, or None while it still may.

        The plan must be the file that was shown (same SHA-256), and the branch head must still
        carry the code it was made from: no commit since then touches the stack.
        """
        plan_path = self._run_dir(run) / PLAN_FILE
        if not run.plan_sha256 or not run.commit_sha:
            return "the run has no recorded plan to apply"
        if not plan_path.is_file():
            return "the saved plan file is gone"
        if sha256_file(plan_path) != run.plan_sha256:
            return "the saved plan file no longer matches the plan that was shown"
        state = self.store.get_stack(stack.name)
        head = state.head_sha if state else None
        if head is None or head == run.commit_sha:
            return None
        if not self.git.is_on_branch(run.commit_sha):
            return f"commit {run.commit_sha[:10]} is no longer on the branch (force-push)"
        with self.git.view(head) as tree:
            if not self._same_code(stack, run.commit_sha, head, tree):
                return f"the branch moved on to {head[:10]}, which changes this stack"
        return None

    def _supersede_stale(self, run: Run, why: str) -> Run:
        done = self.transitions.mark_superseded(
            self._current(run), f"{why}; planning again", why=RunReason.STALE_PLAN
        )
        if self.on_stale_plan is not None:
            self.on_stale_plan(done)
        return done

    def _apply_saved_plan(self, work: RunWork, cleared: Decision) -> Run:
        run, cancel, redact = work.run, work.cancel, work.redact
        assert run.plan_sha256 is not None  # stale_binding found the plan it names
        deadline = Deadline(self.settings.timeout)
        with self.git.view(work.commit_sha) as tree:
            ws = self._workspace(work, tree)
            self.runner.prepare(ws, deadline=deadline, cancel=cancel, redact=redact)
            # Learn the plan's secrets first, so that the apply's output is scrubbed of them.
            shown = self.runner.show_json(ws, ws.plan_path, deadline=deadline, cancel=cancel, redact=redact)
            summary = work.summarize(shown)
            applying = self.transitions.mark_applying(
                run, summary, run.plan_sha256, cleared.reason, why=cleared.why
            )
            return self._apply(work, ws, ws.plan_path, deadline, applying)

    def _plan_and_decide(self, work: RunWork) -> Run:
        run, stack, commit_sha = work.run, work.stack, work.commit_sha
        deadline = Deadline(self.settings.timeout)
        with self.git.view(commit_sha) as tree:
            ws = self._workspace(work, tree)
            if not ws.source_dir.is_dir():
                raise TfopsError(f"stack directory {stack.path!r} does not exist at commit {commit_sha[:10]}")
            started = time.monotonic()
            self.runner.prepare(ws, deadline=deadline, cancel=work.cancel, redact=work.redact)
            plan = self.runner.plan(ws, deadline=deadline, cancel=work.cancel, redact=work.redact)
            summary = without_ignored_drift(stack, run.kind, self._summarize(work, ws, plan, deadline))
            code_applied = self._code_applied(stack, commit_sha, tree)
            decision = decide(  # then the sync windows: apply now, or wait for one
                stack,
                run.kind,
                summary,
                commit_sha=commit_sha,
                code_applied=code_applied,
                allow_destroy=run.trigger.allow_destroy,
            )
            decision = windowed(decision, stack, run, self.clock())
            summary = self._record_drift(work, summary, code_applied)
            if decision.action is Action.NOTHING:
                self._stack_follows(run, applied=False)
                return self.transitions.mark_no_changes(run, summary, decision.reason, why=decision.why)
            if decision.action is not Action.APPLY:  # recorded, asked about, or blocked by a guard
                return self.transitions.mark_held(run, summary, plan.plan_sha256, decision)
            applying = self.transitions.mark_applying(
                run, summary, plan.plan_sha256, decision.reason, why=decision.why
            )
            done = self._apply(work, ws, plan.plan_path, deadline, applying)
            log.debug("run %s took %.2fs", run.id, time.monotonic() - started)
            return done

    def _apply(self, work: RunWork, ws: Workspace, plan_path: Path, deadline: Deadline, applying: Run) -> Run:
        """Apply the plan the run was moved to `applying` for; the stack's record follows."""
        self.runner.apply(ws, plan_path, deadline=deadline, cancel=work.cancel, redact=work.redact)
        self._stack_follows(applying, applied=True)
        return self.transitions.mark_applied(applying)

    def _run_dir(self, run: Run) -> Path:
        return self.settings.runs_dir / str(run.id)

    def _workspace(self, work: RunWork, tree: Path) -> Workspace:
        if work.cloud is not None:
            # Assume the plan role and read the secrets now: a role that cannot be assumed or a
            # secret that cannot be read fails the run before any Terraform starts.
            work.cloud_env("plan")
        return Workspace(
            stack=work.stack,
            source_dir=tree / work.stack.path,
            state_dir=self.settings.stacks_dir / work.stack.name,
            run_dir=work.run_dir,
            run_id=work.run.id,  # its Terraform's process group is recorded with the run
            cloud_env=work.cloud_env if work.cloud is not None else None,
        )

    def _code_applied(self, stack: Stack, commit_sha: str, tree: Path) -> bool:
        """Is the stack's code at `commit_sha` the code it was last deployed with?"""
        state = self.store.get_stack(stack.name)
        if state is None or state.applied_sha is None:
            return False
        if state.applied_sha == commit_sha:
            return True
        return self._same_code(stack, state.applied_sha, commit_sha, tree)

    def _same_code(self, stack: Stack, old_sha: str, new_sha: str, tree: Path) -> bool:
        """No change from `old_sha` to `new_sha` touches the stack or a local module it calls
        (`tree`: a checkout of `new_sha`). Unknown history counts as a change."""
        changed = self.git.changed_paths(old_sha, new_sha)
        return changed is not None and not affected_stacks([stack], changed, ModuleAwareDetector(tree))

    def _summarize(self, work: RunWork, ws: Workspace, plan: PlanResult, deadline: Deadline) -> PlanSummary:
        if plan.certainly_empty:
            return PlanSummary(terraform_version="", format_version="")
        shown = self.runner.show_json(
            ws, plan.plan_path, deadline=deadline, cancel=work.cancel, redact=work.redact
        )
        return work.summarize(shown)

    def _record_drift(self, work: RunWork, summary: PlanSummary, code_applied: bool) -> PlanSummary:
        """Record a drift run's finding on its stack; returns what the run reports: the drift (with
        who caused it, when asked), and not code that is merely pending its deploy."""
        run = work.run
        if run.kind is not RunKind.DRIFT:
            return summary
        state = drift_state_after_plan(summary, code_applied=code_applied)
        report = drift_report(summary, code_applied=code_applied)
        if report.has_drift and work.stack.aws.attribution:
            report = replace(report, attribution=self._who_changed(work, report))
        self.store.set_drift(
            run.stack,
            state,
            summary=summary_to_dict(report) if report.has_drift else None,
            seen_at=run.started_at,
        )
        self.incidents.drift_checked(run, report)
        return report

    def _who_changed(self, work: RunWork, report: PlanSummary) -> tuple[ResourceAttribution, ...]:
        """Who wrote to the drifted resources since the stack was last seen in sync. Never fails
        the run: whatever goes wrong becomes "attribution unavailable: <reason>"."""
        drifted = {change.address for change in report.drift}
        entries = [entry for entry in work.drift_entries if entry.get("address") in drifted]
        state = self.store.get_stack(work.stack.name)
        since = state.in_sync_at if state is not None else None
        try:
            assert work.cloud is not None  # a stack with attribution on needs AWS: _take gave it
            found = work.cloud.who_changed(entries, since)
        except Exception as exc:  # noqa: BLE001 - attribution is a nicety; the drift report is not
            reason = work.redact(f"{type(exc).__name__}: {exc}").splitlines()[0]
            log.warning("run %s: drift attribution unavailable: %s", work.run.id, reason)
            found = tuple(ResourceAttribution(address, unavailable=reason) for address in sorted(drifted))
        return tuple(found_item.redacted(work.redact) for found_item in found)

    def _stack_follows(self, run: Run, *, applied: bool) -> None:
        """The stack's record follows a successful apply or an empty plan. Written before the run
        is marked done, so whoever sees the run done sees its stack's record already follow (the
        apply has happened either way)."""
        if run.kind is RunKind.DEPLOY and run.commit_sha is not None:
            self.store.mark_stack_applied(run.stack, run.commit_sha)
        elif run.kind is not RunKind.DRIFT or not applied:
            return
        self.store.set_drift(run.stack, DriftState.IN_SYNC)
        self.incidents.back_in_sync(run, applied=applied)  # a drift incident of the stack is resolved

    def _current(self, run: Run) -> Run:
        return self.store.get_run(run.id) or run
