"""A run as one Slack message in Block Kit JSON. Pure: data in, data out; no slack-sdk, no I/O.

The Slack notifier posts what `render_run` returns and edits it in place as the run moves on, so
every call renders the whole message from scratch.

What is shown comes only from the redacted PlanSummary and from run fields that carry no plan
values (id, stack, kind, status, trigger source and actor, commit and plan hashes), plus what the
caller passes explicitly (commit info, decisions, reason, error tail), which it must have redacted.
`Run.summary`, `Run.error`, `Run.log_path` and `Trigger.note` are never read.

Limits held for every input (sizes in UTF-16 code units, which is never less than Python's `len`,
so the bound holds however Slack counts):

- SECTION_TEXT  3,000  a section's text (Slack rejects more)
- CONTEXT_TEXT  3,000  each context element (a text object's limit); ours stay far below
- HEADER_TEXT     150  the header block's plain text
- CONFIRM_TEXT    300  the Approve confirm dialog's text (title 100, buttons 30, button text 75:
  ours are short constants)
- button values are action_value(...): at most 156 characters (Slack allows 2,000)
- MAX_BLOCKS       50  blocks in one message
- MAX_TOTAL_TEXT 12,000 the sum of every text field in the blocks (headers, sections, context,
  buttons, confirm dialog): a total Slack accepts with room to spare
- FALLBACK_TEXT 3,000  the top-level `text` (notifications, screen readers); Slack truncates at
  40,000 and advises staying under 4,000
- THREAD_NOTE_TEXT 3,000 each thread note (posted as its own message)

Every user- or plan-derived string goes through `escape_mrkdwn`: `&`, `<` and `>` become entities,
so a resource name or a value can never become a mention, a link or a date token. The only `<` in
the output are the configured mention (validated by `format_mention`). Control and bidi characters
are shown as escapes; "@here", "@channel" and "@everyone" get an invisible word joiner after the @,
in case a caller ever posts with `link_names` (it should not: nothing here needs it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tfops.models import FAILURE_STATUSES, PlanSummary, Run, RunStatus
from tfops.notify.buttons import (
    APPROVE_ACTION_ID,
    REJECT_ACTION_ID,
    action_value,
    approval_buttons,
    parse_action_value,
)
from tfops.notify.mrkdwn import (
    CONFIRM_TEXT,
    CONTEXT_TEXT,
    FALLBACK_TEXT,
    HEADER_TEXT,
    MAX_BLOCKS,
    MAX_TOTAL_TEXT,
    SECTION_TEXT,
    STACK_CHARS,
    THREAD_NOTE_TEXT,
    block_text_size,
    clip,
    clip_start,
    code,
    context_block,
    escape_mrkdwn,
    escaped,
    format_mention,
    header_block,
    inert_pieces,
    plain,
    section_block,
    text_size,
)
from tfops.notify.plan_sections import (
    count_lines,
    outputs_line,
    plan_file,
    plural,
    resource_sections,
    shortened_note,
)

__all__ = [
    "APPROVE_ACTION_ID",
    "CONFIRM_TEXT",
    "CONTEXT_TEXT",
    "FAILURE_STATUSES",
    "FALLBACK_TEXT",
    "HEADER_TEXT",
    "MAX_BLOCKS",
    "MAX_TOTAL_TEXT",
    "REJECT_ACTION_ID",
    "SECTION_TEXT",
    "STACK_CHARS",
    "STATUS_EMOJI",
    "THREAD_NOTE_TEXT",
    "CommitInfo",
    "DecisionInfo",
    "RunMessage",
    "action_value",
    "block_text_size",
    "escape_mrkdwn",
    "format_mention",
    "parse_action_value",
    "render_run",
    "text_size",
]

# FAILURE_STATUSES (defined in models, with the transition table) page the configured group along
# with approval requests, and show their error in the thread.

STATUS_EMOJI = {
    RunStatus.QUEUED: ":hourglass_flowing_sand:",
    RunStatus.PLANNING: ":mag:",
    RunStatus.NO_CHANGES: ":white_check_mark:",
    RunStatus.PLANNED: ":clipboard:",
    RunStatus.AWAITING_APPROVAL: ":raising_hand:",
    RunStatus.APPROVED: ":+1:",
    RunStatus.APPLYING: ":gear:",
    RunStatus.APPLIED: ":large_green_circle:",
    RunStatus.FAILED: ":red_circle:",
    RunStatus.REJECTED: ":no_entry:",
    RunStatus.SUPERSEDED: ":fast_forward:",
    RunStatus.INTERRUPTED: ":warning:",
    RunStatus.TIMED_OUT: ":alarm_clock:",
    RunStatus.EXPIRED: ":hourglass:",
    RunStatus.BLOCKED: ":octagonal_sign:",
    RunStatus.AWAITING_WINDOW: ":calendar:",
}

# How much of each piece is shown (escaped sizes); the plan's own pieces are in plan_sections.
NAME_CHARS = 80
ID_CHARS = 40
SUBJECT_CHARS = 150
REASON_CHARS = 500
DECISIONS_SHOWN = 10


# --- data in ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    subject: str
    author: str


@dataclass(frozen=True)
class DecisionInfo:
    decision: Literal["approved", "rejected"]
    by_name: str
    by_id: str  # Slack user id, or the local user name for the CLI
    at: datetime  # naive means UTC
    source: Literal["slack", "cli"]

    def __post_init__(self) -> None:
        if self.decision not in ("approved", "rejected"):
            raise ValueError(f"decision must be 'approved' or 'rejected', not {self.decision!r}")
        if self.source not in ("slack", "cli"):
            raise ValueError(f"decision source must be 'slack' or 'cli', not {self.source!r}")


@dataclass(frozen=True)
class RunMessage:
    text: str  # plain-text fallback for notifications; never empty
    blocks: list[dict[str, Any]]
    file: tuple[str, str] | None = None  # (filename, content): the whole plan, when the message had to cut
    thread_notes: list[str] = field(default_factory=list)  # mrkdwn messages for the thread


# --- the message ------------------------------------------------------------------------------------


def render_run(
    run: Run,
    summary: PlanSummary | None,
    *,
    commit: CommitInfo | None,
    decisions: Sequence[DecisionInfo] = (),
    awaiting_approval: bool = False,
    approvals_required: int = 1,
    approvers: Sequence[str] = (),
    mention: str | None = None,
    error_tail: str | None = None,
    reason: str | None = None,
) -> RunMessage:
    """The whole message for `run` as it stands now.

    `reason`: why the run is where it is (the policy decision's reason, or a failure's first line),
    already redacted. `error_tail`: the end of Terraform's error output, already redacted; it goes to
    `thread_notes`, bounded. `mention` is paged on failures and approval requests only.
    Buttons appear exactly when `awaiting_approval`, which needs the run's commit and plan hashes.
    """
    if approvals_required < 1:
        raise ValueError("approvals_required must be at least 1")
    buttons = approval_buttons(run) if awaiting_approval else None  # validates the binding first
    paged = format_mention(mention) if mention and _pages(run, awaiting_approval) else None

    top = [header_block(_headline(run)), context_block(*_context_texts(run, commit))]
    status = _status_lines(run, paged, awaiting_approval, decisions, approvals_required, reason)
    if awaiting_approval:
        status.insert(1 if status else 0, _approvers_line(approvers))
    top += [section_block(status)] if status else []
    top += [section_block(_decision_lines(decisions))] if decisions else []
    top += [section_block(count_lines(summary))] if summary is not None else []
    outputs, outputs_cut = outputs_line(summary) if summary is not None else ("", False)
    outputs_blocks = [section_block([outputs])] if outputs else []
    button_blocks = [buttons] if buttons is not None else []

    listed, resources_cut = resource_sections(run, summary, [*top, *outputs_blocks, *button_blocks])
    cut = resources_cut or outputs_cut
    # The buttons come last, below everything they approve.
    blocks = [*top, *listed, *outputs_blocks, *([shortened_note()] if cut else []), *button_blocks]
    return RunMessage(
        text=_fallback_text(run, summary, paged, awaiting_approval),
        blocks=blocks,
        file=plan_file(run, summary) if cut and summary is not None else None,
        thread_notes=_thread_notes(error_tail),
    )


def _pages(run: Run, awaiting_approval: bool) -> bool:
    return awaiting_approval or run.status in FAILURE_STATUSES


def _status_label(status: RunStatus) -> str:
    return status.value.replace("_", " ")


def _headline(run: Run) -> str:
    emoji = STATUS_EMOJI.get(run.status, ":grey_question:")
    stack = plain(run.stack, STACK_CHARS)
    return f"{emoji} {stack} · {plain(run.kind.value, 20)} · {_status_label(run.status)}"


def _context_texts(run: Run, commit: CommitInfo | None) -> list[str]:
    trigger = run.trigger
    source = trigger.source.value.replace("_", " ")
    about = f"Run #{run.id} · triggered by {source}"
    if trigger.actor and trigger.actor not in (trigger.source.value, "tfops"):
        about += f" ({escaped(trigger.actor, NAME_CHARS)[0]})"
    about += " · after a force-push" if trigger.forced else ""
    sha = commit.sha if commit is not None else run.commit_sha
    if not sha:
        return [about]
    described = f"Commit {code(sha[:10], 14)[0]}"
    if commit is not None:
        subject = escaped(commit.subject.splitlines()[0] if commit.subject else "", SUBJECT_CHARS)[0]
        described += f" {subject} — {escaped(commit.author, NAME_CHARS)[0]}"
    return [about, described]


def _status_lines(
    run: Run,
    paged: str | None,
    awaiting_approval: bool,
    decisions: Sequence[DecisionInfo],
    approvals_required: int,
    reason: str | None,
) -> list[str]:
    lines = []
    if awaiting_approval:
        approvals = len({d.by_id for d in decisions if d.decision == "approved"})
        plan = code((run.plan_sha256 or "")[:12], 16)[0]
        lines.append(
            f"*Approval needed:* {approvals} of {approvals_required} so far. "
            f"Approve applies exactly this saved plan ({plan})."
        )
    elif run.status in FAILURE_STATUSES:
        lines.append(f"*Run {_status_label(run.status)}.* Details are in the thread.")
    if paged:
        lines[0:1] = [f"{paged} {lines[0]}" if lines else paged]
    if reason:
        lines.append(f"*Reason:* {escaped(reason, REASON_CHARS)[0]}")
    return lines


APPROVERS_SHOWN = 10


def _approvers_line(approvers: Sequence[str]) -> str:
    """Who is asked: mentioned, so that the request reaches them."""
    if not approvers:
        return "*Approvers:* none listed in Slack; approve with `tfops approve` on the tfops host."
    shown = [format_mention(approver) for approver in approvers[:APPROVERS_SHOWN]]
    more = f" and {len(approvers) - APPROVERS_SHOWN} more" if len(approvers) > APPROVERS_SHOWN else ""
    return f"*Approvers:* {', '.join(shown)}{more}"


def _decision_lines(decisions: Sequence[DecisionInfo]) -> list[str]:
    lines = [_decision_line(decision) for decision in decisions[:DECISIONS_SHOWN]]
    if len(decisions) > DECISIONS_SHOWN:
        lines.append(f"… and {len(decisions) - DECISIONS_SHOWN} more decisions")
    return lines


def _decision_line(decision: DecisionInfo) -> str:
    emoji, verb = (
        (":white_check_mark:", "Approved") if decision.decision == "approved" else (":x:", "Rejected")
    )
    name = escaped(decision.by_name, NAME_CHARS)[0]
    who = code(decision.by_id, ID_CHARS)[0]
    via = "Slack" if decision.source == "slack" else "the CLI"
    return f"{emoji} {verb} by *{name}* ({who}) at {_utc(decision.at)} via {via}"


def _utc(moment: datetime) -> str:
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # within hours of datetime.min/max: show it as given
        return moment.isoformat(sep=" ", timespec="minutes")
    return f"{moment:%Y-%m-%d %H:%M} UTC"


# --- text outside the blocks -------------------------------------------------------------------------


def _fallback_text(run: Run, summary: PlanSummary | None, paged: str | None, awaiting: bool) -> str:
    parts = [f"tfops: {escaped(run.stack, STACK_CHARS)[0]} {run.kind.value} run #{run.id}"]
    parts.append("awaiting approval" if awaiting else _status_label(run.status))
    if summary is not None and summary.has_changes:
        counts = summary.counts
        parts.append(
            f"{counts['create']} to add, {counts['update']} to change, "
            f"{counts['replace']} to replace, {counts['delete']} to destroy"
        )
    if summary is not None and summary.drift:
        parts.append(f"drift in {plural(len(summary.drift), 'resource')}")
    text = " · ".join(parts)
    # The mention first: it must survive any clipping, and notifications show the start.
    return clip([f"{paged} {text}" if paged else text], FALLBACK_TEXT)[0]


def _thread_notes(error_tail: str | None) -> list[str]:
    if not error_tail or not error_tail.strip():
        return []
    intro = "Terraform's error output (last lines):\n```\n"
    outro = "\n```"
    pieces = inert_pieces(error_tail.strip("\n").replace("`", "ˋ"), keep_newlines=True)
    body = clip_start(pieces, THREAD_NOTE_TEXT - text_size(intro) - text_size(outro))[0]
    return [intro + body + outro]
