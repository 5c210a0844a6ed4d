"""One definition of which runs failed and where a run may go next, read alike by every consumer:
the exit codes (`tfops reconcile` and `tfops plan/drift`), the terminal colours, Slack's page and
thread, and the store's transition check."""

from __future__ import annotations

import json

import pytest

from tfops.app import PassResult
from tfops.cli import EXIT_ERROR, _exit_for, status_colour
from tfops.models import (
    ALLOWED_TRANSITIONS,
    FAILURE_STATUSES,
    IN_FLIGHT_STATUSES,
    TERMINAL_STATUSES,
    Run,
    RunKind,
    RunReason,
    RunStatus,
    Trigger,
    TriggerSource,
)
from tfops.notify.blocks import STATUS_EMOJI, render_run
from tfops.notify.slack import error_tail
from tfops.store.schema import STATUS_LENGTH

SHA = "c" * 40
PAGE = "<!subteam^S0ONCALL>"


def run_in(status: RunStatus) -> Run:
    return Run(
        id=7,
        stack="web",
        kind=RunKind.DEPLOY,
        status=status,
        trigger=Trigger(source=TriggerSource.POLL),
        commit_sha=SHA,
        error="Error: something went wrong",
    )


@pytest.mark.parametrize("status", list(RunStatus))
def test_every_consumer_treats_a_status_as_a_failure_exactly_when_the_model_says_so(status):
    failed = status in FAILURE_STATUSES
    run = run_in(status)
    message = render_run(run, None, commit=None, mention=PAGE, error_tail=error_tail(run))
    shown = json.dumps(message.blocks) + message.text

    assert (PassResult([run]).exit_code == 1) is failed, "tfops reconcile"
    assert (_exit_for([run], changes=lambda _: False) == EXIT_ERROR) is failed, "tfops plan / drift"
    assert (status_colour(status) == "red") is failed, "the terminal's colour"
    assert (error_tail(run) is not None) is failed, "Slack: the error goes to the thread"
    assert (PAGE in shown) is failed, "Slack: the on-call group is paged"
    assert ("Details are in the thread" in shown) is failed
    assert status in STATUS_EMOJI, "every status has its emoji in Slack"


def test_failures_are_terminal_and_every_status_is_terminal_or_in_the_table():
    assert FAILURE_STATUSES <= TERMINAL_STATUSES
    assert not IN_FLIGHT_STATUSES & TERMINAL_STATUSES
    assert set(ALLOWED_TRANSITIONS) == set(RunStatus)
    for status, targets in ALLOWED_TRANSITIONS.items():
        if status in TERMINAL_STATUSES:
            assert targets == frozenset(), f"{status} is terminal and leads nowhere"
        else:
            assert targets >= FAILURE_STATUSES, f"a run that is {status} can still fail"


def test_every_status_can_be_reached_from_the_queue():
    reached, frontier = {RunStatus.QUEUED}, [RunStatus.QUEUED]
    while frontier:
        for target in ALLOWED_TRANSITIONS[frontier.pop()] - reached:
            reached.add(target)
            frontier.append(target)
    assert reached == set(RunStatus), "a status nothing leads to is dead code"


def test_every_reason_fits_the_stores_column_and_reads_back_as_itself():
    assert max(len(reason.value) for reason in RunReason) <= STATUS_LENGTH
    assert {RunReason(reason.value) for reason in RunReason} == set(RunReason)
