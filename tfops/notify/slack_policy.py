"""What the Slack sender does after a failed call: pure decisions, no I/O.

Three answers to a failure (see `classify_slack_error`):

- RATE_LIMITED: Slack said 429 (or `ratelimited`). Nothing is sent to Slack before its
  `Retry-After` has passed, and then the same item is tried again.
- RETRY: Slack is unreachable or had trouble of its own (connection errors, HTTP 5xx,
  `internal_error`, `fatal_error`, `service_unavailable`, `request_timeout`). The sender probes
  Slack with one call at a time, at most `DeliveryTiming.probe_cap` apart, so once Slack answers
  again the backlog leaves within about `probe_cap` (an uncapped backoff kept growing through an
  outage and delayed everything by minutes after it).
- FINAL: Slack refused the call itself (`invalid_blocks`, `msg_too_long`, `channel_not_found`,
  `not_in_channel`, `invalid_auth`, and any error name we do not know), or tfops could not build
  it. No retry can fix it: the item is marked failed and its channel moves on.

A RETRY is not forever either: an item still failing `DeliveryTiming.give_up_after` after it was
enqueued is given up like a FINAL one (marked failed, logged at ERROR, counted), so a channel is
never held back indefinitely. The bound is an age, not an attempt count, because the sender probes
at most every `probe_cap` during an outage: a count would drop the backlog of a short outage.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    RATE_LIMITED = "rate_limited"
    RETRY = "retry"
    FINAL = "final"


# Slack's own trouble: a later call can succeed with the same payload.
RETRYABLE_SLACK_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
# Refusals of the message's content: Slack may still take the same news as plain text.
CONTENT_ERRORS = frozenset(
    {
        "invalid_blocks",
        "invalid_blocks_format",
        "msg_too_long",
        "msg_blocks_too_long",
        "no_text",
        "invalid_arguments",
        "invalid_attachments",
        "too_many_attachments",
    }
)
# Every other error name (channel_not_found, not_in_channel, invalid_auth, token_revoked, ...) is a
# refusal no retry and no plain text can fix: FINAL.

# Why an item was given up: the label values of tfops_slack_deliveries_failed_total.
REFUSED = "refused"  # Slack refused the call (FINAL)
UNBUILDABLE = "unbuildable"  # tfops could not build the message from its record
GAVE_UP = "gave_up"  # retryable failures for longer than give_up_after
FAILURE_REASONS = frozenset({REFUSED, UNBUILDABLE, GAVE_UP})


def classify_slack_error(http_status: int, error: str | None) -> Verdict:
    """What a failed Slack call means, from its HTTP status and Slack's error name."""
    if http_status == 429 or error == "ratelimited":
        return Verdict.RATE_LIMITED
    if http_status >= 500 or error in RETRYABLE_SLACK_ERRORS:
        return Verdict.RETRY
    return Verdict.FINAL


def retry_after_seconds(headers: Iterable[tuple[str, Any]], default: float = 1.0) -> float:
    """The wait a 429 asks for, from its Retry-After header (seconds; one value or a list of one)."""
    value = next((v for k, v in headers if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def plain_text_may_help(error: str | None) -> bool:
    """Whether a text-only message may get through where this refusal stopped the full one."""
    return error in CONTENT_ERRORS


@dataclass(frozen=True)
class DeliveryTiming:
    """The sender's clock settings; the defaults suit a daemon, tests pass shorter ones."""

    backoff_base: float = 0.5  # seconds before the first retry
    probe_cap: float = 5.0  # the longest wait between two tries while Slack fails
    give_up_after: timedelta = timedelta(hours=1)  # age at which a retryable item is given up

    def __post_init__(self) -> None:
        if not 0 < self.backoff_base <= self.probe_cap:
            raise ValueError("backoff_base must be positive and at most probe_cap")
        if self.give_up_after <= timedelta(0):
            raise ValueError("give_up_after must be positive")

    def backoff(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row (1 or more): doubling, capped."""
        return min(self.probe_cap, self.backoff_base * 2 ** min(max(failures - 1, 0), 30))

    def gives_up(self, age: timedelta) -> bool:
        return age >= self.give_up_after
