"""A PlanSummary in its other forms: JSON for the store, the CLI's --json and Slack; text for people."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from tfops.attribution import attribution_from_dict, render_line
from tfops.models import AttributeChange, PlanSummary, ResourceChange
from tfops.terraform.sensitive import REDACTED, SENSITIVE, UNKNOWN

ACTION_SYMBOLS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "import": "<="}
MAX_ATTRIBUTES_SHOWN = 20
SUMMARY_VERSION = 1


# --- JSON form ---------------------------------------------------------------------------------------


def summary_to_dict(summary: PlanSummary) -> dict:
    """JSON-safe form for the store, the CLI's --json and Slack; summary_from_dict reverses it."""
    data = {
        "summary_version": SUMMARY_VERSION,
        "terraform_version": summary.terraform_version,
        "format_version": summary.format_version,
        "counts": summary.counts,
        "changes": [_change_to_dict(change) for change in summary.changes],
        "drift": [_change_to_dict(change) for change in summary.drift],
        "output_changes": list(summary.output_changes),
        "errored": summary.errored,
        "pending_code": summary.pending_code,
    }
    if summary.attribution is not None:  # only drift reports that looked it up carry the key
        data["attribution"] = [found.to_dict() for found in summary.attribution]
    # Drift the stack's ignore rules cover: only when there is some, so other summaries keep their shape.
    if summary.ignored:
        data["ignored"] = [_change_to_dict(change) for change in summary.ignored]
    if summary.ignored_changes:
        data["ignored_changes"] = [_change_to_dict(change) for change in summary.ignored_changes]
    return data


def summary_from_dict(data: Mapping[str, Any]) -> PlanSummary:
    return PlanSummary(
        terraform_version=data.get("terraform_version", ""),
        format_version=data.get("format_version", ""),
        changes=tuple(_change_from_dict(item) for item in data.get("changes", ())),
        drift=tuple(_change_from_dict(item) for item in data.get("drift", ())),
        output_changes=tuple(data.get("output_changes", ())),
        errored=bool(data.get("errored", False)),
        pending_code=bool(data.get("pending_code", False)),
        attribution=(
            tuple(attribution_from_dict(item) for item in data["attribution"])
            if data.get("attribution") is not None
            else None
        ),
        ignored=tuple(_change_from_dict(item) for item in data.get("ignored", ())),
        ignored_changes=tuple(_change_from_dict(item) for item in data.get("ignored_changes", ())),
    )


def _change_to_dict(change: ResourceChange) -> dict:
    return {
        "address": change.address,
        "type": change.type,
        "action": change.action,
        "module_address": change.module_address,
        "attributes": [
            {"path": attribute.path, "before": attribute.before, "after": attribute.after}
            for attribute in change.attributes
        ],
    }


def _change_from_dict(data: Mapping[str, Any]) -> ResourceChange:
    return ResourceChange(
        address=data["address"],
        type=data.get("type", ""),
        action=data["action"],
        module_address=data.get("module_address"),
        attributes=tuple(
            AttributeChange(path=item["path"], before=item.get("before"), after=item.get("after"))
            for item in data.get("attributes", ())
        ),
    )


# --- text --------------------------------------------------------------------------------------------


def render_text(summary: PlanSummary, *, max_resources: int = 50) -> str:
    """A readable rendering for the CLI and logs; each section shows at most max_resources resources."""
    lines = [_headline(summary)]
    if summary.errored:
        lines.append("Planning errored: this plan is incomplete and must not be applied.")
    if summary.drift:
        lines += ["", f"Drift (changed outside Terraform): {_plural(len(summary.drift), 'resource')}"]
        lines += _render_resources(summary.drift, max_resources, drift=True)
    if summary.attribution is not None and summary.drift:
        lines += ["", "Who changed it (CloudTrail):"]
        lines += [f"  {line}" for line in attribution_lines(summary)[: max(max_resources, 0)]]
    if summary.ignored:
        lines += [
            "",
            f"Ignored drift (the stack's drift.ignore rules): {_plural(len(summary.ignored), 'resource')}",
        ]
        lines += _render_resources(summary.ignored, max_resources, drift=True)
    if summary.changes:
        lines += ["", "Changes:"]
        lines += _render_resources(summary.changes, max_resources, drift=False)
    if summary.output_changes:
        lines += ["", "Outputs changing: " + ", ".join(summary.output_changes)]
    return "\n".join(lines) + "\n"


def attribution_lines(summary: PlanSummary) -> list[str]:
    """One line per drifted resource: who changed it, or why that is unknown."""
    lines = []
    for change in summary.drift:
        found = summary.attribution_of(change.address)
        if found is not None:
            lines.append(render_line(found, [attribute.path for attribute in change.attributes]))
    return lines


PENDING_CODE_NOTE = (
    "The changes are left out: they would also deploy the stack's code at this commit, which is not "
    "deployed yet; its deploy run shows them."
)


def _headline(summary: PlanSummary) -> str:
    if summary.pending_code:
        return PENDING_CODE_NOTE
    if not summary.has_changes:
        return "No changes. Infrastructure matches the configuration."
    counts = summary.counts
    headline = (
        f"Plan: {counts['create']} to add, {counts['update']} to change, "
        f"{counts['replace']} to replace, {counts['delete']} to destroy"
    )
    others = sorted({change.action for change in summary.changes} - set(counts))
    extras = [f"{summary.count(action)} to {action}" for action in others]
    return headline + "".join(f", {extra}" for extra in extras) + "."


def _render_resources(changes: Sequence[ResourceChange], limit: int, *, drift: bool) -> list[str]:
    lines = []
    for change in changes[: max(limit, 0)]:
        symbol = ACTION_SYMBOLS.get(change.action, "?")
        note = " (deleted outside Terraform)" if drift and change.action == "delete" else ""
        note = note or ("" if change.action in ACTION_SYMBOLS else f" ({change.action})")
        lines.append(f"  {symbol} {change.address}{note}")
        lines += [
            f"      {_render_attribute(change.action, a)}" for a in change.attributes[:MAX_ATTRIBUTES_SHOWN]
        ]
        if len(change.attributes) > MAX_ATTRIBUTES_SHOWN:
            lines.append(f"      … and {len(change.attributes) - MAX_ATTRIBUTES_SHOWN} more attributes")
    if len(changes) > limit:
        lines.append(f"  … and {len(changes) - max(limit, 0)} more")
    return lines


def _render_attribute(action: str, attribute: AttributeChange) -> str:
    if action == "create":
        return f"+ {attribute.path} = {_render_value(attribute.after)}"
    return f"~ {attribute.path}: {_render_value(attribute.before)} → {_render_value(attribute.after)}"


def _render_value(value: Any) -> str:
    if value in (SENSITIVE, UNKNOWN, REDACTED):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
