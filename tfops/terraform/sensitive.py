"""What in a plan is secret, and how it is kept out of everything tfops shows or logs. Pure.

The JSON of a saved plan holds sensitive values in clear text. A summary only ever holds values
that Terraform did not mark sensitive, with unknown values named as such and configured patterns
redacted; `secrets_in` collects the clear-text secrets so that logs can be scrubbed of them too.

A node is shown as SENSITIVE when either ``before_sensitive`` or ``after_sensitive`` marks it, on
both sides: a value that stops being sensitive was still a secret before.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

SENSITIVE = "(sensitive)"
UNKNOWN = "(known after apply)"
REDACTED = "(redacted)"

MIN_SECRET_LENGTH = 4  # shorter values would scrub ordinary words out of logs

MISSING = object()  # an attribute absent from one side, as opposed to null


# --- values under marks ---------------------------------------------------------------------------


def child(value: Any, key: Any, default: Any = MISSING) -> Any:
    """The child `key` of a plan value, or of its sensitive or unknown marks (walked side by side)."""
    if value is True:  # a mark on a whole subtree covers every child
        return True
    if isinstance(value, Mapping):
        return value.get(key, default)
    if isinstance(value, list) and isinstance(key, int) and key < len(value):
        return value[key]
    return default


def none_if_missing(value: Any) -> Any:
    return None if value is MISSING else value


class Redactor:
    """Turns raw plan values into values safe to show."""

    def __init__(self, secrets: Collection[str], patterns: Sequence[re.Pattern[str]]) -> None:
        self.secrets = frozenset(secrets)
        self.patterns = tuple(patterns)

    def show(self, value: Any, sensitive: tuple[Any, ...], unknown: Any) -> Any:
        if (value is None or value is MISSING) and unknown is not True:
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
        return self.leaf(none_if_missing(value))

    def _show_child(self, value: Any, key: Any, sensitive: tuple[Any, ...], unknown: Any) -> Any:
        return self.show(
            child(value, key, None),
            tuple(child(mark, key, False) for mark in sensitive),
            child(unknown, key, False),
        )

    def leaf(self, value: Any) -> Any:
        if isinstance(value, str):
            if any(pattern.search(value) for pattern in self.patterns):
                return REDACTED
            return _mask(value, self.secrets)
        if isinstance(value, int | float) and not isinstance(value, bool) and str(value) in self.secrets:
            return REDACTED
        return value


def marks_by_address(plan: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
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


# --- secrets -----------------------------------------------------------------------------------------


def secrets_in(plan: Mapping[str, Any]) -> set[str]:
    """Every clear-text value (as a string, at least MIN_SECRET_LENGTH long) the plan marks sensitive."""
    values: list[Any] = []
    marks = marks_by_address(plan)
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
