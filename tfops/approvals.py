"""Approve and Reject: who may decide, whether the decision still binds, and what happens then.

`judge` is pure: it takes what the desk found out (the run, the stack, whether the person is an
approver, the binding checks) and returns a verdict with its reason, reading top to bottom; the
first rule that matches wins. `ApprovalDesk` is the thin edge around it: it gathers those facts,
records every decision and an audit entry, and moves the run through the named transitions.

Nothing here applies anything: an approved run goes back to the run queue, whose worker checks the
binding once more under the stack's lock and applies exactly the saved plan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from tfops.models import DecisionKind, DecisionOutcome, DecisionSource, Run, RunReason, RunStatus, Stack
from tfops.reconcile import Transitions
from tfops.store import InvalidTransition, Store
from tfops.store.store import Decision, utc_now

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    REFUSE = "refuse"  # nothing changes; the person is told why
    DUPLICATE = "duplicate"  # the same person's same decision already counts
    COUNT = "count"  # an approval that counts, more are needed
    APPROVE = "approve"  # the quorum is reached: apply the saved plan
    REJECT = "reject"
    SUPERSEDE = "supersede"  # the plan is stale: end the run and plan again
    EXPIRE = "expire"  # the approval window closed


@dataclass(frozen=True)
class DecisionRequest:
    """One click (or CLI command). `commit_sha`/`plan_sha256`: the binding the button carried."""

    run_id: int
    decision: DecisionKind
    actor_id: str
    actor_name: str | None
    source: DecisionSource
    commit_sha: str | None = None  # None from the CLI: it decides on the run as stored
    plan_sha256: str | None = None

    @property
    def who(self) -> str:
        return self.actor_name or self.actor_id


@dataclass(frozen=True)
class Facts:
    """What the desk found out before judging."""

    run: Run | None
    stack: Stack | None
    now: datetime
    is_approver: bool | None = None  # None: group membership could not be checked
    awaiting_since: datetime | None = None
    stale: str | None = None  # why the saved plan may no longer be applied (Reconciler.stale_binding)
    head_unknown: str | None = None  # why the branch head could not be confirmed just now
    decisions: Sequence[Decision] = ()  # every decision on the run so far


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    reason: str


def judge(request: DecisionRequest, facts: Facts) -> Judgement:
    run, stack = facts.run, facts.stack
    if run is None:
        return Judgement(Verdict.REFUSE, f"run {request.run_id} does not exist")
    if stack is None:
        return Judgement(Verdict.REFUSE, f"stack {run.stack!r} is no longer configured")
    # A button carries the binding it was shown with; one that differs was not made by tfops.
    if request.commit_sha is not None and request.commit_sha != run.commit_sha:
        return Judgement(Verdict.REFUSE, f"this button does not belong to run {run.id}'s plan")
    if request.plan_sha256 is not None and request.plan_sha256 != run.plan_sha256:
        return Judgement(Verdict.REFUSE, f"this button does not belong to run {run.id}'s plan")
    # The CLI is trusted like `terraform apply` on this machine; Slack users must be approvers.
    if request.source is DecisionSource.SLACK:
        if facts.is_approver is None:
            return Judgement(
                Verdict.REFUSE,
                "approver groups could not be checked with Slack just now; try again, "
                f"or use `tfops {request.decision} {run.id}` on the tfops host",
            )
        if not facts.is_approver:
            return Judgement(Verdict.REFUSE, f"you are not an approver of stack {stack.name}")
    if run.status is not RunStatus.AWAITING_APPROVAL:
        return _already_decided(request, run, facts.decisions)
    if _already_counts(request, facts.decisions):
        counted = len(_counted_approvers(facts.decisions))
        return Judgement(
            Verdict.DUPLICATE,
            f"you already {_past(request.decision)} run {run.id}"
            + (f" ({counted} of {stack.approvals_required} approvals)" if _is_approval(request) else ""),
        )
    # Rejecting is always safe, and says more than "expired" does.
    if request.decision is DecisionKind.REJECT:
        return Judgement(Verdict.REJECT, f"rejected by {request.who}")
    if facts.awaiting_since is not None and facts.now >= facts.awaiting_since + timedelta(
        seconds=stack.approval_ttl
    ):
        return Judgement(Verdict.EXPIRE, _expired_reason(stack))
    if facts.head_unknown is not None:
        return Judgement(Verdict.REFUSE, f"{facts.head_unknown}; nothing was applied, try again later")
    if facts.stale is not None:
        return Judgement(Verdict.SUPERSEDE, facts.stale)
    approvers = {*_counted_approvers(facts.decisions), request.actor_id}
    if len(approvers) >= stack.approvals_required:
        return Judgement(Verdict.APPROVE, f"approved by {request.who}")
    return Judgement(
        Verdict.COUNT,
        f"approved by {request.who} ({len(approvers)} of {stack.approvals_required} approvals)",
    )


def _worth_checking_binding(request: DecisionRequest, facts: Facts) -> bool:
    """Only an approval that every other rule lets through pays for a fetch and a plan hash."""
    run = facts.run
    if request.decision is not DecisionKind.APPROVE or run is None:
        return False
    if run.status is not RunStatus.AWAITING_APPROVAL:
        return False
    if request.source is DecisionSource.SLACK and not facts.is_approver:
        return False
    if request.commit_sha not in (None, run.commit_sha) or request.plan_sha256 not in (None, run.plan_sha256):
        return False
    return not _already_counts(request, facts.decisions)


def is_expired(run: Run, stack: Stack, awaiting_since: datetime | None, now: datetime) -> bool:
    if run.status is not RunStatus.AWAITING_APPROVAL or awaiting_since is None:
        return False
    return now >= awaiting_since + timedelta(seconds=stack.approval_ttl)


def _expired_reason(stack: Stack) -> str:
    return f"not approved within approval_ttl ({_hours(stack.approval_ttl)}); the saved plan is deleted"


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds:g}s"


def _already_decided(request: DecisionRequest, run: Run, decisions: Sequence[Decision]) -> Judgement:
    counted = [d for d in decisions if d.outcome is DecisionOutcome.COUNTED]
    approvers = [d.actor_name or d.actor_id for d in counted if d.decision is DecisionKind.APPROVE]
    rejecters = [d.actor_name or d.actor_id for d in counted if d.decision is DecisionKind.REJECT]
    if rejecters and run.status is RunStatus.REJECTED:
        return Judgement(Verdict.REFUSE, f"run {run.id} was already rejected by {rejecters[-1]}")
    if approvers and run.status in (RunStatus.APPROVED, RunStatus.APPLYING, RunStatus.APPLIED):
        return Judgement(
            Verdict.REFUSE, f"run {run.id} was already approved by {', '.join(dict.fromkeys(approvers))}"
        )
    return Judgement(Verdict.REFUSE, f"run {run.id} is {run.status.value}, not awaiting approval")


def _counted_approvers(decisions: Sequence[Decision]) -> list[str]:
    ids = [
        d.actor_id
        for d in decisions
        if d.decision is DecisionKind.APPROVE and d.outcome is DecisionOutcome.COUNTED
    ]
    return list(dict.fromkeys(ids))


def _already_counts(request: DecisionRequest, decisions: Sequence[Decision]) -> bool:
    return any(
        d.actor_id == request.actor_id
        and d.decision is request.decision
        and d.outcome is DecisionOutcome.COUNTED
        for d in decisions
    )


def _is_approval(request: DecisionRequest) -> bool:
    return request.decision is DecisionKind.APPROVE


def _past(decision: DecisionKind) -> str:
    return "approved" if decision is DecisionKind.APPROVE else "rejected"


# --- the edge ----------------------------------------------------------------------------------------


class ApproverDirectory(Protocol):
    def is_approver(self, user_id: str, approvers: Sequence[str]) -> bool | None:
        """True/False, or None when a group's members could not be looked up."""
        ...


