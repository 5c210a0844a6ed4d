"""What to do with a plan: pure decisions with their reasons.

`decide` is the only place that chooses between applying a saved plan and
stopping at it. It reads top to bottom; the first rule that matches wins, and its
reason is recorded on the run so nobody has to guess why tfops did (or did not)
apply something.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from tfops.drift_ignore import IgnoreRules, touched_ignored
from tfops.guards import describe, tripped
from tfops.models import DriftState, OnDrift, OnMerge, PlanSummary, ResourceChange, RunKind, RunReason, Stack


class Action(StrEnum):
    APPLY = "apply"  # apply the saved plan now
    RECORD = "record"  # keep the plan, stop at `planned`
    ASK = "ask"  # keep the plan and wait for approvers: `awaiting_approval`
    NOTHING = "nothing"  # nothing to do: an empty plan, or a drift plan of pending code only: `no_changes`
    BLOCK = "block"  # a change guard refused it and nobody can approve it: `blocked`, nothing applied
    WAIT = "wait"  # apply, but outside the stack's sync windows: `awaiting_window` (tfops.window_gate)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str  # the detail, for people
    why: RunReason  # the same in one word, for metrics and grouping


def decide(
    stack: Stack,
    kind: RunKind,
    summary: PlanSummary,
    *,
    commit_sha: str,
    code_applied: bool,
    allow_destroy: bool = False,
) -> Decision:
    """`code_applied`: the stack's code at `commit_sha` is the code it was last deployed with
    (no change between the two commits affects the stack). `allow_destroy`: a person asked to
    apply past the change guards (`tfops deploy --allow-destroy`).

    A drift run's `summary` is the one `without_ignored_drift` returned."""
    if summary.errored:
        return Decision(
            Action.RECORD, "Terraform marked the plan as errored; nothing is applied", RunReason.PLAN_ERRORED
        )
    if not summary.has_changes and summary.ignored:
        return Decision(
            Action.NOTHING,
            "all drift found is ignored by the stack's drift rules: "
            + ", ".join(_addresses(summary.ignored)),
            RunReason.DRIFT_IGNORED,
        )
    if not summary.has_changes:
        return Decision(Action.NOTHING, "the plan has no changes", RunReason.NO_CHANGES)
    if kind is RunKind.PLAN:
        return Decision(
            Action.RECORD,
            "a plan was asked for; plans are never applied by themselves",
            RunReason.PLAN_REQUESTED,
        )
    if kind is RunKind.DEPLOY:
        return _guarded(stack, summary, _decide_deploy(stack), allow_destroy=allow_destroy)
    if kind is RunKind.DRIFT:
        decision = _decide_drift(stack, summary, commit_sha=commit_sha, code_applied=code_applied)
        return _guarded(stack, summary, decision, allow_destroy=False)
    raise ValueError(f"unknown run kind {kind!r}")


def without_ignored_drift(stack: Stack, kind: RunKind, summary: PlanSummary) -> PlanSummary:
    """A drift run's summary with what the stack's `drift.ignore` rules cover set aside (still
    recorded, as `ignored`/`ignored_changes`): it neither makes the stack drifted nor is applied."""
    if kind is not RunKind.DRIFT or not stack.drift_ignore:
        return summary
    return IgnoreRules(stack.drift_ignore).apply(summary)


def _guarded(stack: Stack, summary: PlanSummary, decision: Decision, *, allow_destroy: bool) -> Decision:
    """Change guards: a plan beyond them is never applied without a person, whatever the policy."""
    if decision.action not in (Action.APPLY, Action.ASK):
        return decision
    trips = tripped(stack.guards, summary)
    if not trips:
        return decision
    guard = describe(trips)
    if allow_destroy:
        return Decision(
            decision.action,
            f"{decision.reason}; {guard}; overridden by `tfops deploy --allow-destroy`",
            RunReason.GUARD_OVERRIDDEN if decision.action is Action.APPLY else decision.why,
        )
    if decision.action is Action.ASK or stack.approvers:
        return Decision(Action.ASK, f"{guard}; {_quorum(stack)} to apply this plan", trips[0].why)
    return Decision(
        Action.BLOCK,
        f"{guard}; nothing is applied: the stack has no approvers to ask "
        f"(`tfops deploy {stack.name} --allow-destroy` applies it, recorded as an override)",
        trips[0].why,
    )


