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

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from tfops.models import FAILURE_STATUSES, PlanSummary, ResourceChange, Run, RunKind, RunStatus
from tfops.terraform.plan import (
    ACTION_SYMBOLS,
    PENDING_CODE_NOTE,
    REDACTED,
    SENSITIVE,
    UNKNOWN,
    render_text,
)

SECTION_TEXT = 3000
CONTEXT_TEXT = 3000
HEADER_TEXT = 150
CONFIRM_TEXT = 300  # the confirm dialog's text (plain_text); its title 100, its buttons 30
MAX_BLOCKS = 50
MAX_TOTAL_TEXT = 12000
FALLBACK_TEXT = 3000
THREAD_NOTE_TEXT = 3000

APPROVE_ACTION_ID = "tfops_approve"
REJECT_ACTION_ID = "tfops_reject"

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
}

# How much of each piece is shown (escaped sizes). Chosen so that the fixed parts of a message stay
# under half of MAX_TOTAL_TEXT and one drift resource with all its lines fits in one section.
STACK_CHARS = 60
NAME_CHARS = 80
ID_CHARS = 40
SUBJECT_CHARS = 150
REASON_CHARS = 500
ADDRESS_CHARS = 200
PATH_CHARS = 100
VALUE_CHARS = 150
ACTION_NAME_CHARS = 30
OUTPUTS_CHARS = 600
RESOURCES_PER_GROUP = 20  # then "… and N more": a long group must not hide the ones after it
DRIFTED_RESOURCES = 10  # drift items carry before → after lines, so fewer of them
ATTRIBUTES_PER_DRIFT = 5
PATHS_PER_CHANGE = 3
DECISIONS_SHOWN = 10
OTHER_ACTIONS_NAMED = 3

