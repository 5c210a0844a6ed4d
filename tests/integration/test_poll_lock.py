"""A slow poll never holds up an approval: confirming the head waits only for the store write.

The poll is made slow by its discovery (a registry that waits until the test lets it go, as an
estate of thousands of stacks would); the approval goes through the real ApprovalDesk, whose
binding check fetches the branch head through `RepoPoller.confirm_head`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial

from estate import build_estate, stack_name

from tfops.approvals import ApprovalDesk, DecisionRequest, Verdict
from tfops.models import (
    DecisionKind,
    DecisionSource,
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

PLAN = "f" * 64
WAIT = 60.0


class HeldDiscovery:
    """The real registry (the `Stacks` Protocol), whose discovery waits until the test releases it."""

    def __init__(self, real) -> None:
        self.real, self.root = real, real.root
        self.entered, self.released = threading.Event(), threading.Event()

    @property
    def refused(self):
        return self.real.refused

    def refresh(self):
        self.entered.set()
        if not self.released.wait(WAIT):
            raise TimeoutError("the test never released the discovery")
        return self.real.refresh()


@dataclass
class Notices:
    seen: list[RunNotice] = field(default_factory=list)

    def run_changed(self, notice: RunNotice) -> None:
        self.seen.append(notice)


class FreshBinding:
    def stale_binding(self, run: Run, stack: Stack) -> str | None:
        return None


def _awaiting_approval(estate, transitions, runs_dir, stack: str, sha: str) -> Run:
    trigger = Trigger(source=TriggerSource.POLL, actor="poll")
    run = estate.store.create_run(stack, RunKind.DEPLOY, trigger, sha, status=RunStatus.PLANNING)
    plan = runs_dir / str(run.id) / PLAN_FILE
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"saved plan")
    summary = PlanSummary(terraform_version="1.0.3", format_version="1.0")
    return transitions.mark_awaiting_approval(run, summary, PLAN, "waiting for approval")


def test_an_approval_click_is_answered_while_a_slow_poll_is_running(tmp_path):
    estate = build_estate(tmp_path, 20)
    stacks = dict(estate.registry.current())
    first = estate.remote.repo.head.commit.hexsha
    runs_dir = tmp_path / "runs"
    transitions = Transitions(estate.store, Notices(), runs_dir)
    applying: list[Run] = []
    desk = ApprovalDesk(
        store=estate.store,
        transitions=transitions,
        stacks=lambda: stacks,
        binding=FreshBinding(),
        directory=None,
        start_apply=applying.append,
        replan=lambda run: None,
        confirm_head=partial(estate.poller.confirm_head, max_age=WAIT),
    )
    run = _awaiting_approval(estate, transitions, runs_dir, stack_name(0), first)
    held = HeldDiscovery(estate.registry)
    estate.poller.registry = held
    click = DecisionRequest(
        run_id=run.id,
        decision=DecisionKind.APPROVE,
        actor_id="ops",
        actor_name="ops",
        source=DecisionSource.CLI,
        commit_sha=first,
        plan_sha256=PLAN,
    )

    with ThreadPoolExecutor(max_workers=2) as pool:
        polling = pool.submit(estate.poller.poll)
        try:
            assert held.entered.wait(WAIT), "the poll never reached its discovery"
            newer = estate.commit("a stack arrives", {"stacks/late/main.tf": "locals {}\n"})
            answer = pool.submit(desk.decide, click).result(timeout=WAIT)

            assert answer.verdict is Verdict.APPROVE, answer.text
            assert not polling.done(), "the approval must be answered while the poll still runs"
            assert [r.id for r in applying] == [run.id]
            # The approval's fetch recorded the branch head it learnt.
            assert estate.store.get_stack(stack_name(0)).head_sha == newer
        finally:
            held.released.set()
        polled = polling.result(timeout=WAIT)

    # The poll decided at the head it fetched, from the checkout of that head (no "late" yet),
    # and its older head did not overwrite the newer one the approval recorded.
    assert polled == []
    assert "late" not in estate.poller.registry.real.current()
    assert estate.store.get_stack(stack_name(0)).head_sha == newer
    held.released.set()
    assert [r.stack for r in estate.poller.poll()] == ["late"]
