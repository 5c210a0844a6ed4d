"""Read `terraform show -json PLANFILE` into a redacted PlanSummary. Pure: data in, data out.

The JSON of a saved plan holds sensitive values in clear text. Everything here exists so that what
leaves the run directory does not: a summary only ever holds values that Terraform did not mark
sensitive, with unknown values named as such and configured patterns redacted.

Attribute paths are flat and readable: map keys joined with dots (``tags.env``), list items indexed
(``rule[0].port``), keys that are not plain identifiers quoted (``tags["kubernetes.io/role"]``).
Each path is a leaf whose value differs; a subtree that is wholly sensitive or unknown is one path.

- create:  every non-null leaf of ``after`` (before is None), unknown leaves as UNKNOWN.
- update, replace, drift: every leaf whose value differs between ``before`` and ``after``.
- delete:  no attributes (everything goes).

A node is shown as SENSITIVE when either ``before_sensitive`` or ``after_sensitive`` marks it, on
both sides: a value that stops being sensitive was still a secret before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

from tfops.errors import PlanFormatError
from tfops.models import AttributeChange, PlanSummary, ResourceChange

SENSITIVE = "(sensitive)"
UNKNOWN = "(known after apply)"
REDACTED = "(redacted)"

SUPPORTED_FORMAT_MAJORS = ("0", "1")
MIN_SECRET_LENGTH = 4  # shorter values would scrub ordinary words out of logs

# Destruction first so that nobody misses it at the end of a long list.
ACTION_ORDER = {"replace": 0, "delete": 1, "create": 2, "update": 3}
ACTION_SYMBOLS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "import": "<="}
MAX_ATTRIBUTES_SHOWN = 20
SUMMARY_VERSION = 1

_MISSING = object()  # an attribute absent from one side, as opposed to null
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_VERSION = re.compile(r"(\d+)(\.\d+)*")


# --- summarize ---------------------------------------------------------------------------------------


def summarize(
    plan: Mapping[str, Any], *, patterns: Sequence[re.Pattern[str]] = (), secrets: Collection[str] = ()
) -> PlanSummary:
    """Turn the plan JSON into a PlanSummary holding no value Terraform marks sensitive, and none
    of `secrets` (values known to be secret from elsewhere: the ones tfops holds itself)."""
    format_version = check_format_version(plan)
    redactor = _Redactor(secrets_in(plan) | set(secrets), patterns)
    marks = _marks_by_address(plan)
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


def _marks_by_address(plan: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """The sensitivity marks `resource_changes` gives each resource.

    Terraform 1.0.3 leaves provider-sensitive attributes unmarked in `resource_drift`
    (and `prior_state`): a drifted `secret` shows there in clear with no mark. The
    same resource's entry in `resource_changes` does carry the marks, so every entry
    of that address is redacted with them too.
    """
    marks: dict[str, tuple[Any, ...]] = {}
    for entry in plan.get("resource_changes") or ():
        change = entry.get("change") or {}
        marks[entry["address"]] = (
            change.get("before_sensitive", False),
            change.get("after_sensitive", False),
        )
    return marks


def _resource_changes(
    entries: Any, redactor: _Redactor, marks: Mapping[str, tuple[Any, ...]]
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
    action: str, change: Mapping[str, Any], redactor: _Redactor, extra_marks: tuple[Any, ...] = ()
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
    *, path: str, before: Any, after: Any, sensitive: tuple[Any, ...], unknown: Any, redactor: _Redactor
) -> Iterator[AttributeChange]:
    """Yield the leaves that differ, each already redacted."""
    if not (any(mark is True for mark in sensitive) or unknown is True):
        keys = _child_keys(before, after, unknown)
        if keys is not None:
            found = False
            for key in keys:
                for attribute in _diff(
                    path=_join(path, key),
                    before=_child(before, key),
                    after=_child(after, key),
                    sensitive=tuple(_child(mark, key, False) for mark in sensitive),
                    unknown=_child(unknown, key, False),
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
    return _none_if_missing(before) == _none_if_missing(after)


def _child_keys(before: Any, after: Any, unknown: Any) -> list | None:
    """Keys to walk into, or None when this node is a leaf (or the two sides differ in kind)."""
    sides = [value for value in (before, after) if value is not _MISSING and value is not None]
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


def _child(value: Any, key: Any, default: Any = _MISSING) -> Any:
    if value is True:  # a mark on a whole subtree covers every child
        return True
    if isinstance(value, Mapping):
        return value.get(key, default)
    if isinstance(value, list) and isinstance(key, int) and key < len(value):
        return value[key]
    return default


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _none_if_missing(value: Any) -> Any:
    return None if value is _MISSING else value


class _Redactor:
    """Turns raw plan values into values safe to show."""

    def __init__(self, secrets: Collection[str], patterns: Sequence[re.Pattern[str]]) -> None:
        self.secrets = frozenset(secrets)
        self.patterns = tuple(patterns)

    def show(self, value: Any, sensitive: tuple[Any, ...], unknown: Any) -> Any:
        if (value is None or value is _MISSING) and unknown is not True:
            return None  # null is no secret, and "was unset" is worth seeing
        if any(mark is True for mark in sensitive):
            return SENSITIVE
        if unknown is True:
            return UNKNOWN
        if isinstance(value, Mapping) or isinstance(unknown, Mapping):
            items = dict(value) if isinstance(value, Mapping) else {}
            if isinstance(unknown, Mapping):
                items.update(
                    {key: None for key, mark in unknown.items() if mark is True and key not in items}
                )
            return {key: self._show_child(value, key, sensitive, unknown) for key in sorted(items, key=str)}
        if isinstance(value, list):
            return [self._show_child(value, index, sensitive, unknown) for index in range(len(value))]
        return self.leaf(_none_if_missing(value))

    def _show_child(self, value: Any, key: Any, sensitive: tuple[Any, ...], unknown: Any) -> Any:
        return self.show(
            _child(value, key, None),
            tuple(_child(mark, key, False) for mark in sensitive),
            _child(unknown, key, False),
        )

    def leaf(self, value: Any) -> Any:
        if isinstance(value, str):
            if any(pattern.search(value) for pattern in self.patterns):
                return REDACTED
            return _mask(value, self.secrets)
        if isinstance(value, int | float) and not isinstance(value, bool) and str(value) in self.secrets:
            return REDACTED
        return value


# --- secrets -----------------------------------------------------------------------------------------


def secrets_in(plan: Mapping[str, Any]) -> set[str]:
    """Every clear-text value (as a string, at least MIN_SECRET_LENGTH long) the plan marks sensitive."""
    values: list[Any] = []
    marks = _marks_by_address(plan)
    for key in ("resource_changes", "resource_drift"):
        for entry in plan.get(key) or ():
            change = entry.get("change") or {}
            for side in ("before", "after"):
                values.extend(_marked(change.get(side), change.get(f"{side}_sensitive", False)))
                for mark in marks.get(entry.get("address"), ()):
                    values.extend(_marked(change.get(side), mark))
    for change in (plan.get("output_changes") or {}).values():
        values.extend(_marked(change.get("before"), change.get("before_sensitive", False)))
        values.extend(_marked(change.get("after"), change.get("after_sensitive", False)))
    for state in ((plan.get("prior_state") or {}).get("values"), plan.get("planned_values")):
        values.extend(_state_secrets(state or {}))
    values.extend(_sensitive_variable_values(plan))
    return {text for value in values if (text := _secret_text(value)) is not None}


def _marked(value: Any, mark: Any) -> Iterator[Any]:
    """Leaves of `value` under a true mark."""
    if mark is True:
        yield from _leaves(value)
    elif isinstance(mark, Mapping) and isinstance(value, Mapping):
        for key, child_mark in mark.items():
            yield from _marked(value.get(key), child_mark)
    elif isinstance(mark, list) and isinstance(value, list):
        for child_value, child_mark in zip(value, mark, strict=False):
            yield from _marked(child_value, child_mark)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for child in value.values():
            yield from _leaves(child)
    elif isinstance(value, list):
        for child in value:
            yield from _leaves(child)
    else:
        yield value


def _state_secrets(values: Mapping[str, Any]) -> Iterator[Any]:
    """Secrets in a state-shaped object (prior_state.values or planned_values)."""
    for output in (values.get("outputs") or {}).values():
        if output.get("sensitive"):
            yield from _leaves(output.get("value"))
    modules = [values.get("root_module") or {}]
    while modules:
        module = modules.pop()
        for resource in module.get("resources") or ():
            yield from _marked(resource.get("values"), resource.get("sensitive_values", False))
        modules.extend(module.get("child_modules") or ())


def _sensitive_variable_values(plan: Mapping[str, Any]) -> Iterator[Any]:
    """Values given to root variables declared sensitive, and defaults of any sensitive variable.

    Defaults matter because `configuration` repeats them in clear text.
    """
    root = (plan.get("configuration") or {}).get("root_module") or {}
    given = plan.get("variables") or {}
    for name, declaration in (root.get("variables") or {}).items():
        if declaration.get("sensitive") and name in given:
            yield from _leaves(given[name].get("value"))
    modules = [root]
    while modules:
        module = modules.pop()
        for declaration in (module.get("variables") or {}).values():
            if declaration.get("sensitive"):
                yield from _leaves(declaration.get("default"))
        modules.extend((call.get("module") or {}) for call in (module.get("module_calls") or {}).values())


def _secret_text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    text = str(value)
    return text if len(text) >= MIN_SECRET_LENGTH else None


def scrub(text: str, secrets: Collection[str], patterns: Sequence[re.Pattern[str]] = ()) -> str:
    """Replace every occurrence of a secret, then every pattern match, with REDACTED."""
    text = _mask(text, secrets)
    for pattern in patterns:
        text = pattern.sub(REDACTED, text)
    return text


def _mask(text: str, secrets: Collection[str]) -> str:
    # Mask the union of all occurrences at once: replacing secrets one after the other would leave the
    # tail of a secret that overlaps another ("abcd1234" + "1234wxyz" in "abcd1234wxyz").
    spans = sorted(span for secret in secrets if secret for span in _occurrences(text, secret))
    if not spans:
        return text
    pieces, kept_from = [], 0
    for start, end in _merged(spans):
        pieces += [text[kept_from:start], REDACTED]
        kept_from = end
    pieces.append(text[kept_from:])
    return "".join(pieces)


def _occurrences(text: str, secret: str) -> Iterator[tuple[int, int]]:
    start = text.find(secret)
    while start != -1:
        yield start, start + len(secret)
        start = text.find(secret, start + 1)


def _merged(spans: Sequence[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    current_start, current_end = spans[0]
    for start, end in spans[1:]:
        if start <= current_end:
            current_end = max(current_end, end)
        else:
            yield current_start, current_end
            current_start, current_end = start, end
    yield current_start, current_end


# --- JSON form ---------------------------------------------------------------------------------------


def summary_to_dict(summary: PlanSummary) -> dict:
    """JSON-safe form for the store, the CLI's --json and Slack; summary_from_dict reverses it."""
    return {
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


def summary_from_dict(data: Mapping[str, Any]) -> PlanSummary:
    return PlanSummary(
        terraform_version=data.get("terraform_version", ""),
        format_version=data.get("format_version", ""),
        changes=tuple(_change_from_dict(item) for item in data.get("changes", ())),
        drift=tuple(_change_from_dict(item) for item in data.get("drift", ())),
        output_changes=tuple(data.get("output_changes", ())),
        errored=bool(data.get("errored", False)),
        pending_code=bool(data.get("pending_code", False)),
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
    if summary.changes:
        lines += ["", "Changes:"]
        lines += _render_resources(summary.changes, max_resources, drift=False)
    if summary.output_changes:
        lines += ["", "Outputs changing: " + ", ".join(summary.output_changes)]
    return "\n".join(lines) + "\n"


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