class BindingCheck(Protocol):
    def stale_binding(self, run: Run, stack: Stack) -> str | None: ...


@dataclass(frozen=True)
class Answer:
    """What the person who decided is told (an ephemeral message in Slack, a line on the CLI)."""

    verdict: Verdict
    text: str
    run: Run | None


_COUNTED_VERDICTS = frozenset({Verdict.COUNT, Verdict.APPROVE, Verdict.REJECT})


class ApprovalDesk:
    def __init__(
        self,
        *,
        store: Store,
        transitions: Transitions,
        stacks: Callable[[], Mapping[str, Stack]],
        binding: BindingCheck,
        directory: ApproverDirectory | None,
        start_apply: Callable[[Run], None],
        replan: Callable[[Run], None],
        confirm_head: Callable[[], str | None] = lambda: None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.confirm_head = confirm_head
        self.store = store
        self.transitions = transitions
        self.stacks = stacks
        self.binding = binding
        self.directory = directory
        self.start_apply = start_apply
        self.replan = replan
        self.clock = clock
        # One decision at a time in this process; across processes the store's transitions are
        # conditional on the run's status, so only one of two racing quorums moves it.
        self._lock = threading.Lock()

    def decide(self, request: DecisionRequest, *, transport: str = "") -> Answer:
        with self._lock:
            try:
                facts = self._facts(request)
                judgement = judge(request, facts)
                answer = self._carry_out(request, facts, judgement)
            except Exception:
                # A refusal nobody hears of is worse than a refusal: answer and audit it anyway.
                log.exception("deciding on run %s failed", request.run_id)
                answer = Answer(
                    Verdict.REFUSE, "tfops could not decide just now (see its log); try again", None
                )
        self._audit(request, answer, transport)
        log.info(
            "%s of run %s by %s (%s): %s — %s",
            request.decision, request.run_id, request.who, request.source, answer.verdict, answer.text,
        )  # fmt: skip
        return answer

    def expire_due(self) -> list[Run]:
        """End every run whose approval window closed. Called by the scheduler."""
        expired = []
        now = self.clock()
        for run in self.store.runs_with_status({RunStatus.AWAITING_APPROVAL}):
            stack = self.stacks().get(run.stack)
            if stack is None:
                reason = f"stack {run.stack!r} is no longer configured; the saved plan is deleted"
            elif is_expired(run, stack, self._awaiting_since(run), now):
                reason = _expired_reason(stack)
            else:
                continue
            try:
                expired.append(self.transitions.mark_expired(run, reason))
            except InvalidTransition:
                continue  # decided meanwhile
            except Exception:
                log.exception("could not expire run %s; the other runs are still checked", run.id)
        return expired

    # -- steps ------------------------------------------------------------------------------------

    def _facts(self, request: DecisionRequest) -> Facts:
        run = self.store.get_run(request.run_id)
        stack = self.stacks().get(run.stack) if run is not None else None
        if run is None or stack is None:
            return Facts(run=run, stack=stack, now=self.clock())
        is_approver = self._is_approver(request, stack)
        facts = Facts(
            run=run,
            stack=stack,
            now=self.clock(),
            is_approver=is_approver,
            decisions=self.store.decisions(run.id),
        )
        if _worth_checking_binding(request, facts):
            # Git work only for a genuine approval: learn the branch head now (a fetch), then
            # check that the head still carries the planned code and the plan file is unchanged.
            unconfirmed = self.confirm_head()
            run = self.store.get_run(run.id) or run
            facts = replace(facts, run=run, head_unknown=unconfirmed)
            if run.status is RunStatus.AWAITING_APPROVAL and unconfirmed is None:
                facts = replace(facts, stale=self.binding.stale_binding(run, stack))
        awaiting = run.status is RunStatus.AWAITING_APPROVAL
        return replace(facts, awaiting_since=self._awaiting_since(run) if awaiting else None)

    def _is_approver(self, request: DecisionRequest, stack: Stack) -> bool | None:
        if request.source is not DecisionSource.SLACK:
            return None  # not asked: the CLI is trusted like the host
        if self.directory is None:
            return request.actor_id in stack.approvers
        return self.directory.is_approver(request.actor_id, stack.approvers)

    def _carry_out(self, request: DecisionRequest, facts: Facts, judgement: Judgement) -> Answer:
        run = facts.run
        verdict = judgement.verdict
        if run is None:
            return Answer(verdict, judgement.reason, None)
        recorded = self._record(request, run, judgement)
        if recorded.outcome is DecisionOutcome.DUPLICATE and verdict in _COUNTED_VERDICTS:
            # Another click of the same person won the race inside the store.
            return Answer(Verdict.DUPLICATE, recorded.reason or judgement.reason, run)
        if verdict is Verdict.COUNT and facts.stack is not None and self._quorum_met(run, facts.stack):
            # Another process counted an approval since we read them: this one completes the quorum.
            verdict = Verdict.APPROVE
        try:
            run = self._move(run, verdict, judgement.reason, request)
        except InvalidTransition:
            current = self.store.get_run(run.id) or run
            return Answer(
                Verdict.REFUSE, f"run {run.id} is {current.status.value} now; nothing changed", current
            )
        return Answer(verdict, judgement.reason, run)

    def _move(self, run: Run, verdict: Verdict, reason: str, request: DecisionRequest) -> Run:
        if verdict is Verdict.APPROVE:
            approved = self.transitions.mark_approved(run, self._approvers_text(run))
            self.start_apply(approved)
            return approved
        if verdict is Verdict.REJECT:
            return self.transitions.mark_rejected(run, request.who)
        if verdict is Verdict.EXPIRE:
            return self.transitions.mark_expired(run, reason)
        if verdict is Verdict.SUPERSEDE:
            done = self.transitions.mark_superseded(
                run, f"{reason}; planning again", why=RunReason.STALE_PLAN
            )
            self.replan(done)
            return done
        if verdict is Verdict.COUNT:
            self.transitions.note_decision(run, reason)
        return run

    def _record(self, request: DecisionRequest, run: Run, judgement: Judgement) -> Decision:
        if judgement.verdict in _COUNTED_VERDICTS:
            outcome = DecisionOutcome.COUNTED
        elif judgement.verdict is Verdict.DUPLICATE:
            outcome = DecisionOutcome.DUPLICATE
        else:
            outcome = DecisionOutcome.REFUSED
        return self.store.record_decision(
            run.id,
            request.decision,
            request.actor_id,
            request.actor_name,
            request.source,
            request.commit_sha or run.commit_sha,
            request.plan_sha256 or run.plan_sha256,
            outcome,
            None if outcome is DecisionOutcome.COUNTED else judgement.reason,
        )

    def _quorum_met(self, run: Run, stack: Stack) -> bool:
        return len(self.store.counted_approvals(run.id)) >= stack.approvals_required

    def _approvers_text(self, run: Run) -> str:
        names = [d.actor_name or d.actor_id for d in self.store.counted_approvals(run.id)]
        return ", ".join(names) or "unknown"

    def _awaiting_since(self, run: Run) -> datetime | None:
        moments = [e.at for e in self.store.events(run.id) if e.to_status is RunStatus.AWAITING_APPROVAL]
        return moments[-1] if moments else None

    def _audit(self, request: DecisionRequest, answer: Answer, transport: str) -> None:
        self.store.audit(
            request.actor_id,
            request.actor_name,
            str(request.decision),
            request.run_id,
            {
                "verdict": answer.verdict.value,
                "reason": answer.text,
                "source": request.source.value,
                "transport": transport or request.source.value,
                "commit_sha": request.commit_sha,
                "plan_sha256": request.plan_sha256,
            },
        )
