"""Durations in tfops.yaml: ``90``, ``"1500ms"``, ``"30s"``, ``"10m"``, ``"2h"``, ``"1h30m"``, ``"1d"``."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_TEXT = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(value: object) -> float:
    """Seconds from ``90``, ``"90"``, ``"1500ms"``, ``"30s"``, ``"10m"``, ``"2h"``, ``"1h30m"``, ``"1d"``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        # ValueError, not TypeError: pydantic turns only ValueError into a field error.
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    seconds = float(value) if not isinstance(value, str) else _parse_duration_text(value)
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    if seconds < 0:
        raise ValueError(f"a duration must not be negative — got {value!r}")
    return seconds


_DURATION_HELP = "use seconds (90) or a number with a unit: 1500ms, 30s, 10m, 2h, 1h30m, 1d"


def _parse_duration_text(value: str) -> float:
    text = value.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    magnitude = text.removeprefix("-")
    if not _DURATION_TEXT.fullmatch(magnitude):
        raise ValueError(f"invalid duration {value!r}: {_DURATION_HELP}")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(magnitude))
    return -seconds if magnitude != text else seconds


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration` for display: 5400 → ``"1h30m"``, 0.5 → ``"500ms"``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole, fraction = int(seconds), seconds - int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    rest = round(whole + fraction, 3)
    if rest or not parts:
        parts.append(f"{rest:g}s")
    return "".join(parts)


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("must be greater than 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
