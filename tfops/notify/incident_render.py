"""A drift incident in Slack: the line its message carries, and the mention when its set changes.

An incident's message is the message of the drift run that opened it (`Incident.opened_run_id`):
later drift runs of the same incident update it in place, and this line says since when, how
often and until when it was seen, and once resolved, how and after how long. Pure.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from tfops.incidents import Incident, format_duration
from tfops.notify.blocks import RunMessage
from tfops.notify.mrkdwn import (
    FALLBACK_TEXT,
    MAX_BLOCKS,
    MAX_TOTAL_TEXT,
    STACK_CHARS,
    THREAD_NOTE_TEXT,
    block_text_size,
    clip,
    context_block,
    escape_mrkdwn,
    format_mention,
)

RESOURCES_SHOWN = 20
RESOURCE_CHARS = 200


def incident_line(incident: Incident, now: datetime) -> str:
    """One line: open since when and seen how often, or resolved how and after how long."""
    times = "time" if incident.seen_count == 1 else "times"
    last = f"last at {_utc(incident.last_seen_at)} (run #{incident.last_run_id})"
    seen = f"seen {incident.seen_count} {times}, {last}"
    lasted = format_duration(incident.lasted(now))
    if incident.is_open:
        return f":rotating_light: Drift incident open since {_utc(incident.opened_at)} ({lasted}) · {seen}"
    return f":white_check_mark: Drift incident resolved: {incident.how()}, after {lasted} · {seen}"


def with_incident(
    message: RunMessage, incident: Incident, now: datetime, *, paged: str | None = None
) -> RunMessage:
    """The run's message with the incident's line under its header (left out of the blocks only
    if it would break Slack's limits; the fallback text always has it). `paged`: the formatted
    mention that opens the line and the text, for the post that opens the incident."""
    line = incident_line(incident, now)
    if paged:
        line = f"{paged} {line}"
    text = clip([f"{paged} " if paged else "", message.text, " · ", line], FALLBACK_TEXT)[0]
    blocks = [*message.blocks[:2], context_block(line), *message.blocks[2:]]
    if len(blocks) > MAX_BLOCKS or block_text_size(blocks) > MAX_TOTAL_TEXT:
        blocks = message.blocks
    return replace(message, text=text, blocks=blocks)


def mention_text(incident: Incident, mention: str | None) -> str:
    """The thread reply that pages people again when the drifted set changed."""
    paged = f"{format_mention(mention)} " if mention else ""
    count = len(incident.resources)
    noun = "resource" if count == 1 else "resources"
    stack = escape_mrkdwn(incident.stack, STACK_CHARS)
    shown = [
        f"• {escape_mrkdwn(resource.label(), RESOURCE_CHARS)}"
        for resource in incident.resources[:RESOURCES_SHOWN]
    ]
    more = [f"… and {count - RESOURCES_SHOWN} more"] if count > RESOURCES_SHOWN else []
    run = f"run #{incident.mentioned_run_id}"
    head = f"{paged}:rotating_light: The drift of *{stack}* changed ({run}): now {count} {noun}:"
    return clip([head, *(f"\n{line}" for line in [*shown, *more])], THREAD_NOTE_TEXT)[0]


def _utc(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
