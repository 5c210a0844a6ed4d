"""Approve and Reject: the pure verdicts of `judge`, and the desk that records and carries them out.

The desk scenarios use a real SQLite store and the real named transitions; only the edges that
would reach git or Slack (the binding check, the approver directory) and the run queue are fakes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tfops.approvals import ApprovalDesk, DecisionRequest, Facts, Verdict, is_expired, judge
from tfops.models import (
    DecisionKind,
    DecisionOutcome,
    DecisionSource,
    OnMerge,
    PlanSummary,
    Run,
    RunKind,
    RunStatus,
    Stack,
    Trigger,
    TriggerSource,
)
from tfops.notify import RunNotice
from tfops.reconcile import PLAN_FILE, Transitions
from tfops.store import Store
from tfops.store.store import Decision, utc_now

APPROVE, REJECT = DecisionKind.APPROVE, DecisionKind.REJECT
SLACK, CLI = DecisionSource.SLACK, DecisionSource.CLI
COUNTED, REFUSED, DUPLICATE = DecisionOutcome.COUNTED, DecisionOutcome.REFUSED, DecisionOutcome.DUPLICATE
AWAITING = RunStatus.AWAITING_APPROVAL

POLL = Trigger(source=TriggerSource.POLL, actor="poll")
SHA = "a" * 40
NEWER_SHA = "b" * 40
PLAN = "f" * 64
OTHER_PLAN = "e" * 64
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TTL = 3600.0
RUN_ID = 7

ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
NAMES = {ALICE: "alice", BOB: "bob", CAROL: "carol"}


# --- judge (pure) ------------------------------------------------------------------------------------


def a_stack(**changes) -> Stack:
    base = Stack(
        name="network",
        path="stacks/network",
        on_merge=OnMerge.ASK,
        approvers=(ALICE, BOB, "S0APPROVERS"),
        approval_ttl=TTL,
    )
    return replace(base, **changes)


def a_run(status: RunStatus = AWAITING) -> Run:
    return Run(
        id=RUN_ID,
        stack="network",
        kind=RunKind.DEPLOY,
        status=status,
        trigger=POLL,
        commit_sha=SHA,
        plan_sha256=PLAN,
    )


def click(
    decision: DecisionKind = APPROVE, actor: str = ALICE, *, commit: str = SHA, plan: str = PLAN
) -> DecisionRequest:
    return DecisionRequest(
        run_id=RUN_ID,
        decision=decision,
        actor_id=actor,
        actor_name=NAMES.get(actor),
        source=SLACK,
        commit_sha=commit,
        plan_sha256=plan,
    )


def from_cli(decision: DecisionKind = APPROVE, user: str = "ops") -> DecisionRequest:
    return DecisionRequest(run_id=RUN_ID, decision=decision, actor_id=user, actor_name=user, source=CLI)


def decided(decision: DecisionKind, actor: str, outcome: DecisionOutcome = COUNTED) -> Decision:
    return Decision(
        id=0,
        run_id=RUN_ID,
        decision=decision,
        actor_id=actor,
        actor_name=NAMES.get(actor),
        source=SLACK,
        commit_sha=SHA,
        plan_sha256=PLAN,
        at=NOW - timedelta(minutes=5),
        outcome=outcome,
        reason=None,
    )


def facts(
    *,
    run: Run | None = None,
    stack: Stack | None = None,
    is_approver: bool | None = True,
    waited: timedelta = timedelta(minutes=10),
    stale: str | None = None,
    decisions: Sequence[Decision] = (),
) -> Facts:
    return Facts(
        run=run or a_run(),
        stack=stack or a_stack(),
        now=NOW,
        is_approver=is_approver,
        awaiting_since=NOW - waited,
        stale=stale,
        decisions=tuple(decisions),
    )


def test_a_non_approvers_click_is_refused_as_not_an_approver():
    judgement = judge(click(actor=CAROL), facts(is_approver=False))

    assert judgement.verdict is Verdict.REFUSE
    assert "not an approver of stack network" in judgement.reason


def test_unknown_group_membership_is_refused_and_the_cli_is_suggested():
    judgement = judge(click(REJECT), facts(is_approver=None))

    assert judgement.verdict is Verdict.REFUSE
    assert "could not be checked" in judgement.reason
    assert f"tfops reject {RUN_ID}" in judgement.reason


def test_a_cli_decision_needs_no_approvers_list():
    judgement = judge(from_cli(), facts(stack=a_stack(approvers=()), is_approver=None))

    assert judgement == judge(from_cli(), facts(stack=a_stack(approvers=()), is_approver=False))
    assert judgement.verdict is Verdict.APPROVE
    assert judgement.reason == "approved by ops"


@pytest.mark.parametrize(
    "request_",
    [click(commit=NEWER_SHA), click(plan=OTHER_PLAN), click(REJECT, commit=NEWER_SHA)],
    ids=["other-commit", "other-plan-hash", "reject-with-other-commit"],
)
def test_a_button_whose_binding_differs_from_the_runs_is_refused(request_: DecisionRequest):
    judgement = judge(request_, facts())

    assert judgement.verdict is Verdict.REFUSE
    assert judgement.reason == f"this button does not belong to run {RUN_ID}'s plan"


@pytest.mark.parametrize(
    ("status", "decisions", "expected"),
    [
        (RunStatus.APPROVED, [decided(APPROVE, ALICE)], "was already approved by alice"),
        (
            RunStatus.APPLIED,
            [decided(APPROVE, ALICE), decided(APPROVE, BOB)],
            "was already approved by alice, bob",
        ),
        (RunStatus.REJECTED, [decided(APPROVE, ALICE), decided(REJECT, BOB)], "was already rejected by bob"),
        (RunStatus.EXPIRED, [], "is expired, not awaiting approval"),
        (RunStatus.SUPERSEDED, [decided(APPROVE, ALICE, REFUSED)], "is superseded, not awaiting approval"),
        (RunStatus.APPLYING, [], "is applying, not awaiting approval"),
    ],
)
def test_a_click_on_a_run_no_longer_awaiting_approval_says_what_became_of_it(status, decisions, expected):
    judgement = judge(click(), facts(run=a_run(status), decisions=decisions))

    assert judgement.verdict is Verdict.REFUSE
    assert judgement.reason == f"run {RUN_ID} {expected}"


def test_the_same_persons_second_approval_is_a_duplicate():
    judgement = judge(click(), facts(decisions=[decided(APPROVE, ALICE)]))

    assert judgement.verdict is Verdict.DUPLICATE
    assert judgement.reason.startswith(f"you already approved run {RUN_ID}")


def test_with_two_approvals_required_the_first_counts_and_a_second_person_approves():
    two = a_stack(approvals_required=2)

    first = judge(click(actor=ALICE), facts(stack=two))
    second = judge(click(actor=BOB), facts(stack=two, decisions=[decided(APPROVE, ALICE)]))

    assert (first.verdict, first.reason) == (Verdict.COUNT, "approved by alice (1 of 2 approvals)")
    assert (second.verdict, second.reason) == (Verdict.APPROVE, "approved by bob")


def test_with_two_approvals_required_the_same_person_twice_stays_at_one():
    judgement = judge(
        click(actor=ALICE), facts(stack=a_stack(approvals_required=2), decisions=[decided(APPROVE, ALICE)])
    )

    assert judgement.verdict is Verdict.DUPLICATE
    assert "(1 of 2 approvals)" in judgement.reason


def test_refused_and_duplicate_decisions_do_not_count_towards_the_quorum():
    earlier = [decided(APPROVE, CAROL, REFUSED), decided(APPROVE, BOB, DUPLICATE)]

    judgement = judge(click(actor=ALICE), facts(stack=a_stack(approvals_required=2), decisions=earlier))

    assert (judgement.verdict, judgement.reason) == (Verdict.COUNT, "approved by alice (1 of 2 approvals)")


def test_a_closed_approval_window_expires_the_run_on_an_approval():
    judgement = judge(click(APPROVE), facts(waited=timedelta(seconds=TTL)))

    assert judgement.verdict is Verdict.EXPIRE
    assert "not approved within approval_ttl (1h)" in judgement.reason


def test_a_reject_after_the_window_closed_still_rejects():
    # Rejecting is always safe and says more than "expired".
    judgement = judge(click(REJECT), facts(waited=timedelta(seconds=TTL)))

    assert judgement.verdict is Verdict.REJECT


def test_the_approval_window_is_open_until_its_last_second():
    judgement = judge(click(), facts(waited=timedelta(seconds=TTL - 1)))

    assert judgement.verdict is Verdict.APPROVE


def test_an_approvers_reject_rejects_even_when_the_binding_is_stale():
    judgement = judge(click(REJECT, BOB), facts(stale="the branch moved on to bbbbbbbbbb"))

    assert (judgement.verdict, judgement.reason) == (Verdict.REJECT, "rejected by bob")


def test_an_approval_of_a_stale_binding_supersedes_the_run_with_the_reason():
    why = "the branch moved on to bbbbbbbbbb, which changes this stack"

    judgement = judge(click(), facts(stale=why))

    assert (judgement.verdict, judgement.reason) == (Verdict.SUPERSEDE, why)


def test_a_decision_on_a_missing_run_or_an_unconfigured_stack_is_refused():
    missing_run = judge(click(), Facts(run=None, stack=None, now=NOW))
    gone_stack = judge(click(), Facts(run=a_run(), stack=None, now=NOW))

    assert (missing_run.verdict, missing_run.reason) == (Verdict.REFUSE, f"run {RUN_ID} does not exist")
    assert (gone_stack.verdict, gone_stack.reason) == (
        Verdict.REFUSE,
        "stack 'network' is no longer configured",
    )


def test_only_an_awaiting_run_past_its_ttl_is_expired():
    since = NOW - timedelta(seconds=TTL)

    assert is_expired(a_run(), a_stack(), since, NOW)
    assert not is_expired(a_run(), a_stack(), since + timedelta(seconds=1), NOW)
    assert not is_expired(a_run(RunStatus.APPROVED), a_stack(), since, NOW)
    assert not is_expired(a_run(), a_stack(), None, NOW)


# --- the desk, on a real store ---------------------------------------------------------------------


@dataclass
class ListNotifier:
    notices: list[RunNotice] = field(default_factory=list)

    def run_changed(self, notice: RunNotice) -> None:
        self.notices.append(notice)

    @property
    def messages(self) -> list[str]:
        return [notice.message for notice in self.notices]


@dataclass
class FakeBinding:
    reason: str | None = None
    checked: list[int] = field(default_factory=list)

    def stale_binding(self, run: Run, stack: Stack) -> str | None:
        self.checked.append(run.id)
        return self.reason


@dataclass
class FakeDirectory:
    answers: dict[str, bool | None]
    asked: list[str] = field(default_factory=list)

    def is_approver(self, user_id: str, approvers: Sequence[str]) -> bool | None:
        self.asked.append(user_id)
        return self.answers.get(user_id, False)


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Desk:
    store: Store
    transitions: Transitions
    notifier: ListNotifier
    binding: FakeBinding
    directory: FakeDirectory
    clock: Clock
    runs_dir: Path
    stacks: dict[str, Stack]
    applied: list[Run]
    replanned: list[Run]
    desk: ApprovalDesk

    def awaiting_run(self, stack: str = "network") -> Run:
        run = self.store.create_run(stack, RunKind.DEPLOY, POLL, SHA, status=RunStatus.PLANNING)
        plan = self.plan_file(run)
        plan.parent.mkdir(parents=True)
        plan.write_bytes(b"saved plan, secrets in clear")
        return self.transitions.mark_awaiting_approval(
            run, PlanSummary(terraform_version="1.0.3", format_version="1.0"), PLAN, "waiting for approval"
        )

    def plan_file(self, run: Run) -> Path:
        return self.runs_dir / str(run.id) / PLAN_FILE

    def status(self, run: Run) -> RunStatus:
        return self.store.get_run(run.id).status

    def decide(self, run_id: int, decision: DecisionKind = APPROVE, actor: str = ALICE):
        request = DecisionRequest(
            run_id=run_id,
            decision=decision,
            actor_id=actor,
            actor_name=NAMES.get(actor),
            source=SLACK,
            commit_sha=SHA,
            plan_sha256=PLAN,
        )
        return self.desk.decide(request, transport="socket")


@pytest.fixture
def desk(tmp_path: Path):
    store = Store(Store.sqlite_url(tmp_path / "t.db"))
    store.upgrade()
    store.sync_stacks([("network", "stacks/network"), ("dns", "stacks/dns")])
    notifier = ListNotifier()
    runs_dir = tmp_path / "runs"
    transitions = Transitions(store, notifier, runs_dir)
    stacks = {"network": a_stack(), "dns": a_stack(name="dns", path="stacks/dns", approval_ttl=2 * TTL)}
    binding = FakeBinding()
    directory = FakeDirectory({ALICE: True, BOB: True, CAROL: False})
    clock = Clock(utc_now())
    applied: list[Run] = []
    replanned: list[Run] = []
    approval_desk = ApprovalDesk(
        store=store,
        transitions=transitions,
        stacks=lambda: stacks,
        binding=binding,
        directory=directory,
        start_apply=applied.append,
        replan=replanned.append,
        clock=clock,
    )
    yield Desk(
        store,
        transitions,
        notifier,
        binding,
        directory,
        clock,
        runs_dir,
        stacks,
        applied,
        replanned,
        approval_desk,
    )
    store.close()


def test_an_approval_moves_the_run_to_approved_and_starts_its_apply_once(desk: Desk):
    run = desk.awaiting_run()

    answer = desk.decide(run.id)

    assert answer.verdict is Verdict.APPROVE
    approved = desk.store.get_run(run.id)
    assert (approved.status, approved.decided_by) == (RunStatus.APPROVED, "alice")
    assert [(r.id, r.status) for r in desk.applied] == [(run.id, RunStatus.APPROVED)]
    (decision,) = desk.store.decisions(run.id)
    assert (decision.outcome, decision.decision, decision.source) == (COUNTED, APPROVE, SLACK)
    assert (decision.actor_id, decision.actor_name) == (ALICE, "alice")
    assert (decision.commit_sha, decision.plan_sha256) == (SHA, PLAN)
    (entry,) = desk.store.audit_entries()
    assert (entry.action, entry.run_id, entry.actor_id) == ("approve", run.id, ALICE)
    assert entry.detail["verdict"] == "approve"
    assert entry.detail["transport"] == "socket"
    assert desk.plan_file(run).exists()  # the worker applies it


def test_two_required_approvals_wait_for_a_second_person(desk: Desk):
    desk.stacks["network"] = a_stack(approvals_required=2)
    run = desk.awaiting_run()

    first = desk.decide(run.id, actor=ALICE)

    assert first.verdict is Verdict.COUNT
    assert desk.status(run) is AWAITING
    assert desk.applied == []
    assert desk.notifier.messages[-1] == "approved by alice (1 of 2 approvals)"

    second = desk.decide(run.id, actor=BOB)

    assert second.verdict is Verdict.APPROVE
    assert desk.status(run) is RunStatus.APPROVED
    assert desk.store.get_run(run.id).decided_by == "alice, bob"
    assert [r.id for r in desk.applied] == [run.id]


def test_the_same_persons_second_click_is_recorded_as_a_duplicate_and_does_not_count(desk: Desk):
    desk.stacks["network"] = a_stack(approvals_required=2)
    run = desk.awaiting_run()

    desk.decide(run.id, actor=ALICE)
    again = desk.decide(run.id, actor=ALICE)

    assert again.verdict is Verdict.DUPLICATE
    assert desk.status(run) is AWAITING
    assert [d.outcome for d in desk.store.decisions(run.id)] == [COUNTED, DUPLICATE]
    assert desk.applied == []


def test_a_refused_click_is_recorded_and_audited_and_nothing_moves(desk: Desk):
    run = desk.awaiting_run()
    events_before = desk.store.events(run.id)
    notices_before = len(desk.notifier.notices)

    answer = desk.decide(run.id, actor=CAROL)

    assert answer.verdict is Verdict.REFUSE
    assert "not an approver" in answer.text
    (decision,) = desk.store.decisions(run.id)
    assert (decision.outcome, decision.actor_id) == (REFUSED, CAROL)
    assert "not an approver" in decision.reason
    (entry,) = desk.store.audit_entries()
    assert (entry.actor_id, entry.run_id, entry.detail["verdict"]) == (CAROL, run.id, "refuse")
    assert desk.store.events(run.id) == events_before
    assert len(desk.notifier.notices) == notices_before
    assert desk.applied == [] and desk.replanned == []
    assert desk.plan_file(run).exists()


def test_a_reject_ends_the_run_rejected_without_applying(desk: Desk):
    run = desk.awaiting_run()

    answer = desk.decide(run.id, REJECT, actor=BOB)

    assert (answer.verdict, answer.text) == (Verdict.REJECT, "rejected by bob")
    rejected = desk.store.get_run(run.id)
    assert (rejected.status, rejected.decided_by) == (RunStatus.REJECTED, "bob")
    assert desk.applied == []
    assert desk.binding.checked == []  # a reject never needs the binding
    (decision,) = desk.store.decisions(run.id)
    assert (decision.decision, decision.outcome) == (REJECT, COUNTED)
    assert not desk.plan_file(run).exists()


def test_a_stale_binding_supersedes_the_run_and_plans_again_once(desk: Desk):
    run = desk.awaiting_run()
    desk.binding.reason = "the branch moved on to bbbbbbbbbb, which changes this stack"

    answer = desk.decide(run.id)

    assert answer.verdict is Verdict.SUPERSEDE
    assert desk.status(run) is RunStatus.SUPERSEDED
    assert desk.store.events(run.id)[-1].message == (
        "the branch moved on to bbbbbbbbbb, which changes this stack; planning again"
    )
    assert [(r.id, r.status) for r in desk.replanned] == [(run.id, RunStatus.SUPERSEDED)]
    assert desk.applied == []
    (decision,) = desk.store.decisions(run.id)
    assert decision.outcome is REFUSED
    assert not desk.plan_file(run).exists()


def test_a_click_after_the_window_closed_expires_the_run(desk: Desk):
    run = desk.awaiting_run()
    desk.clock.advance(TTL + 1)

    answer = desk.decide(run.id)

    assert answer.verdict is Verdict.EXPIRE
    assert desk.status(run) is RunStatus.EXPIRED
    assert desk.applied == []
    assert not desk.plan_file(run).exists()


def test_a_click_on_an_approved_run_is_refused_and_applies_nothing_more(desk: Desk):
    run = desk.awaiting_run()
    desk.decide(run.id, actor=ALICE)

    late = desk.decide(run.id, actor=BOB)

    assert (late.verdict, late.text) == (Verdict.REFUSE, f"run {run.id} was already approved by alice")
    assert len(desk.applied) == 1
    assert [d.outcome for d in desk.store.decisions(run.id)] == [COUNTED, REFUSED]


def test_a_cli_decision_does_not_ask_the_directory(desk: Desk):
    run = desk.awaiting_run()
    desk.stacks["network"] = a_stack(approvers=())

    answer = desk.desk.decide(
        DecisionRequest(run_id=run.id, decision=APPROVE, actor_id="ops", actor_name="ops", source=CLI)
    )

    assert answer.verdict is Verdict.APPROVE
    assert desk.directory.asked == []
    (decision,) = desk.store.decisions(run.id)
    assert (decision.source, decision.commit_sha, decision.plan_sha256) == (CLI, SHA, PLAN)
    assert desk.store.audit_entries()[0].detail["transport"] == "cli"


def test_expire_due_ends_only_the_runs_past_their_ttl(desk: Desk):
    network = desk.awaiting_run("network")  # ttl 1h
    dns = desk.awaiting_run("dns")  # ttl 2h
    approved = desk.awaiting_run("network")
    desk.decide(approved.id)

    assert desk.desk.expire_due() == []

    desk.clock.advance(TTL + 1)
    expired = desk.desk.expire_due()

    assert [r.id for r in expired] == [network.id]
    assert (desk.status(network), desk.status(dns), desk.status(approved)) == (
        RunStatus.EXPIRED,
        AWAITING,
        RunStatus.APPROVED,
    )
    assert not desk.plan_file(network).exists()
    assert desk.plan_file(dns).exists() and desk.plan_file(approved).exists()
    assert desk.desk.expire_due() == []


def test_a_decision_on_a_missing_run_is_refused_and_audited_with_that_run_id(desk: Desk):
    answer = desk.decide(999)

    assert (answer.verdict, answer.text, answer.run) == (Verdict.REFUSE, "run 999 does not exist", None)
    (entry,) = desk.store.audit_entries()
    assert (entry.run_id, entry.detail["verdict"], entry.detail["commit_sha"]) == (999, "refuse", SHA)
    assert desk.store.decisions(999) == []


# --- Transitions keep a saved plan only while it may be applied ------------------------------------


@pytest.mark.parametrize(
    ("move", "kept"),
    [
        (lambda t, run: t.mark_approved(run, "alice"), True),
        (lambda t, run: t.mark_rejected(run, "bob"), False),
        (lambda t, run: t.mark_expired(run, "not approved within approval_ttl"), False),
        (lambda t, run: t.mark_superseded(run, "the branch moved on"), False),
    ],
    ids=["approved", "rejected", "expired", "superseded"],
)
def test_a_run_leaving_awaiting_approval_keeps_its_plan_only_when_approved(desk: Desk, move, kept: bool):
    run = desk.awaiting_run()

    moved = move(desk.transitions, run)

    assert moved.status is not AWAITING
    assert desk.plan_file(run).exists() is kept
    assert desk.notifier.notices[-1].run.status is moved.status


def test_an_approval_counted_by_another_process_meanwhile_completes_the_quorum(desk: Desk):
    # Bob's approval lands (from another process) between Alice's read of the decisions and her
    # record: together they are the quorum, and the run must not be left waiting.
    desk.stacks["network"] = a_stack(approvals_required=2)
    run = desk.awaiting_run()

    def bob_approves_meanwhile(run_: Run, stack: Stack) -> str | None:
        desk.store.record_decision(run_.id, APPROVE, BOB, "bob", SLACK, SHA, PLAN, COUNTED)
        return None

    desk.binding.stale_binding = bob_approves_meanwhile  # called after the decisions were read

    answer = desk.decide(run.id, actor=ALICE)

    assert answer.verdict is Verdict.APPROVE
    assert desk.status(run) is RunStatus.APPROVED
    assert [r.id for r in desk.applied] == [run.id]


def test_a_failure_while_deciding_is_still_answered_and_audited(desk: Desk):
    run = desk.awaiting_run()

    def broken(run_: Run, stack: Stack) -> str | None:
        raise OSError("disk full while hashing the plan")

    desk.binding.stale_binding = broken

    answer = desk.decide(run.id)

    assert answer.verdict is Verdict.REFUSE and "try again" in answer.text
    assert desk.status(run) is AWAITING
    (entry,) = desk.store.audit_entries()
    assert entry.detail["verdict"] == "refuse" and entry.run_id == run.id
    assert "disk full" not in entry.detail["reason"]


def test_an_approval_is_refused_while_the_branch_head_cannot_be_confirmed(desk: Desk):
    run = desk.awaiting_run()
    desk.desk.confirm_head = lambda: "the branch head could not be confirmed (the Git remote did not answer)"

    answer = desk.decide(run.id)

    assert answer.verdict is Verdict.REFUSE
    assert "could not be confirmed" in answer.text and "try again" in answer.text
    assert desk.status(run) is AWAITING and desk.applied == [] and desk.replanned == []
    assert desk.binding.checked == [], "no binding is checked against an unknown head"
