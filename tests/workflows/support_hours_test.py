"""SLA business hours from an organisation profile's support region (issue 19): `BusinessCalendar`
with a week of open spells, `region_calendar` (hours and holidays at launch), and `SlaTimeline`
counting them. Every expected instant is computed by hand; local times unless `Z`.

- The default profile's week (Mon-Fri 09:00-18:00 New York) gives exactly what the calendar of
  plays launched before profiles gives (open_hour/close_hour), over a whole year of starts.
- Partial days (Paris, Saturday 10:00-14:00, seed 004), round-the-clock shifts (Moscow, seed 000),
  spells past midnight, DST weekends.
- The year-boundary bug: a ticket's opening written with a far-east UTC offset on 1 January is in
  the previous year in New York; its holidays are the region's local year's.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import holidays
import pytest

from playbooks.loader import load_named
from playbooks.profile_schema import SupportRegion
from playbooks.profiles import default_profile, region_calendar
from starter.steering import public_holidays
from workflows.business_time import BusinessCalendar
from workflows.sla_timeline import Interval, SlaState, SlaTimeline

NY = ZoneInfo("America/New_York")
PARIS = ZoneInfo("Europe/Paris")
MOSCOW = ZoneInfo("Europe/Moscow")
H = timedelta(hours=1)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")


def local(zone, *args) -> datetime:
    return datetime(*args, tzinfo=zone)


def calendar_of(region: SupportRegion, holidays_: frozenset = frozenset()) -> BusinessCalendar:
    return BusinessCalendar(region.timezone, holidays=holidays_, week=region.week())


PARIS_REGION = SupportRegion(key="paris", timezone="Europe/Paris", holidays="FR", hours={
    **{d: ["09:00-18:00"] for d in WEEKDAYS}, "saturday": ["10:00-14:00"]}, business_day_hours=9)
MOSCOW_REGION = SupportRegion(key="moscow", timezone="Europe/Moscow", hours={
    d: ["08:00-17:00", "17:00-02:00", "02:00-08:00"] for d in (*WEEKDAYS, "saturday", "sunday")})


def test_the_default_profile_week_counts_like_the_calendar_before_profiles():
    us = frozenset(holidays.US(years=[2026, 2027, 2028]))
    before = BusinessCalendar("America/New_York", 9, 18, us)
    region = default_profile().region_for_tier("Enterprise")
    now = calendar_of(region, us)
    start = local(NY, 2027, 1, 1, 0, 17)
    for n in range(0, 24 * 365, 7):  # every 7 hours through 2027: all hours of the week, both DST switches
        at = start + n * H
        assert now.is_open(at) == before.is_open(at), at
        for hours in (0.5, 1, 9, 27):
            assert now.add(at, hours * H) == before.add(at, hours * H), (at, hours)
        assert now.elapsed(at, at + 50 * H) == before.elapsed(at, at + 50 * H), at


@pytest.mark.parametrize(("start", "hours", "due"), [
    # Seed 004: Mon-Fri 09-18 and Saturday 10-14 in Paris.
    (local(PARIS, 2027, 6, 4, 17), 3, local(PARIS, 2027, 6, 5, 12)),      # Fri 17:00: 1 h Friday, 2 h Saturday
    (local(PARIS, 2027, 6, 4, 17), 8, local(PARIS, 2027, 6, 7, 12)),      # ... 4 h Saturday, Monday 09-12
    (local(PARIS, 2027, 6, 5, 15), 1, local(PARIS, 2027, 6, 7, 10)),      # Saturday after 14:00: Monday
    (local(PARIS, 2027, 6, 6, 11), 0.5, local(PARIS, 2027, 6, 7, 9, 30)),  # Sunday: closed
    # DST starts Sunday 2027-03-28 02:00: Saturday 13:00 CET + 3 h = Monday 11:00 CEST (09:00Z).
    (local(PARIS, 2027, 3, 27, 13), 3, datetime(2027, 3, 29, 9, tzinfo=timezone.utc)),
    # DST ends Sunday 2027-10-31 03:00: Saturday 13:00 CEST + 3 h = Monday 11:00 CET (10:00Z).
    (local(PARIS, 2027, 10, 30, 13), 3, datetime(2027, 11, 1, 10, tzinfo=timezone.utc)),
])
def test_a_saturday_window(start, hours, due):
    assert calendar_of(PARIS_REGION).add(start, hours * H) == due


def test_a_holiday_closes_its_saturday_window_too():
    # 2027-05-08 (Victoire 1945) is a Saturday: Friday 17:00 + 3 h runs to Monday 11:00.
    fr = frozenset(holidays.FR(years=[2027]))
    assert date(2027, 5, 8) in fr
    assert calendar_of(PARIS_REGION, fr).add(local(PARIS, 2027, 5, 7, 17), 3 * H) == local(PARIS, 2027, 5, 10, 11)


def test_three_moscow_shifts_cover_the_clock():
    cal = calendar_of(MOSCOW_REGION)
    start = local(MOSCOW, 2027, 6, 4, 16, 30)  # a Friday
    assert cal.add(start, 30 * H) == start + 30 * H
    assert cal.elapsed(start, start + 100 * H) == 100 * H
    assert MOSCOW_REGION.day_hours == 24


def test_a_spell_past_midnight_belongs_to_the_day_it_opens():
    region = SupportRegion(key="night", timezone="Europe/Moscow", hours={"monday": ["17:00-02:00"]})
    cal = calendar_of(region)
    # Monday 23:00 + 5 h: 1 h to midnight, 2 h Tuesday night, then next Monday 17:00 + 2 h.
    assert cal.add(local(MOSCOW, 2027, 6, 7, 23), 5 * H) == local(MOSCOW, 2027, 6, 14, 19)
    assert cal.is_open(local(MOSCOW, 2027, 6, 8, 1, 59)) and not cal.is_open(local(MOSCOW, 2027, 6, 8, 2))


# -- holidays of the region's own year ------------------------------------------------------------
def test_a_far_east_offset_on_new_year_is_the_previous_year_in_new_york():
    """2028-01-01T02:00+14:00 is Friday 31 December 2027, 07:00 in New York: New Year's Day 2028
    observed, a US holiday listed with 2027. The holidays of the written date's years (2028, 2029)
    miss it; the region's own year has it. A Starter P1 (8 business hours) then counts from Monday
    3 January 09:00 and is due at 17:00, not on Friday 31 December at 17:00."""
    opened = datetime(2028, 1, 1, 2, tzinfo=timezone(timedelta(hours=14)))
    assert opened.astimezone(NY) == local(NY, 2027, 12, 31, 7)
    assert date(2027, 12, 31) not in public_holidays("US", opened.date())  # what the clock was given before
    calendar = default_profile().support_calendar("Starter", opened)
    assert date(2027, 12, 31) in calendar.holidays
    state = SlaState(ticket_id="T", subject="s", tier="Starter", priority="P1", opened_at=opened,
                     running=[Interval(start=opened)])
    timeline = SlaTimeline(load_named("sla").content, state, [], calendar)
    assert timeline.deadline("response") == local(NY, 2028, 1, 3, 17)


@pytest.mark.parametrize("offset_minutes", range(-12 * 60, 14 * 60 + 1, 45))
@pytest.mark.parametrize("written", [datetime(2028, 1, 1, 0, 30), datetime(2027, 12, 31, 23, 30),
                                     datetime(2027, 1, 1, 8, 0)])
def test_any_written_offset_gets_the_holidays_of_the_local_year(written, offset_minutes):
    opened = written.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    region = default_profile().region_for_tier("Enterprise")
    calendar = region_calendar(region, opened)
    local_day = opened.astimezone(NY).date()
    expected = set(holidays.US(years=[local_day.year - 1, local_day.year, local_day.year + 1]))
    assert set(calendar.holidays) == expected
    # And the clock counts the same as one built from the package for those years.
    reference = BusinessCalendar("America/New_York", 9, 18, frozenset(expected))
    assert calendar_of(region, frozenset(calendar.holidays)).add(opened, 20 * H) == reference.add(opened, 20 * H)


def test_the_support_calendar_follows_the_tier_s_region(tmp_path):
    from tests.playbooks.profiles_test import copy_playbooks, write_profile

    folder = copy_playbooks(tmp_path)
    profile = write_profile(folder, "paris")
    opened = local(PARIS, 2027, 6, 4, 17)
    calendar = profile.support_calendar("Business", opened)
    assert (calendar.region, calendar.tz, calendar.business_day_hours) == ("paris", "Europe/Paris", 9)
    assert calendar.week[5] == ((600, 840),)
    assert date(2027, 7, 14) in calendar.holidays  # Fête nationale
    # A Business P2 (the default matrix's Mid-Market row: 8 business hours) opened Friday 17:00
    # is due Monday 12:00 with the Saturday window (1 + 4 + 3 hours), not Monday 16:00.
    state = SlaState(ticket_id="T", subject="s", tier="Business", priority="P2", opened_at=opened,
                     running=[Interval(start=opened)])
    timeline = SlaTimeline(load_named("sla", profile=profile).content, state, [], calendar)
    assert timeline.deadline("response") == local(PARIS, 2027, 6, 7, 12)
    assert timeline.deadline("resolution") == local(PARIS, 2027, 6, 9, 13)  # 27 h: 1 + 4 + 9 + 9 + 4


def test_business_days_are_the_region_s_business_day_hours():
    region = SupportRegion(key="short", timezone="Europe/Paris", hours={d: ["09:00-13:00"] for d in WEEKDAYS},
                           business_day_hours=4)
    opened = local(PARIS, 2027, 6, 7, 9)  # a Monday
    calendar = region_calendar(region, opened)
    state = SlaState(ticket_id="T", subject="s", tier="Starter", priority="P3", opened_at=opened,
                     running=[Interval(start=opened)])
    timeline = SlaTimeline(load_named("sla").content, state, [], calendar)
    # Starter P3: 2 business days response (8 h: Monday and Tuesday mornings), 10 resolution.
    assert timeline.deadline("response") == local(PARIS, 2027, 6, 8, 13)
    assert timeline.deadline("resolution") == local(PARIS, 2027, 6, 18, 13)
    assert time(9) <= timeline.deadline("response").astimezone(PARIS).time() <= time(13)