def _decide_deploy(stack: Stack) -> Decision:
    if stack.on_merge is OnMerge.APPLY:
        return Decision(Action.APPLY, "on_merge: apply", RunReason.POLICY_APPLY)
    if stack.on_merge is OnMerge.ASK:
        return Decision(
            Action.ASK, f"on_merge: ask; {_quorum(stack)} to apply this plan", RunReason.POLICY_ASK
        )
    return Decision(
        Action.RECORD, "on_merge: plan; the plan is recorded and nothing is applied", RunReason.POLICY_RECORD
    )


def _decide_drift(stack: Stack, summary: PlanSummary, *, commit_sha: str, code_applied: bool) -> Decision:
    # Changes without drift on a stack whose code is not deployed are that code: pending, not
    # drift. Its deploy run (awaiting approval, or planned) is where it is shown and decided.
    if not code_applied and not summary.has_drift:
        return Decision(Action.NOTHING, _pending(commit_sha), RunReason.CODE_PENDING)
    if stack.on_drift not in (OnDrift.REMEDIATE, OnDrift.ASK):
        return Decision(
            Action.RECORD,
            f"on_drift: {stack.on_drift.value}; drift is recorded, not reverted",
            RunReason.POLICY_RECORD,
        )
    # A drift plan of code that was never deployed would also apply that code:
    # remediation must not become a back door around on_merge.
    if not code_applied:
        return Decision(
            Action.RECORD,
            f"on_drift: {stack.on_drift.value}, but the stack's code at {commit_sha[:10]} "
            "is not deployed yet; reverting drift would also apply new code, so it waits for the deploy",
            RunReason.CODE_PENDING,
        )
    if stack.on_drift is OnDrift.ASK:
        return Decision(
            Action.ASK, f"on_drift: ask; {_quorum(stack)} to revert the drift", RunReason.POLICY_ASK
        )
    if summary.ignored_changes:
        return _remediation_touches_ignored(stack, summary)
    return Decision(Action.APPLY, "on_drift: remediate", RunReason.POLICY_APPLY)


def _remediation_touches_ignored(stack: Stack, summary: PlanSummary) -> Decision:
    """The plan that would revert the drift also reverts ignored attributes, which must never be
    remediated: a person decides, or the drift is only reported."""
    why = "on_drift: remediate, but the plan would also revert drift the stack ignores: " + "; ".join(
        touched_ignored(summary)
    )
    if stack.approvers:
        return Decision(Action.ASK, f"{why}; {_quorum(stack)} to apply it", RunReason.IGNORED_IN_PLAN)
    return Decision(Action.RECORD, f"{why}; the drift is reported, not reverted", RunReason.IGNORED_IN_PLAN)


def _quorum(stack: Stack) -> str:
    if stack.approvals_required == 1:
        return "one approval is needed"
    return f"{stack.approvals_required} approvals by different people are needed"


def _addresses(changes: Iterable[ResourceChange]) -> list[str]:
    return list(dict.fromkeys(change.address for change in changes))


def _pending(commit_sha: str) -> str:
    return (
        f"no drift; the plan's changes are the stack's code at {commit_sha[:10]}, which is not deployed "
        "yet (pending: its deploy run shows and decides it)"
    )


def drift_state_after_plan(summary: PlanSummary, *, code_applied: bool) -> DriftState:
    """After a drift plan. Drift is what changed outside Terraform (`resource_drift`); changes alone
    are drift only when the code is deployed, and otherwise the undeployed code: pending."""
    if summary.has_drift:
        return DriftState.DRIFTED
    if not summary.has_changes:
        return DriftState.IN_SYNC
    return DriftState.DRIFTED if code_applied else DriftState.PENDING


def drift_report(summary: PlanSummary, *, code_applied: bool) -> PlanSummary:
    """What a drift run records and posts: the drift alone when the plan also carries code not
    deployed yet (its changes mix reverting the drift with deploying that code)."""
    return summary if code_applied else summary.drift_only()
