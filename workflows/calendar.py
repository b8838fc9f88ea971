"""Play-day arithmetic: pure functions, deterministic, safe inside workflows.

Day 1 is the local date a play starts on; a step "on day N" fires at the
playbook's `work_start_hour` local time on that date, and a task "due on
day N" is due at `due_hour` that date. Local time is the playbook's time
zone, so a 09:00 e-mail stays at 09:00 across a DST change.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

WEEKDAY_NUMBERS = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
}


def local_date(moment: datetime, tz: str) -> date:
    return moment.astimezone(ZoneInfo(tz)).date()


def at_local(day: date, hour: int, tz: str) -> datetime:
    """The UTC instant of `hour`:00 local time on `day`."""
    return datetime.combine(day, time(hour), tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def date_of_day(start: date, day: int) -> date:
    return start + timedelta(days=day - 1)


def day_number(start: date, moment: datetime, tz: str) -> int:
    return (local_date(moment, tz) - start).days + 1


def days_late(due: datetime, done: datetime, tz: str) -> int:
    """Whole calendar days between the due date and the completion date, never negative."""
    if done <= due:
        return 0
    return max(0, (local_date(done, tz) - local_date(due, tz)).days)


def weekly_dates(after: date, weekday: str, until: date) -> list[date]:
    """Every `weekday` strictly after `after`, up to and including `until`."""
    first = after + timedelta(days=(WEEKDAY_NUMBERS[weekday] - after.weekday() - 1) % 7 + 1)
    out = []
    while first <= until:
        out.append(first)
        first += timedelta(days=7)
    return out


def next_weekday_on_or_after(day: date, weekday: str) -> date:
    return day + timedelta(days=(WEEKDAY_NUMBERS[weekday] - day.weekday()) % 7)
