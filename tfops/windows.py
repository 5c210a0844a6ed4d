"""Sync windows: when a stack's plans may be applied. Pure: every answer is computed from the
stack's windows and the `now` it is given.

Argo CD's and Burrito's semantics. A window opens each time its cron `schedule` fires (in the
stack's timezone) and stays open for `duration` of real time; it covers the `actions` it names.
For one action: inside any deny window, no; else, when allow windows exist, only inside one of
them; else, yes. Planning and drift detection are never held back: only applies are.

Cron arithmetic is APScheduler's `CronTrigger` (already what drives tfops' clock), always asked
with UTC instants so that the hour clocks skip or repeat is handled by the library, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from tfops.models import RunKind, StackWindows, SyncWindow, WindowAction, WindowKind

if TYPE_CHECKING:  # APScheduler is imported when a schedule is first parsed: see `cron`
    from apscheduler.triggers.cron import CronTrigger

# How far ahead the next opening is looked for; beyond it, "no opening within a year".
HORIZON = timedelta(days=366)
# Bounds on the work of one question, for schedules no one would write (a deny window that starts
# every minute): real ones need a handful of steps. Past them, no opening is promised.
_MAX_STEPS = 1000
_MAX_JUMPS = 2000
_STEP = timedelta(seconds=1)
_CLOCK_CHANGE = timedelta(hours=1)  # cron resolution is a minute; APScheduler's is a second


@dataclass(frozen=True)
class Hold:
    """Why applying must wait now, and from when it may go on (None: not within a year)."""

    reason: str
    until: datetime | None


def action_for(kind: RunKind) -> WindowAction | None:
    """What a run of this kind would do by applying; None: it never applies (a plan)."""
    if kind is RunKind.DEPLOY:
        return WindowAction.APPLY
    if kind is RunKind.DRIFT:
        return WindowAction.REMEDIATE
    return None


def hold(windows: StackWindows, action: WindowAction, now: datetime) -> Hold | None:
    """None when `action` may happen at `now`; otherwise why not, and when it may."""
    relevant = [window for window in windows.windows if action in window.actions]
    if not relevant:
        return None
    zone = ZoneInfo(windows.timezone)
    now = now.astimezone(UTC)
    reason = _why_closed(relevant, zone, now)
    if reason is None:
        return None
    until = next_open(relevant, zone, now)
    when = f"it may apply from {local(until, zone)}" if until else "no window opens in the year ahead"
    return Hold(f"{reason}; {when}", until)


def is_open(windows: StackWindows, action: WindowAction, now: datetime) -> bool:
    """`hold(...) is None` without looking for the next opening (the wake-up job asks often)."""
    relevant = [window for window in windows.windows if action in window.actions]
    return not relevant or _why_closed(relevant, ZoneInfo(windows.timezone), now.astimezone(UTC)) is None


def next_open(relevant: list[SyncWindow], zone: ZoneInfo, now: datetime) -> datetime | None:
    """The first instant from `now` at which no deny window is open and, if there are allow
    windows, one of them is: jump to the end of the deny windows, or to the next allow start."""
    moment = now
    allows = [window for window in relevant if window.kind is WindowKind.ALLOW]
    for _ in range(_MAX_JUMPS):
        if moment - now > HORIZON:
            return None
        deny_ends = [
            end
            for window in relevant
            if window.kind is WindowKind.DENY and (end := open_until(window, zone, moment)) is not None
        ]
        if deny_ends:
            moment = max(deny_ends)
            continue
        if not allows or any(open_until(window, zone, moment) is not None for window in allows):
            return moment
        starts = [start for window in allows if (start := _next_fire(window, zone, moment)) is not None]
        if not starts:
            return None
        moment = min(starts)
    return None


def open_until(window: SyncWindow, zone: ZoneInfo, now: datetime) -> datetime | None:
    """When the window, open at `now`, closes (its latest start covering `now`); None: shut.

    A start at `s` covers [s, s + duration). The latest start at or before `now` is found by
    looking back 1, 2, 4... minutes (never past `now - duration`), then forward from there."""
    duration = timedelta(seconds=window.duration)
    # Whole seconds: APScheduler rounds a fractional start up, which would skip a start on it. An
    # hour more: APScheduler yields a start in the hour clocks skip only when asked from before it.
    earliest = (now - duration - _CLOCK_CHANGE).replace(microsecond=0)
    back = timedelta(minutes=1)
    while True:
        since = max(earliest, (now - back).replace(microsecond=0))
        fire = _next_fire(window, zone, since)
        if fire is not None and fire <= now:
            break
        if since == earliest:
            return None
        back *= 2
    for _ in range(_MAX_STEPS):
        later = _next_fire(window, zone, fire + _STEP)
        if later is None or later > now:
            break
        fire = later
    return fire + duration if fire + duration > now else None


def local(moment: datetime, zone: ZoneInfo) -> str:
    """A moment as people of the stack's timezone read it: "2026-11-30 08:00 CET"."""
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _why_closed(relevant: list[SyncWindow], zone: ZoneInfo, now: datetime) -> str | None:
    for window in relevant:
        if window.kind is WindowKind.DENY and (end := open_until(window, zone, now)) is not None:
            return f"inside the deny window {describe(window)} until {local(end, zone)}"
    allows = [window for window in relevant if window.kind is WindowKind.ALLOW]
    if allows and all(open_until(window, zone, now) is None for window in allows):
        return (
            "outside the allow window" + ("s " if len(allows) > 1 else " ") + ", ".join(map(describe, allows))
        )
    return None


def describe(window: SyncWindow) -> str:
    return f"`{window.schedule}` for {_duration(window.duration)}"


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours}h{minutes}m"
    if hours:
        return f"{hours}h"
    return f"{minutes}m" if minutes else f"{int(seconds)}s"


def _next_fire(window: SyncWindow, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first start at or after `after` (a UTC instant), as a UTC instant."""
    fire = cron(window.schedule, zone.key).get_next_fire_time(None, after.astimezone(UTC))
    return fire.astimezone(UTC) if fire is not None else None


@lru_cache(maxsize=256)
def cron(schedule: str, timezone: str) -> CronTrigger:
    """The parsed schedule (ValueError if it is not one); parsed once per schedule and zone.
    Imported here: loading a configuration without windows (every CLI command) need not pay
    for APScheduler."""
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger.from_crontab(schedule, timezone=ZoneInfo(timezone))
