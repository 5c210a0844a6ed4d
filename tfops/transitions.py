"""Named status changes of a run: the only place where a run's status changes.

Each method is named after an outcome, persists it first (the store refuses to move a terminal
run), and only then tells the notifier. Each records why, in one word (`RunReason`, here `Why`):
the default is the usual reason for that outcome, and callers that know better say so.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from pathlib import Path

from tfops.models import PLAN_KEPT_STATUSES, PlanSummary, Run, RunKind, RunStatus
from tfops.models import RunReason as Why
from tfops.notify import Notifier, RunNotice
from tfops.policy import Action, Decision
from tfops.store import InvalidTransition, Store
from tfops.terraform.plan import summary_to_dict
from tfops.terraform.runner import PLAN_FILE

_QUEUED = {RunStatus.QUEUED}
_PLANNING = {RunStatus.PLANNING}
_APPLYING = {RunStatus.APPLYING}
_AWAITING = {RunStatus.AWAITING_APPROVAL}
_READY_TO_APPLY = {RunStatus.PLANNING, RunStatus.APPROVED}
_WINDOW_HOLDS = {RunStatus.PLANNING, RunStatus.APPROVED}  # decided (or approved) to apply, outside a window
_AWAITING_WINDOW = {RunStatus.AWAITING_WINDOW}


class Transitions:
    """Named status changes: persist, then announce.

    `runs_dir`: where runs keep their saved plans; a plan is deleted as soon as its run reaches a
    status in which it can no longer be applied (it holds secrets in clear).
    """

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        runs_dir: Path | None = None,
        *,
        instance_id: str | None = None,
    ) -> None:
        """`instance_id`: this daemon among those sharing the store (tfops.ha), recorded on the runs
        it starts; None for a process that is no instance (a one-shot command)."""
        self.store = store
        self.notifier = notifier
        self.runs_dir = runs_dir
        self.instance_id = instance_id

    def mark_planning(self, run: Run, *, log_path: Path) -> Run:
        """Raises InvalidTransition when taken meanwhile, and its `StackBusy` when another run of the
        stack is planning or applying (the store's unique index refuses a second one)."""
        return self._move(
            run,
            RunStatus.PLANNING,
            _QUEUED,
            "planning",
            Why.STARTED,
            log_path=str(log_path),
            instance_id=self.instance_id,
        )

    def mark_no_changes(
        self, run: Run, summary: PlanSummary, reason: str, *, why: Why = Why.NO_CHANGES
    ) -> Run:
        return self._move(run, RunStatus.NO_CHANGES, _PLANNING, reason, why, summary=summary)

    def mark_planned(
        self, run: Run, summary: PlanSummary, plan_sha256: str, reason: str, *, why: Why = Why.POLICY_RECORD
    ) -> Run:
        return self._move(
            run, RunStatus.PLANNED, _PLANNING, reason, why, summary=summary, plan_sha256=plan_sha256
        )

    def mark_applying(
        self, run: Run, summary: PlanSummary, plan_sha256: str, reason: str, *, why: Why = Why.POLICY_APPLY
    ) -> Run:
        return self._move(
            run, RunStatus.APPLYING, _READY_TO_APPLY, reason, why, summary=summary, plan_sha256=plan_sha256
        )

    def mark_held(self, run: Run, summary: PlanSummary, plan_sha256: str, decision: Decision) -> Run:
        """A plan that is not applied now, as `decide` said: recorded, asked about, blocked, or held
        for a sync window."""
        marks = {
            Action.RECORD: self.mark_planned,
            Action.ASK: self.mark_awaiting_approval,
            Action.BLOCK: self.mark_blocked,
            Action.WAIT: self.mark_awaiting_window,
        }
        return marks[decision.action](run, summary, plan_sha256, decision.reason, why=decision.why)

    def mark_blocked(
        self, run: Run, summary: PlanSummary, plan_sha256: str, reason: str, *, why: Why = Why.GUARD_PROTECTED
    ) -> Run:
        """A change guard refused the plan and nobody can approve it: it ends here, unapplied."""
        return self._move(
            run, RunStatus.BLOCKED, _PLANNING, reason, why, summary=summary, plan_sha256=plan_sha256
        )

    def mark_upstream_blocked(self, run: Run, reason: str) -> Run:
        """`depends_on`: an upstream stack's deploy did not land; this queued deploy ends unplanned
        rather than plan against the upstream's stale outputs (tfops.ordering)."""
        return self._move(run, RunStatus.BLOCKED, _QUEUED, reason, Why.UPSTREAM_FAILED)

    def mark_awaiting_approval(
        self, run: Run, summary: PlanSummary, plan_sha256: str, reason: str, *, why: Why = Why.POLICY_ASK
    ) -> Run:
        return self._move(
            run, RunStatus.AWAITING_APPROVAL, _PLANNING, reason, why, summary=summary, plan_sha256=plan_sha256
        )

    def mark_awaiting_window(
        self,
        run: Run,
        summary: PlanSummary | None,
        plan_sha256: str | None,
        reason: str,
        *,
        why: Why = Why.WINDOW_CLOSED,
    ) -> Run:
        """Cleared to apply, but outside the stack's sync windows: it waits with its plan (and the
        approvals it has) for the wake-up job (`tfops.scheduler`) to see a window open."""
        fields = {"plan_sha256": plan_sha256} if plan_sha256 is not None else {}
        return self._move(
            run, RunStatus.AWAITING_WINDOW, _WINDOW_HOLDS, reason, why, summary=summary, **fields
        )

    def mark_window_open(self, run: Run) -> Run:
        """The window opened: the run goes on to its (re-checked) apply, as an approved run does."""
        return self._move(
            run,
            RunStatus.APPROVED,
            _AWAITING_WINDOW,
            "the sync window is open: the saved plan goes on to its apply",
            Why.WINDOW_OPENED,
        )

    def supersede_window_waiters(self, run: Run) -> None:
        """A newer deploy makes the stack's plans that wait for a window pointless, and a newer drift
        plan the drift plans that do: they are superseded when it starts planning."""
        for older in self.store.open_runs(run.stack):
            if older.id >= run.id or older.status is not RunStatus.AWAITING_WINDOW:
                continue
            if run.kind is RunKind.DEPLOY or older.kind is run.kind:
                reason = f"superseded by run {run.id} of commit {(run.commit_sha or '')[:10]}"
                try:
                    self.mark_superseded(older, reason, allowed_from=_AWAITING_WINDOW)
                except InvalidTransition:
                    continue  # its window opened and it started meanwhile

    def mark_approved(self, run: Run, by: str) -> Run:
        return self._move(
            run, RunStatus.APPROVED, _AWAITING, f"approved by {by}", Why.APPROVED, decided_by=by
        )

    def mark_rejected(self, run: Run, by: str) -> Run:
        return self._move(
            run, RunStatus.REJECTED, _AWAITING, f"rejected by {by}", Why.REJECTED, decided_by=by
        )

    def mark_expired(self, run: Run, reason: str) -> Run:
        return self._move(run, RunStatus.EXPIRED, _AWAITING, reason, Why.APPROVAL_EXPIRED)

    def note_decision(self, run: Run, message: str) -> None:
        """A decision that does not move the run yet (one approval of two): announce it only."""
        self.notifier.run_changed(RunNotice(run=run, message=message))

    def mark_applied(self, run: Run) -> Run:
        return self._move(run, RunStatus.APPLIED, _APPLYING, "applied", Why.APPLIED, exit_code=0)

    def mark_failed(self, run: Run, error: str, *, exit_code: int | None = None, why: Why = Why.ERROR) -> Run:
        first_line = error.splitlines()[0]
        return self._move(run, RunStatus.FAILED, None, first_line, why, error=error, exit_code=exit_code)

    def mark_timed_out(self, run: Run, error: str) -> Run:
        return self._move(run, RunStatus.TIMED_OUT, None, error, Why.TIMEOUT, error=error)

    def mark_interrupted(self, run: Run, reason: str, *, why: Why = Why.STOPPED) -> Run:
        return self._move(run, RunStatus.INTERRUPTED, None, reason, why, error=reason)

    def mark_superseded(
        self,
        run: Run,
        reason: str,
        *,
        allowed_from: AbstractSet[RunStatus] | None = None,
        why: Why = Why.NEWER_COMMIT,
    ) -> Run:
        return self._move(run, RunStatus.SUPERSEDED, allowed_from, reason, why)

    def _move(
        self,
        run: Run,
        to: RunStatus,
        allowed_from: AbstractSet[RunStatus] | None,
        message: str,
        why: Why,
        *,
        summary: PlanSummary | None = None,
        **fields,
    ) -> Run:
        if summary is not None:
            fields["summary"] = summary_to_dict(summary)
        updated = self.store.transition(
            run.id, to, allowed_from=allowed_from, message=message, reason=why, **fields
        )
        if self.runs_dir is not None and updated.status.is_terminal:
            drop_plan_unless_kept(self.runs_dir / str(run.id), updated)
        self.notifier.run_changed(RunNotice(run=updated, message=message, summary=summary))
        return updated


def drop_plan_unless_kept(run_dir: Path, run: Run) -> None:
    """A saved plan holds secrets in clear; keep it only while it may still be applied."""
    if run.status in PLAN_KEPT_STATUSES:
        return
    (run_dir / PLAN_FILE).unlink(missing_ok=True)
