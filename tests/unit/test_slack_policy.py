"""What the Slack sender makes of a failed call, and what the notifier enqueues: pure functions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tfops.metrics import SLACK_FAILURE_REASONS
from tfops.models import OutboxKind, Run, RunKind, RunStatus, Trigger, TriggerSource
from tfops.notify import RunNotice
from tfops.notify.slack import records_for
from tfops.notify.slack_policy import (
    FAILURE_REASONS,
    DeliveryTiming,
    Verdict,
    classify_slack_error,
    plain_text_may_help,
    retry_after_seconds,
)


@pytest.mark.parametrize(
    ("status", "error", "verdict"),
    [
        (429, "ratelimited", Verdict.RATE_LIMITED),
        (200, "ratelimited", Verdict.RATE_LIMITED),
        (503, "service_unavailable", Verdict.RETRY),
        (500, None, Verdict.RETRY),
        (200, "internal_error", Verdict.RETRY),
        (200, "fatal_error", Verdict.RETRY),
        (200, "request_timeout", Verdict.RETRY),
        (200, "invalid_blocks", Verdict.FINAL),
        (200, "msg_too_long", Verdict.FINAL),
        (200, "invalid_arguments", Verdict.FINAL),
        (200, "channel_not_found", Verdict.FINAL),
        (200, "not_in_channel", Verdict.FINAL),
        (200, "invalid_auth", Verdict.FINAL),
        (200, "an_error_slack_adds_next_year", Verdict.FINAL),
        (404, None, Verdict.FINAL),
    ],
)
def test_slack_errors_are_rate_limits_retries_or_final(status, error, verdict):
    assert classify_slack_error(status, error) is verdict


def test_a_plain_message_is_tried_only_where_the_content_was_refused():
    assert plain_text_may_help("invalid_blocks") and plain_text_may_help("msg_blocks_too_long")
    assert not plain_text_may_help("channel_not_found") and not plain_text_may_help("invalid_auth")


def test_the_backoff_doubles_from_its_base_and_never_passes_the_probe_cap():
    timing = DeliveryTiming(backoff_base=0.5, probe_cap=5.0)
    assert [timing.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert timing.backoff(10_000) == 5.0


def test_retryable_items_are_given_up_by_age_only():
    timing = DeliveryTiming(give_up_after=timedelta(hours=1))
    assert not timing.gives_up(timedelta(minutes=59))
    assert timing.gives_up(timedelta(hours=1))


def test_timings_that_would_wait_forever_or_never_are_refused():
    with pytest.raises(ValueError):
        DeliveryTiming(backoff_base=10, probe_cap=5)
    with pytest.raises(ValueError):
        DeliveryTiming(give_up_after=timedelta(0))


def test_the_failure_metric_knows_every_reason_the_sender_gives():
    assert SLACK_FAILURE_REASONS == FAILURE_REASONS


def test_the_notifier_enqueues_records_not_messages():
    run = Run(
        id=7,
        stack="app",
        kind=RunKind.DEPLOY,
        status=RunStatus.FAILED,
        trigger=Trigger(source=TriggerSource.POLL, actor="poll"),
        error="Error: boom",
    )
    records = records_for(RunNotice(run=run, message="terraform exited 1"), first=False, attach=False)

    assert [record.kind for record in records] == [OutboxKind.UPDATE, OutboxKind.THREAD]
    assert records[0].payload == {"render": "run", "status": "failed", "reason": "terraform exited 1"}
    assert all("blocks" not in record.payload and "text" not in record.payload for record in records)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"retry-after": ["2"]}, 2.0),
        ({"Retry-After": "soon"}, 1.0),
        ({}, 1.0),
        ({"Retry-After": "-5"}, 0.0),
    ],
)
def test_retry_after_is_read_as_slack_sends_it(headers, seconds):
    assert retry_after_seconds(headers.items()) == seconds
