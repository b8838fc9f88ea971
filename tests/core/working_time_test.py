"""Working days, send windows and meeting slots (`core/working_time.py`), with real holiday data.

Holidays come from the `holidays` package through `core/holiday_calendars.py`, as plays get them:
- US 2026: Independence Day, Saturday 4 July, is observed on Friday 3 July;
- US 2027: Christmas, Saturday 25 December, is observed on Friday 24 December;
- FR 2027: Bastille Day, Wednesday 14 July; JP 2027: Coming of Age Day, Monday 11 January.
DST: the US switches on Sundays 2027-03-14 and 2026-11-01, the EU on 2027-03-28 and 2027-10-31
(in France, Easter Monday 2027-03-29 and All Saints' Day 2027-11-01 follow them).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from core.holiday_calendars import country_of_zone, place_problem, work_calendar
from core.models import CalendarPlace
from core.working_time import ALWAYS, SendWindow, WorkCalendar, meeting_slot

US = work_calendar(CalendarPlace(tz="America/New_York", country="US"), date(2026, 1, 1))
PARIS = work_calendar(CalendarPlace(tz="Europe/Paris", country="FR"), date(2026, 1, 1))
TOKYO = work_calendar(CalendarPlace(tz="Asia/Tokyo", country="JP"), date(2026, 1, 1))
LA = work_calendar(CalendarPlace(tz="America/Los_Angeles", country="US", region="CA"), date(2026, 1, 1))
DEFAULT = SendWindow()


def at(zone: str, *args) -> datetime:
    """A local wall time in `zone`, as aware UTC."""
    return datetime(*args, tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


# -- the calendars a play gets ---------------------------------------------------------
def test_holiday_data_these_tests_rely_on():
    assert US.is_holiday(date(2026, 7, 3)) and US.is_holiday(date(2026, 7, 4))  # Saturday, observed Friday
    assert US.is_holiday(date(2027, 12, 24)) and US.is_holiday(date(2027, 12, 25))
    assert PARIS.is_holiday(date(2027, 7, 14)) and not US.is_holiday(date(2027, 7, 14))
    assert TOKYO.is_holiday(date(2027, 1, 11))
    assert US.weekend == (5, 6) and US.source == "US" and LA.source == "US-CA"


def test_a_country_comes_from_the_zone_when_the_account_has_none():
    assert country_of_zone("America/New_York") == "US" and country_of_zone("Asia/Tokyo") == "JP"
    assert country_of_zone("UTC") is None
    implied = work_calendar(CalendarPlace(tz="Europe/Paris"), date(2027, 1, 1))
    assert implied.is_holiday(date(2027, 7, 14)) and implied.source == "FR"
    nowhere = work_calendar(CalendarPlace(tz="UTC"), date(2027, 1, 1))
    assert nowhere.holidays == () and nowhere.weekend == (5, 6)


def test_a_friday_saturday_weekend_comes_with_the_country():
    israel = work_calendar(CalendarPlace(tz="Asia/Jerusalem", country="IL"), date(2027, 1, 1))
    assert israel.weekend == (4, 5)
    assert israel.is_working_day(date(2027, 1, 3))  # a Sunday
    assert not israel.is_working_day(date(2027, 1, 1))  # a Friday


def test_unknown_places_are_named():
    assert place_problem("US", None) is None and place_problem("US", "NY") is None
    assert place_problem("ZZ", None)[0] == "country"
    assert place_problem("US", "XX")[0] == "region"


# -- working days ---------------------------------------------------------------------------
@pytest.mark.parametrize(("day", "n", "expected"), [
    (date(2026, 7, 2), 1, date(2026, 7, 6)),  # Thursday + 1: Friday the 3rd is observed, then the weekend
    (date(2026, 7, 3), 0, date(2026, 7, 6)),  # a holiday rolls forward
    (date(2027, 12, 23), 1, date(2027, 12, 27)),  # Christmas observed on Friday the 24th
    (date(2027, 12, 27), -1, date(2027, 12, 23)),
    (date(2027, 1, 8), 5, date(2027, 1, 15)),
])
def test_add_working_days_skips_weekends_and_observed_holidays(day, n, expected):
    assert US.add_working_days(day, n) == expected


def test_working_days_after_counts_only_working_days():
    assert US.working_days_after(date(2026, 7, 2), date(2026, 7, 6)) == 1
    assert US.working_days_after(date(2026, 7, 6), date(2026, 7, 2)) == 0
    every = WorkCalendar.every_day("America/New_York")
    assert every.working_days_after(date(2026, 7, 2), date(2026, 7, 6)) == 4
    assert every.add_working_days(date(2026, 7, 3), 2) == date(2026, 7, 5)


def test_a_calendar_without_working_days_fails_loudly():
    with pytest.raises(ValueError):
        WorkCalendar(weekend=(0, 1, 2, 3, 4, 5, 6))
    every_day_off = WorkCalendar(holidays=tuple(date(2027, 1, 1) + timedelta(days=k) for k in range(4000)))
    with pytest.raises(ValueError, match="no working day"):
        every_day_off.roll_forward(date(2027, 1, 1))


# -- send windows ------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "cal", "moment", "expected"), [
    ("inside", US, at("America/New_York", 2027, 1, 5, 10), at("America/New_York", 2027, 1, 5, 10)),
    ("before opening", US, at("America/New_York", 2027, 1, 5, 7), at("America/New_York", 2027, 1, 5, 9)),
    ("at closing", US, at("America/New_York", 2027, 1, 5, 17), at("America/New_York", 2027, 1, 6, 9)),
    ("Saturday", US, at("America/New_York", 2027, 1, 9, 10), at("America/New_York", 2027, 1, 11, 9)),
    ("observed Friday holiday", US, at("America/New_York", 2026, 7, 2, 18), at("America/New_York", 2026, 7, 6, 9)),
    ("Christmas observed on Friday 24th", US, at("America/New_York", 2027, 12, 23, 17, 30),
     at("America/New_York", 2027, 12, 27, 9)),
    # DST: 09:00 stays 09:00 local; its UTC instant moves.
    ("US spring forward weekend", US, at("America/New_York", 2027, 3, 13, 12), utc(2027, 3, 15, 13)),
    ("US fall back weekend", US, at("America/New_York", 2026, 10, 31, 12), utc(2026, 11, 2, 14)),
    # EU: the Monday after each switch is a French holiday too (Easter Monday, All Saints' Day).
    ("EU spring forward weekend", PARIS, at("Europe/Paris", 2027, 3, 27, 12), utc(2027, 3, 30, 7)),
    ("EU fall back weekend", PARIS, at("Europe/Paris", 2027, 10, 30, 12), utc(2027, 11, 2, 8)),
    ("Paris: Bastille Day", PARIS, at("Europe/Paris", 2027, 7, 13, 18), at("Europe/Paris", 2027, 7, 15, 9)),
    # Tokyo 09:00-17:00 is 00:00-08:00 UTC: the window crosses midnight UTC.
    ("Tokyo: just before its window, the evening before in UTC", TOKYO, utc(2027, 1, 5, 23, 30), utc(2027, 1, 6, 0)),
    ("Tokyo: inside, 07:59 UTC", TOKYO, utc(2027, 1, 6, 7, 59), utc(2027, 1, 6, 7, 59)),
    ("Tokyo: closed at 08:00 UTC", TOKYO, utc(2027, 1, 6, 8), utc(2027, 1, 7, 0)),
    ("Tokyo: Coming of Age Day", TOKYO, utc(2027, 1, 8, 9), utc(2027, 1, 12, 0)),
    # Los Angeles 09:00-17:00 is 17:00-01:00 UTC.
    ("LA: 00:30 UTC Tuesday is Monday afternoon", LA, utc(2027, 1, 5, 0, 30), utc(2027, 1, 5, 0, 30)),
    ("LA: 01:00 UTC is closing", LA, utc(2027, 1, 5, 1), utc(2027, 1, 5, 17)),
])
def test_next_slot(name, cal, moment, expected):
    assert DEFAULT.next_slot(moment, cal) == expected, name


def test_closes_at_is_the_end_of_the_open_window_even_across_midnight_utc():
    assert DEFAULT.closes_at(utc(2027, 1, 5, 0, 30), LA) == utc(2027, 1, 5, 1)
    assert DEFAULT.closes_at(utc(2027, 1, 6, 3), TOKYO) == utc(2027, 1, 6, 8)
    assert DEFAULT.closes_at(utc(2027, 1, 6, 9), TOKYO) is None


def test_a_window_that_runs_past_local_midnight_belongs_to_the_day_it_opens():
    late = SendWindow(days=(0, 1, 2, 3, 4), opens="22:00", closes="02:00")
    friday_night, saturday_small_hours = at("America/New_York", 2027, 1, 8, 23), at("America/New_York", 2027, 1, 9, 1)
    assert late.next_slot(friday_night, US) == friday_night
    assert late.next_slot(saturday_small_hours, US) == saturday_small_hours
    assert late.closes_at(saturday_small_hours, US) == at("America/New_York", 2027, 1, 9, 2)
    assert late.next_slot(at("America/New_York", 2027, 1, 9, 22), US) == at("America/New_York", 2027, 1, 11, 22)


def test_named_days_still_close_on_holidays_and_always_is_always():
    saturdays = SendWindow(days=(5,), opens="10:00", closes="12:00")
    assert saturdays.next_slot(at("America/New_York", 2026, 7, 1, 12), US) == at("America/New_York", 2026, 7, 11, 10)
    assert ALWAYS.next_slot(utc(2027, 12, 25, 3), US) == utc(2027, 12, 25, 3)


@pytest.mark.parametrize(("opens", "closes"), [("9:00", "17:00"), ("09:00", "25:00"), ("09:60", "17:00"),
                                              ("10:00", "10:00"), ("24:00", "10:00")])
def test_bad_windows_are_refused(opens, closes):
    with pytest.raises(ValueError):
        SendWindow(opens=opens, closes=closes)


# -- meeting slots ----------------------------------------------------------------------------
def test_a_meeting_slot_is_working_hours_for_the_customer_and_overlaps_ours_when_it_can():
    sent = at("Europe/Paris", 2027, 7, 12, 10)  # Monday; Wednesday the 14th is Bastille Day
    start = meeting_slot(sent, 2, 60, "10:00", PARIS, DEFAULT, US, DEFAULT)
    # Two working days on: Thursday 15th (the holiday does not count); 15:00 Paris = 09:00 New York.
    assert start == at("Europe/Paris", 2027, 7, 15, 15)


def test_a_meeting_slot_with_no_overlap_keeps_the_customers_working_day():
    sent = at("Asia/Tokyo", 2027, 1, 6, 11)
    start = meeting_slot(sent, 1, 30, "10:00", TOKYO, DEFAULT, US, DEFAULT)
    assert start == at("Asia/Tokyo", 2027, 1, 7, 10)


def test_a_meeting_never_falls_on_a_holiday_of_either_side():
    sent = at("America/New_York", 2026, 7, 1, 10)  # Wednesday; Friday the 3rd is off in the US
    start = meeting_slot(sent, 2, 30, "10:00", PARIS, DEFAULT, US, DEFAULT)
    assert start.astimezone(ZoneInfo("Europe/Paris")).date() == date(2026, 7, 6)
