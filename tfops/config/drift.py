"""``drift:`` in ``defaults:`` and in a stack entry: drift that is meant to happen (``ignore``).

A stack's rules are added to the defaults' rules: a rule in defaults (say, a scanner's tag on
every instance) holds for every stack, and a stack adds its own (its autoscaler's capacity).
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, model_validator

from tfops.config.fields import Section
from tfops.drift_ignore import PathSyntaxError, path_steps
from tfops.models import DriftIgnoreRule

# Resource types are provider_name words; `*` and `?` make them globs.
_TYPE_GLOB = re.compile(r"[A-Za-z0-9_*?]+")


def _address_glob(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    if any(char.isspace() for char in value):
        raise ValueError(f"{value!r} is not a resource address glob (no spaces; e.g. aws_instance.*)")
    return value


def _type_glob(value: str) -> str:
    value = value.strip()
    if not _TYPE_GLOB.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a resource type glob (letters, digits, '_', '*'; e.g. aws_instance)"
        )
    return value


def _attribute_path(value: str) -> str:
    value = value.strip()
    try:
        path_steps(value)
    except PathSyntaxError as exc:
        raise ValueError(str(exc)) from None
    return value


AddressGlob = Annotated[str, AfterValidator(_address_glob)]
TypeGlob = Annotated[str, AfterValidator(_type_glob)]
AttributePath = Annotated[str, AfterValidator(_attribute_path)]


class DriftIgnoreEntry(Section):
    """One rule: resources by `address` and/or `type` (globs), and the `attributes` of theirs whose
    drift is ignored; without `attributes`, the whole resource."""

    address: AddressGlob | None = None
    type: TypeGlob | None = None
    attributes: tuple[AttributePath, ...] | None = None  # None: the whole resource

    @model_validator(mode="after")
    def _selects_something(self) -> DriftIgnoreEntry:
        if self.address is None and self.type is None:
            raise ValueError("a drift ignore rule needs `address` or `type` (a glob) to select resources")
        if self.attributes is not None and not self.attributes:
            raise ValueError(
                "`attributes: []` ignores nothing; leave `attributes` out to ignore the whole resource"
            )
        return self

    def rule(self) -> DriftIgnoreRule:
        return DriftIgnoreRule(address=self.address, type=self.type, attributes=tuple(self.attributes or ()))


class DriftSettings(Section):
    """``drift:`` of ``defaults:`` or of a stack."""

    ignore: tuple[DriftIgnoreEntry, ...] = ()  # drift that is recorded as ignored, never alarmed or reverted


def drift_ignore_rules(defaults: DriftSettings, entry: DriftSettings | None) -> tuple[DriftIgnoreRule, ...]:
    """The defaults' rules, then the stack's."""
    entries = defaults.ignore + (entry.ignore if entry is not None else ())
    return tuple(dict.fromkeys(item.rule() for item in entries))