_ACTION_VALUE_PREFIX = "tfops1"
_ACTION_VALUE = re.compile(
    re.escape(_ACTION_VALUE_PREFIX) + r":([1-9][0-9]{0,18}):([0-9a-f]{40}|[0-9a-f]{64}):([0-9a-f]{64})"
)
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 or SHA-256 object names
_PLAN_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_RUN_ID = 2**63 - 1
_GROUP_MENTION = re.compile(r"<!subteam\^(S[A-Z0-9]{1,30})>|(S[A-Z0-9]{1,30})")
_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]{1,30})>|([UW][A-Z0-9]{1,30})")
_BROADCAST = re.compile(r"@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_WORD_JOINER = "\u2060"
# Invisible characters that reorder text: shown escaped so a name cannot look like another one.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_MRKDWN_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_PLAIN_LOOKALIKES = str.maketrans({"&": "＆", "<": "‹", ">": "›"})
_ELLIPSIS = "…"


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


# --- buttons ----------------------------------------------------------------------------------------


def action_value(run_id: int, commit_sha: str, plan_sha256: str) -> str:
    """The value an Approve/Reject button carries: the run and the binding it was shown with."""
    if isinstance(run_id, bool) or not isinstance(run_id, int) or not 0 < run_id <= _MAX_RUN_ID:
        raise ValueError(f"run id must be a positive 64-bit integer, not {run_id!r}")
    if not isinstance(commit_sha, str) or not _COMMIT_SHA.fullmatch(commit_sha):
        raise ValueError("commit sha must be a full lowercase hex object name (40 or 64 characters)")
    if not isinstance(plan_sha256, str) or not _PLAN_SHA256.fullmatch(plan_sha256):
        raise ValueError("plan sha256 must be 64 lowercase hex characters")
    return f"{_ACTION_VALUE_PREFIX}:{run_id}:{commit_sha}:{plan_sha256}"


def parse_action_value(value: str) -> tuple[int, str, str]:
    """(run_id, commit_sha, plan_sha256) from a button value; ValueError for anything else.

    The value comes back from Slack, so it is untrusted: only the exact form action_value writes
    is accepted, and the caller still checks it against the stored run.
    """
    match = _ACTION_VALUE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("not a tfops action value")
    run_id = int(match.group(1))
    if run_id > _MAX_RUN_ID:
        raise ValueError("not a tfops action value")
    return run_id, match.group(2), match.group(3)


def format_mention(mention: str) -> str:
    """`<!subteam^S…>` or `<@U…>` from a user group id, a user id, or either already formatted.

    Raises ValueError for anything else: a mention is configuration, and a wrong one should be
    found when the config is checked, not rendered as text nobody is paged by.
    """
    if isinstance(mention, str):
        if match := _GROUP_MENTION.fullmatch(mention):
            return f"<!subteam^{match.group(1) or match.group(2)}>"
        if match := _USER_MENTION.fullmatch(mention):
            return f"<@{match.group(1) or match.group(2)}>"
    raise ValueError("a mention is a Slack user group id (S…) or user id (U…/W…)")


# --- escaping and sizes -------------------------------------------------------------------------------


def text_size(text: str) -> int:
    """Size in UTF-16 code units: what a JavaScript-based limit counts, and never less than len()."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def escape_mrkdwn(text: str, limit: int | None = None, *, keep_newlines: bool = False) -> str:
    """`text` made inert for Slack mrkdwn, at most `limit` long (ending in … when cut)."""
    return _clip(_inert_pieces(text, keep_newlines=keep_newlines), limit)[0]


def _inert_pieces(text: str, *, keep_newlines: bool = False) -> list[str]:
    """One piece per character, so clipping never splits an entity or an escape."""
    text = _BROADCAST.sub("@" + _WORD_JOINER, str(text))
    return [_inert_char(char, keep_newlines) for char in text]


def _inert_char(char: str, keep_newlines: bool) -> str:
    if char in _MRKDWN_ENTITIES:
        return _MRKDWN_ENTITIES[char]
    if keep_newlines and char in "\n\t":
        return char
    code = ord(char)
    if code < 0x20 or 0x7F <= code < 0xA0 or char in "\u2028\u2029" or char in _BIDI_CONTROLS:
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def _clip(pieces: Sequence[str], limit: int | None) -> tuple[str, bool]:
    """Join pieces, keeping the size within limit; (text, whether anything was cut)."""
    sizes = [text_size(piece) for piece in pieces]
    if limit is None or sum(sizes) <= limit:
        return "".join(pieces), False
    kept, used = [], 0
    for piece, size in zip(pieces, sizes, strict=True):
        if used + size > limit - 1:
            break
        kept.append(piece)
        used += size
    return "".join(kept) + _ELLIPSIS, True


def _clip_start(pieces: Sequence[str], limit: int) -> tuple[str, bool]:
    """Like _clip, but keep the end: the tail of an error is the part that explains it."""
    sizes = [text_size(piece) for piece in pieces]
    if sum(sizes) <= limit:
        return "".join(pieces), False
    kept_from, used = len(pieces), text_size(_ELLIPSIS)
    while kept_from > 0 and used + sizes[kept_from - 1] <= limit:
        kept_from -= 1
        used += sizes[kept_from]
    return _ELLIPSIS + "".join(pieces[kept_from:]), True


def _escaped(text: str, limit: int) -> tuple[str, bool]:
    return _clip(_inert_pieces(text), limit)


def _code(text: str, limit: int) -> tuple[str, bool]:
    """Inline code: a backtick inside would end the span, so it becomes a look-alike."""
    inner, cut = _clip(_inert_pieces(str(text).replace("`", "ˋ")), limit - 2)
    return f"`{inner or ' '}`", cut


def _plain(text: str, limit: int) -> str:
    """For plain_text objects, which Slack does not parse: no entities, but no angle brackets either."""
    return _clip(_inert_pieces(str(text).translate(_PLAIN_LOOKALIKES)), limit)[0]


# --- blocks -----------------------------------------------------------------------------------------


def _header(text: str) -> dict[str, Any]:
    text = _clip([text], HEADER_TEXT)[0]
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def _section(lines: Iterable[str]) -> dict[str, Any]:
    text = _clip(["\n".join(lines)], SECTION_TEXT)[0]
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(*texts: str) -> dict[str, Any]:
    elements = [{"type": "mrkdwn", "text": _clip([text], CONTEXT_TEXT)[0]} for text in texts if text]
    return {"type": "context", "elements": elements}


def _plain_text(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def block_text_size(blocks: Iterable[dict[str, Any]]) -> int:
    """The sum of every text field in `blocks`: what MAX_TOTAL_TEXT bounds."""
    return sum(text_size(text) for text in _texts(list(blocks)))


def _texts(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                yield value
            else:
                yield from _texts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _texts(item)


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
    buttons = _actions(run) if awaiting_approval else None  # validates the binding first
    paged = format_mention(mention) if mention and _pages(run, awaiting_approval) else None

    top = [_header(_headline(run)), _context(*_context_texts(run, commit))]
    status = _status_lines(run, paged, awaiting_approval, decisions, approvals_required, reason)
    if awaiting_approval:
        status.insert(1 if status else 0, _approvers_line(approvers))
    top += [_section(status)] if status else []
    top += [_section(_decision_lines(decisions))] if decisions else []
    top += [_section(_count_lines(summary))] if summary is not None else []
    outputs, outputs_cut = _outputs_line(summary) if summary is not None else ("", False)
    outputs_blocks = [_section([outputs])] if outputs else []
    button_blocks = [buttons] if buttons is not None else []

    listed, resources_cut = _resource_sections(run, summary, [*top, *outputs_blocks, *button_blocks])
    cut = resources_cut or outputs_cut
    # The buttons come last, below everything they approve.
    blocks = [*top, *listed, *outputs_blocks, *([_shortened_note()] if cut else []), *button_blocks]
    return RunMessage(
        text=_fallback_text(run, summary, paged, awaiting_approval),
        blocks=blocks,
        file=_plan_file(run, summary) if cut and summary is not None else None,
        thread_notes=_thread_notes(error_tail),
    )


def _shortened_note() -> dict[str, Any]:
    return _context(":page_facing_up: Shortened to fit Slack: the whole plan is attached in the thread.")


def _pages(run: Run, awaiting_approval: bool) -> bool:
    return awaiting_approval or run.status in FAILURE_STATUSES


def _status_label(status: RunStatus) -> str:
    return status.value.replace("_", " ")


def _headline(run: Run) -> str:
    emoji = STATUS_EMOJI.get(run.status, ":grey_question:")
    stack = _plain(run.stack, STACK_CHARS)
    return f"{emoji} {stack} · {_plain(run.kind.value, 20)} · {_status_label(run.status)}"


def _context_texts(run: Run, commit: CommitInfo | None) -> list[str]:
    trigger = run.trigger
    source = trigger.source.value.replace("_", " ")
    about = f"Run #{run.id} · triggered by {source}"
    if trigger.actor and trigger.actor not in (trigger.source.value, "tfops"):
        about += f" ({_escaped(trigger.actor, NAME_CHARS)[0]})"
    about += " · after a force-push" if trigger.forced else ""
    sha = commit.sha if commit is not None else run.commit_sha
    if not sha:
        return [about]
    described = f"Commit {_code(sha[:10], 14)[0]}"
    if commit is not None:
        subject = _escaped(commit.subject.splitlines()[0] if commit.subject else "", SUBJECT_CHARS)[0]
        described += f" {subject} — {_escaped(commit.author, NAME_CHARS)[0]}"
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
        plan = _code((run.plan_sha256 or "")[:12], 16)[0]
        lines.append(
            f"*Approval needed:* {approvals} of {approvals_required} so far. "
            f"Approve applies exactly this saved plan ({plan})."
        )
    elif run.status in FAILURE_STATUSES:
        lines.append(f"*Run {_status_label(run.status)}.* Details are in the thread.")
    if paged:
        lines[0:1] = [f"{paged} {lines[0]}" if lines else paged]
    if reason:
        lines.append(f"*Reason:* {_escaped(reason, REASON_CHARS)[0]}")
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
    name = _escaped(decision.by_name, NAME_CHARS)[0]
    who = _code(decision.by_id, ID_CHARS)[0]
    via = "Slack" if decision.source == "slack" else "the CLI"
    return f"{emoji} {verb} by *{name}* ({who}) at {_utc(decision.at)} via {via}"


def _utc(moment: datetime) -> str:
    try:
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:  # within hours of datetime.min/max: show it as given
        return moment.isoformat(sep=" ", timespec="minutes")
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _count_lines(summary: PlanSummary) -> list[str]:
    lines = []
    if summary.errored:
        lines.append(":warning: *Planning errored:* this plan is incomplete and must not be applied.")
    if summary.has_changes:
        counts = summary.counts
        parts = [
            f"{counts['create']} to add",
            f"{counts['update']} to change",
            f"*{counts['replace']} to replace*" if counts["replace"] else "0 to replace",
            f"*{counts['delete']} to destroy*" if counts["delete"] else "0 to destroy",
        ]
        lines.append("*Plan:* " + " · ".join(parts + _other_action_counts(summary)))
    elif summary.pending_code:
        lines.append(f"*Plan:* {PENDING_CODE_NOTE}")
    else:
        lines.append("*No changes.* Infrastructure matches the configuration.")
    if summary.drift:
        lines.append(f"*Drift:* {_plural(len(summary.drift), 'resource')} changed outside Terraform")
    return lines


def _other_action_counts(summary: PlanSummary) -> list[str]:
    others = sorted({change.action for change in summary.changes} - set(summary.counts))
    named = [f"{summary.count(action)} to {_escaped(action, ACTION_NAME_CHARS)[0]}" for action in others]
    if len(named) > OTHER_ACTIONS_NAMED:
        rest = sum(summary.count(action) for action in others[OTHER_ACTIONS_NAMED:])
        named = [*named[:OTHER_ACTIONS_NAMED], f"{rest} with other actions"]
    return named


def _outputs_line(summary: PlanSummary) -> tuple[str, bool]:
    if not summary.output_changes:
        return "", False
    label = "*Outputs changing:* "
    names = [_code(name, PATH_CHARS)[0] for name in summary.output_changes]
    shown, used = [], text_size(label)
    for name in names:
        if used + text_size(name) + 2 > OUTPUTS_CHARS - 20:  # room for "… and N more"
            break
        shown.append(name)
        used += text_size(name) + 2
    more = len(names) - len(shown)
    return label + ", ".join(shown) + (f" … and {more} more" if more else ""), more > 0


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _actions(run: Run) -> dict[str, Any]:
    if not run.commit_sha or not run.plan_sha256:
        raise ValueError("an approval request needs the run's commit sha and plan sha256")
    value = action_value(run.id, run.commit_sha, run.plan_sha256)
    confirm_text = _plain(
        f"Apply run #{run.id} to {_plain(run.stack, STACK_CHARS)} at commit {run.commit_sha[:10]}? "
        f"tfops applies exactly the saved plan {run.plan_sha256[:12]}, or nothing if the branch has moved.",
        CONFIRM_TEXT,
    )
    return {
        "type": "actions",
        "block_id": f"tfops_run_{run.id}",
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION_ID,
                "text": _plain_text("Approve"),
                "style": "primary",
                "value": value,
                "confirm": {
                    "title": _plain_text("Apply this plan?"),
                    "text": _plain_text(confirm_text),
                    "confirm": _plain_text("Approve and apply"),
                    "deny": _plain_text("Cancel"),
                    "style": "primary",
                },
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION_ID,
                "text": _plain_text("Reject"),
                "style": "danger",
                "value": value,
            },
        ],
    }


# --- resources --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    title: str
    changes: Sequence[ResourceChange]
    shown_at_most: int
    drift: bool = False


# Destruction first so that nobody misses it at the end of a long list.
_CHANGE_GROUPS = (
    ("replace", ":warning: *Replace — destroy and re-create*"),
    ("delete", ":x: *Destroy*"),
    ("create", ":heavy_plus_sign: *Create*"),
    ("update", ":pencil2: *Update in place*"),
    ("import", ":inbox_tray: *Import*"),
)


def _groups(run: Run, summary: PlanSummary) -> list[_Group]:
    known = {action for action, _ in _CHANGE_GROUPS}
    groups = []
    for action, title in _CHANGE_GROUPS:
        changes = [change for change in summary.changes if change.action == action]
        groups.append(_Group(title, changes, RESOURCES_PER_GROUP))
    others = [change for change in summary.changes if change.action not in known]
    groups.append(_Group(":grey_question: *Other actions*", others, RESOURCES_PER_GROUP))
    drift = _Group(":mag: *Drift — changed outside Terraform*", summary.drift, DRIFTED_RESOURCES, drift=True)
    # A drift run is about the drift; the changes after it are how an apply would revert it.
    groups = [drift, *groups] if run.kind is RunKind.DRIFT else [*groups, drift]
    return [group for group in groups if group.changes]


def _group_title(group: _Group) -> str:
    return f"{group.title} ({len(group.changes)})"


def _more_line(count: int) -> str:
    return f"… and {count} more"


def _item(change: ResourceChange, *, drift: bool) -> tuple[str, bool]:
    """One resource as mrkdwn lines, bounded (see ADDRESS_CHARS …); whether anything was cut."""
    symbol = ACTION_SYMBOLS.get(change.action, "?")
    address, cut = _code(f"{symbol} {change.address}", ADDRESS_CHARS)
    note = ""
    if drift and change.action == "delete":
        note = " — _deleted outside Terraform_"
    elif change.action not in ACTION_SYMBOLS:
        note = f" ({_escaped(change.action, ACTION_NAME_CHARS)[0]})"
    lines = [address + note]
    if drift:
        attribute_lines, attributes_cut = _attribute_lines(change)
    else:
        attribute_lines, attributes_cut = _path_line(change)
    return "\n".join(lines + attribute_lines), cut or attributes_cut


def _attribute_lines(change: ResourceChange) -> tuple[list[str], bool]:
    lines, cut = [], False
    for attribute in change.attributes[:ATTRIBUTES_PER_DRIFT]:
        path, path_cut = _code(attribute.path, PATH_CHARS)
        before, before_cut = _code(_value(attribute.before), VALUE_CHARS)
        after, after_cut = _code(_value(attribute.after), VALUE_CHARS)
        lines.append(f"    {path}: {before} → {after}")
        cut = cut or path_cut or before_cut or after_cut
    hidden = len(change.attributes) - ATTRIBUTES_PER_DRIFT
    if hidden > 0:
        lines.append(f"    … and {hidden} more attributes")
    return lines, cut or hidden > 0


def _path_line(change: ResourceChange) -> tuple[list[str], bool]:
    if change.action not in ("update", "replace") or not change.attributes:
        return [], False
    paths = [_code(attribute.path, PATH_CHARS) for attribute in change.attributes[:PATHS_PER_CHANGE]]
    hidden = len(change.attributes) - PATHS_PER_CHANGE
    line = (
        "    changes " + ", ".join(path for path, _ in paths) + (f" and {hidden} more" if hidden > 0 else "")
    )
    return [line], any(cut for _, cut in paths) or hidden > 0


def _value(value: Any) -> str:
    if isinstance(value, str) and value in (SENSITIVE, UNKNOWN, REDACTED):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    except (TypeError, ValueError):  # keys of mixed types cannot be sorted; circular data
        return repr(value)


class _Packer:
    """Lines into sections of at most SECTION_TEXT, within a text and a block budget."""

    def __init__(self, text_budget: int, block_budget: int) -> None:
        self.sections: list[list[str]] = []
        self.section_size = 0
        self.text_left = text_budget
        self.blocks_left = block_budget

    def _cost(self, line: str) -> tuple[int, int]:
        size = text_size(line)
        if self.sections and self.section_size + 1 + size <= SECTION_TEXT:
            return size + 1, 0
        return size, 1

    def fits(self, line: str, *, keep_text: int) -> bool:
        """Whether `line` fits and still leaves room for keep_text more (the reserved lines).

        The reserved lines are few and short (far below SECTION_TEXT), so they fit either in the room
        left in the current section or in one more section: one of the two must remain.
        """
        text, blocks = self._cost(line)
        if self.text_left - text < keep_text or self.blocks_left - blocks < 0:
            return False
        size_after = self.section_size + text if not blocks else text_size(line)
        return self.blocks_left - blocks >= 1 or SECTION_TEXT - size_after >= keep_text

    def add(self, line: str) -> None:
        text, blocks = self._cost(line)
        if blocks > self.blocks_left:
            raise AssertionError("a reserved line found no room: the reservation is wrong")
        if blocks:
            self.sections.append([])
            self.section_size = -1  # the first line has no newline before it
        self.sections[-1].append(line)
        self.section_size += 1 + text_size(line)
        self.text_left -= text
        self.blocks_left -= blocks


def _resource_sections(
    run: Run, summary: PlanSummary | None, fixed: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], bool]:
    """Sections listing resources within what `fixed` leaves of the limits; whether any was left out."""
    if summary is None:
        return [], False
    groups = _groups(run, summary)
    packer = _Packer(
        text_budget=MAX_TOTAL_TEXT - block_text_size([*fixed, _shortened_note()]),
        block_budget=MAX_BLOCKS - len(fixed) - 1,
    )
    # Every group's title and "… and N more" are always shown: reserve room for them up front. Their
    # total stays far below SECTION_TEXT, so one spare block holds whatever does not fit elsewhere.
    tails = [text_size(_group_title(g)) + text_size(_more_line(len(g.changes))) + 2 for g in groups]
    reserved = sum(tails)
    cut = False
    for group, tail in zip(groups, tails, strict=True):
        reserved -= tail
        packer.add(_group_title(group))
        more = text_size(_more_line(len(group.changes))) + 1
        shown = 0
        for change in group.changes[: group.shown_at_most]:
            item, item_cut = _item(change, drift=group.drift)
            if not packer.fits(item, keep_text=reserved + more):
                break
            packer.add(item)
            shown += 1
            cut = cut or item_cut
        if shown < len(group.changes):
            packer.add(_more_line(len(group.changes) - shown))
            cut = True
    return [_section(lines) for lines in packer.sections], cut


# --- text outside the blocks -------------------------------------------------------------------------


def _fallback_text(run: Run, summary: PlanSummary | None, paged: str | None, awaiting: bool) -> str:
    parts = [f"tfops: {_escaped(run.stack, STACK_CHARS)[0]} {run.kind.value} run #{run.id}"]
    parts.append("awaiting approval" if awaiting else _status_label(run.status))
    if summary is not None and summary.has_changes:
        counts = summary.counts
        parts.append(
            f"{counts['create']} to add, {counts['update']} to change, "
            f"{counts['replace']} to replace, {counts['delete']} to destroy"
        )
    if summary is not None and summary.drift:
        parts.append(f"drift in {_plural(len(summary.drift), 'resource')}")
    text = " · ".join(parts)
    # The mention first: it must survive any clipping, and notifications show the start.
    return _clip([f"{paged} {text}" if paged else text], FALLBACK_TEXT)[0]


def _thread_notes(error_tail: str | None) -> list[str]:
    if not error_tail or not error_tail.strip():
        return []
    intro = "Terraform's error output (last lines):\n```\n"
    outro = "\n```"
    pieces = _inert_pieces(error_tail.strip("\n").replace("`", "ˋ"), keep_newlines=True)
    body = _clip_start(pieces, THREAD_NOTE_TEXT - text_size(intro) - text_size(outro))[0]
    return [intro + body + outro]


def _plan_file(run: Run, summary: PlanSummary) -> tuple[str, str]:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", run.stack)[:STACK_CHARS] or "stack"
    heading = f"tfops run #{run.id} · stack {run.stack} · {run.kind.value}"
    if run.commit_sha:
        heading += f" · commit {run.commit_sha}"
    everything = max(len(summary.changes), len(summary.drift), 1)
    return f"tfops-run-{run.id}-{name}-plan.txt", heading + "\n\n" + render_text(
        summary, max_resources=everything
    )
