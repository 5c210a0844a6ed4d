"""The plan in a run's message: its counts, the outputs it changes, and its resources packed into
sections within Slack's limits; the whole plan as a file when they had to cut it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tfops.attribution import render_who
from tfops.models import PlanSummary, ResourceChange, Run, RunKind
from tfops.naming import safe_stack_name
from tfops.notify.mrkdwn import (
    MAX_BLOCKS,
    MAX_TOTAL_TEXT,
    SECTION_TEXT,
    STACK_CHARS,
    block_text_size,
    code,
    context_block,
    escaped,
    section_block,
    text_size,
)
from tfops.terraform.sensitive import REDACTED, SENSITIVE, UNKNOWN
from tfops.terraform.summary import ACTION_SYMBOLS, PENDING_CODE_NOTE, render_text

# How much of each piece is shown (escaped sizes). Chosen so that the fixed parts of a message stay
# under half of MAX_TOTAL_TEXT and one drift resource with all its lines fits in one section.
ADDRESS_CHARS = 200
PATH_CHARS = 100
VALUE_CHARS = 150
ACTION_NAME_CHARS = 30
OUTPUTS_CHARS = 600
RESOURCES_PER_GROUP = 20  # then "… and N more": a long group must not hide the ones after it
DRIFTED_RESOURCES = 10  # drift items carry before → after lines, so fewer of them
ATTRIBUTES_PER_DRIFT = 5
WHO_CHARS = 400  # "ingress changed by arn:… (Event, console, date)": an ARN is up to ~300
PATHS_PER_CHANGE = 3
OTHER_ACTIONS_NAMED = 3


# --- counts and outputs -------------------------------------------------------------------------------


def count_lines(summary: PlanSummary) -> list[str]:
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
        lines.append(f"*Drift:* {plural(len(summary.drift), 'resource')} changed outside Terraform")
    return lines


def _other_action_counts(summary: PlanSummary) -> list[str]:
    others = sorted({change.action for change in summary.changes} - set(summary.counts))
    named = [f"{summary.count(action)} to {escaped(action, ACTION_NAME_CHARS)[0]}" for action in others]
    if len(named) > OTHER_ACTIONS_NAMED:
        rest = sum(summary.count(action) for action in others[OTHER_ACTIONS_NAMED:])
        named = [*named[:OTHER_ACTIONS_NAMED], f"{rest} with other actions"]
    return named


def outputs_line(summary: PlanSummary) -> tuple[str, bool]:
    if not summary.output_changes:
        return "", False
    label = "*Outputs changing:* "
    names = [code(name, PATH_CHARS)[0] for name in summary.output_changes]
    shown, used = [], text_size(label)
    for name in names:
        if used + text_size(name) + 2 > OUTPUTS_CHARS - 20:  # room for "… and N more"
            break
        shown.append(name)
        used += text_size(name) + 2
    more = len(names) - len(shown)
    return label + ", ".join(shown) + (f" … and {more} more" if more else ""), more > 0


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


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


def _item(change: ResourceChange, *, drift: bool, summary: PlanSummary) -> tuple[str, bool]:
    """One resource as mrkdwn lines, bounded (see ADDRESS_CHARS …); whether anything was cut."""
    symbol = ACTION_SYMBOLS.get(change.action, "?")
    address, cut = code(f"{symbol} {change.address}", ADDRESS_CHARS)
    note = ""
    if drift and change.action == "delete":
        note = " — _deleted outside Terraform_"
    elif change.action not in ACTION_SYMBOLS:
        note = f" ({escaped(change.action, ACTION_NAME_CHARS)[0]})"
    lines = [address + note]
    if drift:
        attribute_lines, attributes_cut = _attribute_lines(change)
        attribute_lines += _who_line(change, summary)
    else:
        attribute_lines, attributes_cut = _path_line(change)
    return "\n".join(lines + attribute_lines), cut or attributes_cut


def _who_line(change: ResourceChange, summary: PlanSummary) -> list[str]:
    """Who changed a drifted resource (CloudTrail), when the stack asks; [] otherwise."""
    found = summary.attribution_of(change.address)
    if found is None:
        return []
    who, _ = escaped(render_who(found, [attribute.path for attribute in change.attributes]), WHO_CHARS)
    return [f"    :bust_in_silhouette: {who}"]


def _attribute_lines(change: ResourceChange) -> tuple[list[str], bool]:
    lines, cut = [], False
    for attribute in change.attributes[:ATTRIBUTES_PER_DRIFT]:
        path, path_cut = code(attribute.path, PATH_CHARS)
        before, before_cut = code(_value(attribute.before), VALUE_CHARS)
        after, after_cut = code(_value(attribute.after), VALUE_CHARS)
        lines.append(f"    {path}: {before} → {after}")
        cut = cut or path_cut or before_cut or after_cut
    hidden = len(change.attributes) - ATTRIBUTES_PER_DRIFT
    if hidden > 0:
        lines.append(f"    … and {hidden} more attributes")
    return lines, cut or hidden > 0


def _path_line(change: ResourceChange) -> tuple[list[str], bool]:
    if change.action not in ("update", "replace") or not change.attributes:
        return [], False
    paths = [code(attribute.path, PATH_CHARS) for attribute in change.attributes[:PATHS_PER_CHANGE]]
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


def resource_sections(
    run: Run, summary: PlanSummary | None, fixed: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], bool]:
    """Sections listing resources within what `fixed` leaves of the limits; whether any was left out."""
    if summary is None:
        return [], False
    groups = _groups(run, summary)
    packer = _Packer(
        text_budget=MAX_TOTAL_TEXT - block_text_size([*fixed, shortened_note()]),
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
            item, item_cut = _item(change, drift=group.drift, summary=summary)
            if not packer.fits(item, keep_text=reserved + more):
                break
            packer.add(item)
            shown += 1
            cut = cut or item_cut
        if shown < len(group.changes):
            packer.add(_more_line(len(group.changes) - shown))
            cut = True
    return [section_block(lines) for lines in packer.sections], cut


# --- when the message had to cut ---------------------------------------------------------------------


def shortened_note() -> dict[str, Any]:
    return context_block(":page_facing_up: Shortened to fit Slack: the whole plan is attached in the thread.")


def plan_file(run: Run, summary: PlanSummary) -> tuple[str, str]:
    """(filename, content): the whole plan as text, attached in the thread."""
    name = safe_stack_name(run.stack)[:STACK_CHARS] or "stack"
    heading = f"tfops run #{run.id} · stack {run.stack} · {run.kind.value}"
    if run.commit_sha:
        heading += f" · commit {run.commit_sha}"
    everything = max(len(summary.changes), len(summary.drift), 1)
    return f"tfops-run-{run.id}-{name}-plan.txt", heading + "\n\n" + render_text(
        summary, max_resources=everything
    )
