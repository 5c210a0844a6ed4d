"""``guards:`` in ``defaults:`` and in a stack entry: limits a plan must stay within to be applied
without a person (tfops.guards). A stack's keys override the defaults' (``max_destroy: null`` in a
stack lifts the defaults' limit); ``protect`` lists are replaced, not merged, like ``approvers``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from tfops.config.drift import AddressGlob, drift_ignore_rules
from tfops.config.fields import Section
from tfops.models import StackGuards

if TYPE_CHECKING:  # config.stacks imports this module for its field types
    from tfops.config.stacks import StackDefaults, StackEntry


class GuardsSettings(Section):
    max_destroy: Annotated[int, Field(ge=0)] | None = None  # resources a plan may destroy; None: any
    max_replace: Annotated[int, Field(ge=0)] | None = None  # resources a plan may replace; None: any
    protect: tuple[AddressGlob, ...] = ()  # addresses (globs) never destroyed or replaced without a person


def stack_guards(defaults: GuardsSettings, entry: GuardsSettings | None) -> StackGuards:
    """The defaults' guards with the keys the stack's ``guards:`` writes laid over them."""
    merged = defaults
    if entry is not None:
        merged = defaults.model_copy(update={name: getattr(entry, name) for name in entry.model_fields_set})
    return StackGuards(max_destroy=merged.max_destroy, max_replace=merged.max_replace, protect=merged.protect)


def describe_rules(defaults: StackDefaults, entry: StackEntry | None = None) -> str:
    """For `tfops check-config`: the guards and the number of drift ignore rules, or "" if none."""
    guards = stack_guards(defaults.guards, entry.guards if entry is not None else None)
    rules = drift_ignore_rules(defaults.drift, entry.drift if entry is not None else None)
    parts = [
        f"{name} {value}"
        for name, value in (("max_destroy", guards.max_destroy), ("max_replace", guards.max_replace))
        if value is not None
    ]
    if guards.protect:
        parts.append(f"protect {', '.join(guards.protect)}")
    shown = f", guards: {' '.join(parts)}" if parts else ""
    if rules:
        shown += f", {len(rules)} drift ignore rule{'' if len(rules) == 1 else 's'}"
    return shown
