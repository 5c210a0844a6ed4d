"""Read `terraform show -json PLANFILE` into a redacted PlanSummary. Pure: data in, data out.

The JSON of a saved plan holds sensitive values in clear text: every value this module keeps goes
through the `sensitive` module's Redactor, so what leaves the run directory does not.

Attribute paths are flat and readable: map keys joined with dots (``tags.env``), list items indexed
(``rule[0].port``), keys that are not plain identifiers quoted (``tags["kubernetes.io/role"]``).
Each path is a leaf whose value differs; a subtree that is wholly sensitive or unknown is one path.

- create:  every non-null leaf of ``after`` (before is None), unknown leaves as UNKNOWN.
- update, replace, drift: every leaf whose value differs between ``before`` and ``after``.
- delete:  no attributes (everything goes).

The summary's JSON and text forms are in `summary`, secrets and scrubbing in `sensitive`; both are
re-exported here, where callers have always found them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from tfops.errors import PlanFormatError
from tfops.models import AttributeChange, PlanSummary, ResourceChange
from tfops.terraform.sensitive import (
    MIN_SECRET_LENGTH,
    MISSING,
    REDACTED,
    SENSITIVE,
    UNKNOWN,
    Redactor,
    child,
    marks_by_address,
    none_if_missing,
    scrub,
    secrets_in,
)
from tfops.terraform.summary import (
    ACTION_SYMBOLS,
    PENDING_CODE_NOTE,
    render_text,
    summary_from_dict,
    summary_to_dict,
)

__all__ = [
    "ACTION_ORDER",
    "ACTION_SYMBOLS",
    "MIN_SECRET_LENGTH",
    "PENDING_CODE_NOTE",
    "REDACTED",
    "SENSITIVE",
    "SUPPORTED_FORMAT_MAJORS",
    "UNKNOWN",
    "action_name",
    "check_format_version",
    "render_text",
    "scrub",
    "secrets_in",
    "summarize",
    "summary_from_dict",
    "summary_to_dict",
]

SUPPORTED_FORMAT_MAJORS = ("0", "1")

# Destruction first so that nobody misses it at the end of a long list.
ACTION_ORDER = {"replace": 0, "delete": 1, "create": 2, "update": 3}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_VERSION = re.compile(r"(\d+)(\.\d+)*")


# --- summarize ---------------------------------------------------------------------------------------


def summarize(
    plan: Mapping[str, Any], *, patterns: Sequence[re.Pattern[str]] = (), secrets: Collection[str] = ()
) -> PlanSummary:
    """Turn the plan JSON into a PlanSummary holding no value Terraform marks sensitive, and none
    of `secrets` (values known to be secret from elsewhere: the ones tfops holds itself)."""
    format_version = check_format_version(plan)
    redactor = Redactor(secrets_in(plan) | set(secrets), patterns)
    marks = marks_by_address(plan)
    return PlanSummary(
        terraform_version=str(plan.get("terraform_version", "")),
        format_version=format_version,
        changes=_resource_changes(plan.get("resource_changes"), redactor, marks),
        drift=_resource_changes(plan.get("resource_drift"), redactor, marks),
        output_changes=_changed_outputs(plan.get("output_changes")),
        errored=bool(plan.get("errored", False)),
    )


def check_format_version(plan: Any) -> str:
    """Return the plan's format_version, or raise PlanFormatError if this module cannot read it."""
    supported = ", ".join(f"{major}.x" for major in SUPPORTED_FORMAT_MAJORS)
    if not isinstance(plan, Mapping):
        raise PlanFormatError(
            f"plan JSON must be an object, got {type(plan).__name__}; supported: {supported}"
        )
    found = plan.get("format_version")
    if not isinstance(found, str) or not _VERSION.fullmatch(found):
        raise PlanFormatError(
            f"plan JSON has no usable format_version (found {repr(found)[:40]}); supported: {supported}"
        )
    if found.split(".")[0] not in SUPPORTED_FORMAT_MAJORS:
        raise PlanFormatError(f"plan JSON format_version {found} is not supported; supported: {supported}")
    return found


