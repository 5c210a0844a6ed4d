"""``windows:`` and ``timezone:`` in ``defaults:`` and in a stack entry: when plans may be applied
(tfops.windows). A stack's ``windows:`` replaces the defaults' (``windows: []`` frees a stack from
them), like ``approvers``; its ``timezone:`` replaces the defaults' too.
"""

from __future__ import annotations

from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator

from tfops.config.durations import PositiveDuration
from tfops.config.fields import Section, lowercase
from tfops.models import StackWindows, SyncWindow, WindowAction, WindowKind
from tfops.windows import cron


def _schedule(value: str) -> str:
    value = " ".join(value.split())
    fields = value.split(" ")
    if len(fields) != 5:
        raise ValueError(f"{value!r} is not a cron schedule: five fields, minute hour day month weekday")
    if any(char.isdigit() for char in fields[4]):
        # APScheduler numbers weekdays from Monday (0), cron from Sunday: a number would mean a
        # different day than the one its writer meant.
        raise ValueError(f"{value!r}: write the day of the week by name (MON-FRI, SAT,SUN), not by number")
    try:
        cron(value, "UTC")
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a cron schedule: {exc}") from None
    return value


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a time zone name (e.g. Europe/Berlin, UTC)") from None
    return value


Schedule = Annotated[str, AfterValidator(_schedule)]
TimeZone = Annotated[str, AfterValidator(_timezone)]


class WindowEntry(Section):
    """One window: from each `schedule` start, for `duration`, over `actions`."""

    kind: Annotated[WindowKind, BeforeValidator(lowercase)]
    schedule: Schedule
    duration: PositiveDuration
    actions: tuple[Annotated[WindowAction, BeforeValidator(lowercase)], ...] = (
        WindowAction.APPLY,
        WindowAction.REMEDIATE,
    )

    def window(self) -> SyncWindow:
        return SyncWindow(self.kind, self.schedule, self.duration, tuple(dict.fromkeys(self.actions)))


def stack_windows(
    defaults: tuple[WindowEntry, ...],
    default_zone: str,
    entry: tuple[WindowEntry, ...] | None,
    entry_zone: str | None,
) -> StackWindows:
    """The stack's windows if it writes `windows:`, else the defaults'; the same for `timezone:`."""
    chosen = defaults if entry is None else entry
    return StackWindows(tuple(item.window() for item in chosen), entry_zone or default_zone)
