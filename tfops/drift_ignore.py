"""Drift that is meant to happen: which parts of a drift plan a stack's `drift.ignore` rules cover.

Pure. Rules match the redacted summary (tfops.terraform.plan), not the raw plan: its attribute
paths (`tags.env`, `rule[0].port`, `tags["kubernetes.io/x"]`) are the ones people see in
`tfops show` and Slack, so a rule is written the way the drift was shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache

from tfops.models import DriftIgnoreRule, PlanSummary, ResourceChange

# One step of an attribute path: `.name` (or a leading name), `[0]`, `[*]` or `["any key"]`.
_STEP = re.compile(r'\.?([A-Za-z0-9_*?-]+)|\[(\d+|\*)\]|\[("(?:[^"\\]|\\.)*")\]')


class PathSyntaxError(ValueError):
    """An attribute path that is not `name.name[0]["key"]` (with `*` for any one step)."""


def path_steps(path: str) -> tuple[str, ...]:
    """`rule[0].port` → ("rule", "0", "port"); `tags["a.b"]` → ("tags", "a.b")."""
    steps, position = [], 0
    while position < len(path):
        found = _STEP.match(path, position)
        if found is None or found.end() == position or (position == 0 and path.startswith(".")):
            raise PathSyntaxError(f"{path!r} is not an attribute path (e.g. tags.Name, rule[0].port)")
        name, index, quoted = found.groups()
        steps.append(name if name is not None else index if index is not None else json.loads(quoted))
        position = found.end()
    if not steps:
        raise PathSyntaxError("an attribute path must not be empty")
    return tuple(steps)


@lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """`*` is any run of characters and `?` one; everything else, `[` and `]` included, is literal
    (resource addresses carry `[0]` and `["key"]`, which fnmatch would read as character sets)."""
    parts = (".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.compile("".join(parts), re.DOTALL)


def glob_match(pattern: str, value: str) -> bool:
    return glob_regex(pattern).fullmatch(value) is not None


def rule_covers_resource(rule: DriftIgnoreRule, change: ResourceChange) -> bool:
    """Does the rule's address and type select this resource (each unset one selects all)?"""
    if rule.address is not None and not glob_match(rule.address, change.address):
        return False
    return rule.type is None or glob_match(rule.type, change.type)


def _path_covered(rule_steps: tuple[str, ...], path: str) -> bool:
    """A rule's path covers an attribute at or below it: `tags` covers `tags.env`."""
    try:
        steps = path_steps(path)
    except PathSyntaxError:
        return False  # "(resource)": the whole value changed; only a rule without attributes covers it
    if len(steps) < len(rule_steps):
        return False
    return all(glob_match(want, got) for want, got in zip(rule_steps, steps, strict=False))


class IgnoreRules:
    """A stack's rules, ready to split summaries."""

    def __init__(self, rules: Sequence[DriftIgnoreRule]) -> None:
        self.rules = tuple(rules)
        self._paths = {rule: tuple(path_steps(path) for path in rule.attributes) for rule in self.rules}

    def split(self, change: ResourceChange) -> tuple[ResourceChange | None, ResourceChange | None]:
        """(the part that is not ignored, the ignored part); None for an empty part.

        A rule without attributes ignores the whole resource. Attribute rules ignore attributes
        of an in-place update; a create, delete or replace is never ignored by them (it is more
        than the attribute), but the attributes they cover are still reported as ignored, so
        that the plan is known to touch them."""
        rules = [rule for rule in self.rules if rule_covers_resource(rule, change)]
        if any(not rule.attributes for rule in rules):
            return None, change
        paths = [steps for rule in rules for steps in self._paths[rule]]
        ignored = tuple(a for a in change.attributes if any(_path_covered(p, a.path) for p in paths))
        if not ignored:
            return change, None
        kept = tuple(attribute for attribute in change.attributes if attribute not in ignored)
        ignored_part = replace(change, attributes=ignored)
        if change.action == "update" and not kept:
            return None, ignored_part
        return replace(change, attributes=kept) if change.action == "update" else change, ignored_part

    def apply(self, summary: PlanSummary) -> PlanSummary:
        """The summary with the ignored drift and the changes that would only revert it set aside
        in `ignored` and `ignored_changes`."""
        if not self.rules:
            return summary
        drift, ignored = self._partition(summary.drift)
        changes, ignored_changes = self._partition(summary.changes)
        return replace(
            summary,
            drift=drift,
            changes=changes,
            ignored=summary.ignored + ignored,
            ignored_changes=summary.ignored_changes + ignored_changes,
        )

    def _partition(
        self, changes: Sequence[ResourceChange]
    ) -> tuple[tuple[ResourceChange, ...], tuple[ResourceChange, ...]]:
        kept, ignored = [], []
        for change in changes:
            kept_part, ignored_part = self.split(change)
            if kept_part is not None:
                kept.append(kept_part)
            if ignored_part is not None:
                ignored.append(ignored_part)
        return tuple(kept), tuple(ignored)


def touched_ignored(summary: PlanSummary) -> list[str]:
    """`address (path, path)` for each planned change that touches ignored attributes: the saved
    plan would revert them along with the rest."""
    shown = []
    for change in summary.ignored_changes:
        paths = ", ".join(attribute.path for attribute in change.attributes)
        shown.append(f"{change.address} ({paths})" if paths else change.address)
    return shown