def _resource_changes(
    entries: Any, redactor: Redactor, marks: Mapping[str, tuple[Any, ...]]
) -> tuple[ResourceChange, ...]:
    changes = []
    for entry in entries or ():
        change = entry.get("change") or {}
        action = action_name(change.get("actions") or (), importing="importing" in change)
        if action in ("no-op", "read"):
            continue
        changes.append(
            ResourceChange(
                address=entry["address"],
                type=entry.get("type", ""),
                action=action,
                attributes=_attributes(action, change, redactor, marks.get(entry["address"], ())),
                module_address=entry.get("module_address"),
            )
        )
    return tuple(sorted(changes, key=_change_order))


def action_name(actions: Sequence[str], *, importing: bool = False) -> str:
    """Map Terraform's action list to one word; unknown combinations keep their own name."""
    actions = list(actions)
    if actions in (["delete", "create"], ["create", "delete"]):
        return "replace"
    if actions == ["no-op"] and importing:
        return "import"  # Terraform >= 1.5: nothing changes but the object joins the state
    if len(actions) == 1:
        return actions[0]
    return "-".join(actions)


def _change_order(change: ResourceChange) -> tuple:
    return ACTION_ORDER.get(change.action, len(ACTION_ORDER)), _natural_key(change.address)


def _natural_key(address: str) -> tuple:
    # res[2] before res[10]
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", address))


def _changed_outputs(output_changes: Any) -> tuple[str, ...]:
    return tuple(
        sorted(name for name, change in (output_changes or {}).items() if change.get("actions") != ["no-op"])
    )


# --- attribute differences -----------------------------------------------------------------------------


def _attributes(
    action: str, change: Mapping[str, Any], redactor: Redactor, extra_marks: tuple[Any, ...] = ()
) -> tuple[AttributeChange, ...]:
    if action not in ("create", "update", "replace"):
        return ()
    before = change.get("before") if action != "create" else None
    return tuple(
        _diff(
            path="",
            before=before,
            after=change.get("after"),
            sensitive=(
                change.get("before_sensitive", False),
                change.get("after_sensitive", False),
                *extra_marks,
            ),
            unknown=change.get("after_unknown", False),
            redactor=redactor,
        )
    )


def _diff(
    *, path: str, before: Any, after: Any, sensitive: tuple[Any, ...], unknown: Any, redactor: Redactor
) -> Iterator[AttributeChange]:
    """Yield the leaves that differ, each already redacted."""
    if not (any(mark is True for mark in sensitive) or unknown is True):
        keys = _child_keys(before, after, unknown)
        if keys is not None:
            found = False
            for key in keys:
                for attribute in _diff(
                    path=_join(path, key),
                    before=child(before, key),
                    after=child(after, key),
                    sensitive=tuple(child(mark, key, False) for mark in sensitive),
                    unknown=child(unknown, key, False),
                    redactor=redactor,
                ):
                    found = True
                    yield attribute
            if found or _same(before, after) or not path:
                return
    if unknown is not True and _same(before, after):
        return
    yield AttributeChange(
        path=path or "(resource)",
        before=redactor.show(before, sensitive, False),
        after=redactor.show(after, sensitive, unknown),
    )


def _same(before: Any, after: Any) -> bool:
    return none_if_missing(before) == none_if_missing(after)


def _child_keys(before: Any, after: Any, unknown: Any) -> list | None:
    """Keys to walk into, or None when this node is a leaf (or the two sides differ in kind)."""
    sides = [value for value in (before, after) if value is not MISSING and value is not None]
    if not sides and isinstance(unknown, Mapping | list):
        sides = [unknown]  # a value absent from `after` but with unknown parts inside
    if sides and all(isinstance(value, Mapping) for value in sides):
        keys = {key for value in sides for key in value}
        if isinstance(unknown, Mapping):
            keys.update(key for key, mark in unknown.items() if mark)
        return sorted(keys, key=str)
    if sides and all(isinstance(value, list) for value in sides):
        length = max(len(value) for value in sides)
        if isinstance(unknown, list):
            length = max(length, len(unknown))
        return list(range(length))
    return None


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"
