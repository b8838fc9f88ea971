"""Play-day arithmetic in `workflows/calendar.py`.

Covers `at_local` across both US daylight-saving switches in New York
(a 09:00 step stays at 09:00 local, so its UTC instant moves by an hour),
`day_number` (days count by local date, not UTC date), `days_late` (whole
calendar days, never negative), `weekly_dates` (strictly after the start,
up to and including `until`) and `next_weekday_on_or_after`.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from workflows.calendar import at_local, date_of_day, day_number, days_late, local_date, next_weekday_on_or_after, weekly_dates

NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# US DST 2027 starts Sunday 2027-03-14 (EST -5 -> EDT -4);
# DST 2026 ends Sunday 2026-11-01 (EDT -4 -> EST -5).
@pytest.mark.parametrize(
    ("day", "hour", "expected"),
    [
        (date(2027, 3, 13), 9, utc(2027, 3, 13, 14)),  # Saturday, still EST
        (date(2027, 3, 14), 9, utc(2027, 3, 14, 13)),  # switch day, 09:00 is already EDT
        (date(2027, 3, 15), 9, utc(2027, 3, 15, 13)),  # Monday, EDT
        (date(2027, 3, 13), 18, utc(2027, 3, 13, 23)),
        (date(2027, 3, 15), 18, utc(2027, 3, 15, 22)),
        (date(2026, 10, 31), 9, utc(2026, 10, 31, 13)),  # Saturday, still EDT
        (date(2026, 11, 1), 9, utc(2026, 11, 1, 14)),  # switch day, 09:00 is already EST
        (date(2026, 11, 2), 9, utc(2026, 11, 2, 14)),  # Monday, EST
        (date(2026, 10, 31), 18, utc(2026, 10, 31, 22)),
        (date(2026, 11, 2), 18, utc(2026, 11, 2, 23)),
        (date(2027, 1, 4), 0, utc(2027, 1, 4, 5)),  # midnight local is 05:00 UTC in winter
    ],
)
def test_at_local_keeps_the_local_hour_across_dst(day, hour, expected):
    got = at_local(day, hour, NY)
    assert got == expected
    assert got.utcoffset().total_seconds() == 0, "at_local must return an aware UTC datetime"
    assert local_date(got, NY) == day


def test_at_local_in_utc_zone_is_the_plain_hour():
    assert at_local(date(2027, 3, 14), 9, "UTC") == utc(2027, 3, 14, 9)


@pytest.mark.parametrize(
    ("start", "day", "expected"),
    [
        (date(2027, 1, 4), 1, date(2027, 1, 4)),
        (date(2027, 1, 4), 2, date(2027, 1, 5)),
        (date(2027, 1, 4), 25, date(2027, 1, 28)),
        (date(2027, 2, 27), 3, date(2027, 3, 1)),  # over the end of February
    ],
)
def test_date_of_day(start, day, expected):
    assert date_of_day(start, day) == expected


@pytest.mark.parametrize(
    ("start", "moment", "expected"),
    [
        (date(2027, 1, 4), utc(2027, 1, 4, 15), 1),  # Monday 10:00 local
        (date(2027, 1, 4), utc(2027, 1, 5, 4, 59), 1),  # 23:59 local, already the 5th in UTC
        (date(2027, 1, 4), utc(2027, 1, 5, 5, 0), 2),  # local midnight
        (date(2027, 1, 4), utc(2027, 1, 4, 4, 59), 0),  # 23:59 local on the day before the start
        (date(2027, 1, 4), utc(2027, 1, 2, 12), -1),
        (date(2027, 1, 4), utc(2027, 1, 28, 14), 25),
        (date(2027, 3, 13), utc(2027, 3, 15, 13), 3),  # across the spring switch
        (date(2027, 3, 13), utc(2027, 3, 15, 3, 59), 2),  # 23:59 EDT on the 14th
        (date(2026, 10, 31), utc(2026, 11, 2, 4, 59), 2),  # 23:59 EST on Nov 1st
        (date(2026, 10, 31), utc(2026, 11, 2, 5, 0), 3),  # local midnight after the autumn switch
    ],
)
def test_day_number_counts_local_dates(start, moment, expected):
    assert day_number(start, moment, NY) == expected


DUE = at_local(date(2027, 1, 4), 18, NY)  # Monday 18:00 local = 23:00 UTC


@pytest.mark.parametrize(
    ("done", "expected"),
    [
        (DUE, 0),  # exactly on time
        (at_local(date(2027, 1, 4), 9, NY), 0),  # early
        (at_local(date(2026, 12, 20), 9, NY), 0),  # weeks early: never negative
        (utc(2027, 1, 5, 4, 59), 0),  # same local day, 23:59: later hour, not a day late
        (utc(2027, 1, 5, 5, 0), 1),  # local midnight: next calendar day
        (at_local(date(2027, 1, 5), 9, NY), 1),
        (at_local(date(2027, 1, 5), 23, NY), 1),
        (at_local(date(2027, 1, 7), 12, NY), 3),
        (at_local(date(2027, 1, 13), 9, NY), 9),
    ],
)
def test_days_late(done, expected):
    assert days_late(DUE, done, NY) == expected


@pytest.mark.parametrize(
    ("due", "done", "expected"),
    [
        # due before the spring switch, done after it: still calendar days
        (at_local(date(2027, 3, 13), 18, NY), at_local(date(2027, 3, 15), 9, NY), 2),
        (at_local(date(2026, 10, 31), 18, NY), at_local(date(2026, 11, 1), 0, NY), 1),
    ],
)
def test_days_late_across_dst(due, done, expected):
    assert days_late(due, done, NY) == expected


# 2027-01-04 is a Monday; 2027-01-08 a Friday.
@pytest.mark.parametrize(
    ("after", "weekday", "until", "expected"),
    [
        (date(2027, 1, 4), "friday", date(2027, 1, 29),
         [date(2027, 1, 8), date(2027, 1, 15), date(2027, 1, 22), date(2027, 1, 29)]),  # until included
        (date(2027, 1, 4), "friday", date(2027, 1, 28),
         [date(2027, 1, 8), date(2027, 1, 15), date(2027, 1, 22)]),
        (date(2027, 1, 8), "friday", date(2027, 1, 22),
         [date(2027, 1, 15), date(2027, 1, 22)]),  # starting on a Friday skips that Friday
        (date(2027, 1, 4), "monday", date(2027, 1, 18),
         [date(2027, 1, 11), date(2027, 1, 18)]),  # same weekday as the start: a week later
        (date(2027, 1, 4), "tuesday", date(2027, 1, 12),
         [date(2027, 1, 5), date(2027, 1, 12)]),  # the very next day
        (date(2027, 1, 9), "sunday", date(2027, 1, 10), [date(2027, 1, 10)]),
        (date(2027, 1, 4), "friday", date(2027, 1, 7), []),  # until before the first one
        (date(2027, 1, 4), "friday", date(2027, 1, 4), []),
        (date(2027, 1, 4), "friday", date(2027, 1, 1), []),  # until before the start
    ],
)
def test_weekly_dates(after, weekday, until, expected):
    got = weekly_dates(after, weekday, until)
    assert got == expected
    assert all(d > after and d <= until for d in got)


@pytest.mark.parametrize(
    ("day", "weekday", "expected"),
    [
        (date(2027, 1, 4), "monday", date(2027, 1, 4)),  # on: the same day
        (date(2027, 1, 4), "friday", date(2027, 1, 8)),
        (date(2027, 1, 4), "sunday", date(2027, 1, 10)),
        (date(2027, 1, 8), "friday", date(2027, 1, 8)),
        (date(2027, 1, 9), "friday", date(2027, 1, 15)),  # Saturday -> next week's Friday
        (date(2027, 1, 10), "monday", date(2027, 1, 11)),
        (date(2027, 12, 30), "saturday", date(2028, 1, 1)),  # over the year end
    ],
)
def test_next_weekday_on_or_after(day, weekday, expected):
    assert next_weekday_on_or_after(day, weekday) == expected
