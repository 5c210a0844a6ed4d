"""Sync windows (tfops.windows): window arithmetic with a fake clock, across Europe/Berlin's clock
changes, deny over allow, and which actions a window covers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tfops.models import StackWindows, SyncWindow, WindowAction, WindowKind
from tfops.windows import hold, is_open

BERLIN = ZoneInfo("Europe/Berlin")
APPLY, REMEDIATE = WindowAction.APPLY, WindowAction.REMEDIATE
FREEZE = SyncWindow(WindowKind.DENY, "0 17 * * FRI", 64 * 3600.0, (APPLY, REMEDIATE))
OFFICE = SyncWindow(WindowKind.ALLOW, "0 8 * * MON-FRI", 10 * 3600.0, (APPLY,))


def berlin(*args: int) -> datetime:
    """A wall-clock time in Berlin (fold 0: the first of a repeated hour)."""
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def windows(*items: SyncWindow, timezone: str = "Europe/Berlin") -> StackWindows:
    return StackWindows(items, timezone)


def test_without_windows_every_apply_may_happen():
    assert hold(windows(), APPLY, berlin(2026, 11, 27, 18, 0)) is None


def test_inside_the_friday_freeze_an_apply_waits_until_monday_and_says_until_when():
    held = hold(windows(FREEZE, OFFICE), APPLY, berlin(2026, 11, 27, 18, 0))

    assert held is not None
    assert held.until == berlin(2026, 11, 30, 9, 0)  # Friday 17:00 + 64h, no clock change
    assert "deny window `0 17 * * FRI` for 64h" in held.reason
    assert "2026-11-30 09:00 CET" in held.reason


def test_deny_wins_over_an_allow_window_that_is_open_at_the_same_time():
    lunch = SyncWindow(WindowKind.DENY, "0 12 * * WED", 2 * 3600.0)
    stack = windows(OFFICE, lunch)

    assert is_open(stack, APPLY, berlin(2026, 11, 25, 11, 59))
    held = hold(stack, APPLY, berlin(2026, 11, 25, 12, 30))
    assert held is not None and held.until == berlin(2026, 11, 25, 14, 0)


def test_with_an_allow_window_applies_happen_only_inside_one():
    stack = windows(OFFICE)

    assert is_open(stack, APPLY, berlin(2026, 11, 26, 8, 0))  # its start is inside
    assert is_open(stack, APPLY, berlin(2026, 11, 26, 17, 59))
    assert not is_open(stack, APPLY, berlin(2026, 11, 26, 18, 0))  # its end is not
    held = hold(stack, APPLY, berlin(2026, 11, 28, 10, 0))  # Saturday
    assert held is not None and held.until == berlin(2026, 11, 30, 8, 0)
    assert "outside the allow window `0 8 * * MON-FRI` for 10h" in held.reason


def test_a_window_covers_only_the_actions_it_names():
    stack = windows(OFFICE, SyncWindow(WindowKind.DENY, "0 0 * * *", 25 * 3600.0, (REMEDIATE,)))
    saturday = berlin(2026, 11, 28, 10, 0)

    assert not is_open(stack, APPLY, saturday)  # the allow window covers applies only
    assert not is_open(stack, REMEDIATE, berlin(2026, 11, 26, 10, 0))  # the deny covers remediation
    held = hold(stack, REMEDIATE, saturday)
    assert held is not None and held.until is None  # a deny that starts every day for a day and more
    assert "no window opens in the year ahead" in held.reason
    assert is_open(windows(OFFICE), REMEDIATE, saturday)


def test_a_daily_deny_of_24_hours_leaves_the_hour_the_autumn_change_adds():
    # Durations are real time (as in Argo CD): the day clocks go back has 25 hours.
    always = windows(SyncWindow(WindowKind.DENY, "0 0 * * *", 24 * 3600.0))
    held = hold(always, APPLY, berlin(2026, 11, 28, 10, 0))

    assert held is not None and held.until == berlin(2027, 10, 31, 23, 0)


def test_a_freeze_over_the_spring_clock_change_lasts_64_hours_of_real_time():
    # Clocks go from 02:00 CET to 03:00 CEST on Sunday 28 March 2027: 64 hours from Friday 17:00
    # CET end on Monday at 10:00 CEST, an hour later on the wall clock than in other weeks.
    stack = windows(FREEZE, OFFICE)
    held = hold(stack, APPLY, berlin(2027, 3, 29, 9, 30))

    assert held is not None
    assert held.until == berlin(2027, 3, 29, 10, 0)
    assert held.until - berlin(2027, 3, 26, 17, 0) == timedelta(hours=64)
    assert "2027-03-29 10:00 CEST" in held.reason
    assert is_open(stack, APPLY, berlin(2027, 3, 29, 10, 0))


def test_a_freeze_over_the_autumn_clock_change_ends_an_hour_earlier_on_the_wall_clock():
    # Clocks go from 03:00 CEST back to 02:00 CET on Sunday 25 October 2026.
    stack = windows(FREEZE, OFFICE)
    held = hold(stack, APPLY, berlin(2026, 10, 24, 12, 0))

    assert held is not None and held.until == berlin(2026, 10, 26, 8, 0)
    assert held.until - berlin(2026, 10, 23, 17, 0) == timedelta(hours=64)
    assert is_open(stack, APPLY, berlin(2026, 10, 26, 8, 0))


def test_a_start_in_the_hour_skipped_in_spring_happens_once_an_hour_later():
    nightly = windows(SyncWindow(WindowKind.ALLOW, "30 2 * * *", 1800.0))
    day = datetime(2027, 3, 28, tzinfo=UTC)  # 01:00 UTC is when 02:00 CET becomes 03:00 CEST

    openings = [minute for minute in _minutes(day, hours=24) if is_open(nightly, APPLY, minute)]

    assert openings[0] == berlin(2027, 3, 28, 3, 30)  # 02:30 CET never shows on a clock: 03:30 CEST
    assert len(openings) == 30  # once, for its 30 minutes


def test_a_start_in_the_hour_repeated_in_autumn_opens_the_window_each_time_the_clock_reads_it():
    nightly = windows(SyncWindow(WindowKind.ALLOW, "30 2 * * *", 1800.0))
    first = berlin(2026, 10, 25, 2, 45)  # CEST, 00:45 UTC
    second = first.astimezone(UTC) + timedelta(hours=1)  # 02:45 CET
    between = berlin(2026, 10, 25, 2, 15).replace(fold=1)  # 02:15 CET, 01:15 UTC

    assert is_open(nightly, APPLY, first)
    assert is_open(nightly, APPLY, second)
    assert not is_open(nightly, APPLY, between)
    held = hold(nightly, APPLY, between)
    assert held is not None and held.until == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)


def test_a_daily_window_follows_the_wall_clock_across_the_change():
    office = windows(OFFICE)
    # 08:00 local is 07:00 UTC in summer time and 08:00 UTC... in winter 07:00 UTC: before and after.
    assert hold(office, APPLY, berlin(2026, 10, 23, 7, 59)) is not None
    assert is_open(office, APPLY, datetime(2026, 10, 23, 6, 0, tzinfo=UTC))  # 08:00 CEST
    assert not is_open(office, APPLY, datetime(2026, 10, 26, 6, 30, tzinfo=UTC))  # 07:30 CET
    assert is_open(office, APPLY, datetime(2026, 10, 26, 7, 0, tzinfo=UTC))  # 08:00 CET


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_the_schedule_reads_the_stacks_timezone(zone):
    stack = windows(OFFICE, timezone=zone)
    at_eight = datetime(2026, 11, 26, 8, 0, tzinfo=ZoneInfo(zone))

    assert is_open(stack, APPLY, at_eight)
    assert not is_open(stack, APPLY, at_eight - timedelta(minutes=1))


def _minutes(start: datetime, *, hours: int) -> list[datetime]:
    return [start + timedelta(minutes=minute) for minute in range(hours * 60)]
