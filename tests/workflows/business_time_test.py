"""Business-time arithmetic in `workflows/business_time.py`.

Times are New York local (`ny(...)`) unless built with `utc(...)`. The
holiday set comes from `holidays.US(years=[2026, 2027])`, which lists an
"observed" weekday next to a weekend holiday (2027-07-04 is a Sunday and
2027-07-05 is listed as "Independence Day (observed)"), and the years=[2027]
set also holds 2027-12-31, New Year's Day 2028 observed. The Friday after
Thanksgiving is not a federal holiday.

Covers `add` within a day, over closings, weekends, holidays and both 2027
DST switches, starts outside business hours and zero durations; `elapsed`
and its round trip with `add`; `is_open`, `next_open`, `window`, `days`;
the 24/7 `AroundTheClock`; and the ValueErrors for naive datetimes and
negative durations.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import holidays
import pytest

from workflows.business_time import AroundTheClock, BusinessCalendar

NY = ZoneInfo("America/New_York")
US_HOLIDAYS = frozenset(holidays.US(years=[2026, 2027]))
CAL = BusinessCalendar(holidays=US_HOLIDAYS)
H = timedelta(hours=1)
M = timedelta(minutes=1)


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def case(id_: str, *values):
    return pytest.param(*values, id=id_)


# -- the holiday facts the other tests rely on ----------------------------------
@pytest.mark.parametrize(
    ("day", "is_holiday"),
    [
        case("new-year-2026-thu", date(2026, 1, 1), True),
        case("july-4-2026-sat", date(2026, 7, 4), True),
        case("july-4-2026-observed-fri", date(2026, 7, 3), True),
        case("thanksgiving-2026-thu", date(2026, 11, 26), True),
        case("day-after-thanksgiving-2026-fri-not-federal", date(2026, 11, 27), False),
        case("christmas-eve-2026-thu-not-federal", date(2026, 12, 24), False),
        case("christmas-2026-fri", date(2026, 12, 25), True),
        case("new-year-2027-fri", date(2027, 1, 1), True),
        case("mlk-2027", date(2027, 1, 18), True),
        case("july-4-2027-sun", date(2027, 7, 4), True),
        case("july-4-2027-observed-mon", date(2027, 7, 5), True),
        case("juneteenth-2027-observed-fri", date(2027, 6, 18), True),
        case("christmas-2027-observed-fri", date(2027, 12, 24), True),
        case("new-year-2028-observed-fri-31-dec", date(2027, 12, 31), True),
        case("ordinary-monday", date(2027, 1, 11), False),
    ],
)
def test_us_holiday_set(day, is_holiday):
    assert (day in US_HOLIDAYS) is is_holiday


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        case("tuesday", date(2027, 1, 5), True),
        case("friday", date(2027, 1, 8), True),
        case("saturday", date(2027, 1, 9), False),
        case("sunday", date(2027, 1, 10), False),
        case("thanksgiving", date(2026, 11, 26), False),
        case("day-after-thanksgiving", date(2026, 11, 27), True),
        case("observed-july-5-2027", date(2027, 7, 5), False),
        case("sunday-july-4-2027", date(2027, 7, 4), False),
    ],
)
def test_is_business_day(day, expected):
    assert CAL.is_business_day(day) is expected


# -- window ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("day", "expected"),
    [
        case("winter-tuesday-est", date(2027, 1, 5), (utc(2027, 1, 5, 14), utc(2027, 1, 5, 23))),
        case("friday-before-spring-switch-est", date(2027, 3, 12), (utc(2027, 3, 12, 14), utc(2027, 3, 12, 23))),
        case("monday-after-spring-switch-edt", date(2027, 3, 15), (utc(2027, 3, 15, 13), utc(2027, 3, 15, 22))),
        case("friday-before-fall-switch-edt", date(2027, 11, 5), (utc(2027, 11, 5, 13), utc(2027, 11, 5, 22))),
        case("monday-after-fall-switch-est", date(2027, 11, 8), (utc(2027, 11, 8, 14), utc(2027, 11, 8, 23))),
        case("spring-switch-sunday", date(2027, 3, 14), None),
        case("holiday", date(2026, 12, 25), None),
    ],
)
def test_window(day, expected):
    got = CAL.window(day)
    assert got == expected
    if got is not None:
        assert all(t.tzinfo is timezone.utc for t in got)


def test_window_closing_at_midnight_is_the_next_local_midnight():
    cal = BusinessCalendar(open_hour=0, close_hour=24)
    assert cal.window(date(2027, 1, 5)) == (utc(2027, 1, 5, 5), utc(2027, 1, 6, 5))


# -- add -------------------------------------------------------------------------
# 2027-01-08 is a Friday; the Monday after (01-11) is an ordinary business day.
@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        # within and across days
        case("tue-10:00+4h-same-day", ny(2027, 1, 5, 10), 4 * H, ny(2027, 1, 5, 14)),
        case("tue-16:00+4h-spans-close", ny(2027, 1, 5, 16), 4 * H, ny(2027, 1, 6, 11)),
        case("tue-09:00+9h-ends-at-close", ny(2027, 1, 5, 9), 9 * H, ny(2027, 1, 5, 18)),
        case("tue-09:00+9h1m-next-morning", ny(2027, 1, 5, 9), 9 * H + M, ny(2027, 1, 6, 9, 1)),
        case("mon-09:00+45h-whole-week", ny(2027, 1, 11, 9), 45 * H, ny(2027, 1, 15, 18)),
        case("mon-09:00+46h-next-monday", ny(2027, 1, 11, 9), 46 * H, ny(2027, 1, 19, 10)),  # 01-18 is MLK day
        # weekends: the Friday 17:30 ticket
        case("fri-17:30+30m-at-fri-close", ny(2027, 1, 8, 17, 30), 30 * M, ny(2027, 1, 8, 18)),
        case("fri-17:30+1h-mon-09:30", ny(2027, 1, 8, 17, 30), H, ny(2027, 1, 11, 9, 30)),
        case("fri-17:30+2h-mon-10:30", ny(2027, 1, 8, 17, 30), 2 * H, ny(2027, 1, 11, 10, 30)),
        case("fri-17:30+8h-mon-16:30", ny(2027, 1, 8, 17, 30), 8 * H, ny(2027, 1, 11, 16, 30)),
        case("fri-17:30+1-business-day-mon-17:30", ny(2027, 1, 8, 17, 30), CAL.days(1), ny(2027, 1, 11, 17, 30)),
        case("sat-12:00+2h-mon-11:00", ny(2027, 1, 9, 12), 2 * H, ny(2027, 1, 11, 11)),
        case("sun-23:59+1m-mon-09:01", ny(2027, 1, 10, 23, 59), M, ny(2027, 1, 11, 9, 1)),
        # holidays
        case("wed-before-thanksgiving-2026", ny(2026, 11, 25, 17), 2 * H, ny(2026, 11, 27, 10)),
        case("christmas-eve-2026-over-christmas-and-weekend", ny(2026, 12, 24, 17), 2 * H, ny(2026, 12, 28, 10)),
        case("new-year-eve-2026-over-new-year-2027", ny(2026, 12, 31, 17), 2 * H, ny(2027, 1, 4, 10)),
        case("fri-before-july-4-2027-skips-observed-monday", ny(2027, 7, 2, 17), 2 * H, ny(2027, 7, 6, 10)),
        case("thu-before-juneteenth-2027-observed-friday", ny(2027, 6, 17, 17), 2 * H, ny(2027, 6, 21, 10)),
        case("thu-before-christmas-2027-observed-friday", ny(2027, 12, 23, 17), 2 * H, ny(2027, 12, 27, 10)),
        # starts outside business hours
        case("before-opening", ny(2027, 1, 5, 7), H, ny(2027, 1, 5, 10)),
        case("after-closing", ny(2027, 1, 5, 20), H, ny(2027, 1, 6, 10)),
        case("exactly-at-closing", ny(2027, 1, 5, 18), H, ny(2027, 1, 6, 10)),
        case("exactly-at-opening", ny(2027, 1, 5, 9), H, ny(2027, 1, 5, 10)),
        case("on-thanksgiving-2026", ny(2026, 11, 26, 10), H, ny(2026, 11, 27, 10)),
        case("on-observed-july-5-2027", ny(2027, 7, 5, 11), 3 * H, ny(2027, 7, 6, 12)),
        # both 2027 DST switches (Sundays): the local answer is the same, the UTC one moves
        case("spring-fri-17:00-est+2h-mon-10:00-edt", ny(2027, 3, 12, 17), 2 * H, utc(2027, 3, 15, 14)),
        case("spring-sat-12:00+2h-mon-11:00-edt", ny(2027, 3, 13, 12), 2 * H, utc(2027, 3, 15, 15)),
        case("fall-fri-17:00-edt+2h-mon-10:00-est", ny(2027, 11, 5, 17), 2 * H, utc(2027, 11, 8, 15)),
        case("fall-sat-12:00+2h-mon-11:00-est", ny(2027, 11, 6, 12), 2 * H, utc(2027, 11, 8, 16)),
        # a start given in UTC is the same instant
        case("utc-start-22:00z-is-tue-17:00-est", utc(2027, 1, 5, 22), 2 * H, ny(2027, 1, 6, 10)),
    ],
)
def test_add(start, duration, expected):
    got = CAL.add(start, duration)
    assert got == expected
    assert got.tzinfo is timezone.utc


def test_add_across_spring_switch_gives_edt_offset():
    got = CAL.add(ny(2027, 3, 12, 17), 2 * H)
    assert got == utc(2027, 3, 15, 14)
    local = got.astimezone(NY)
    assert (local.hour, local.minute) == (10, 0)
    assert local.utcoffset() == timedelta(hours=-4)
    assert ny(2027, 3, 12, 17).utcoffset() == timedelta(hours=-5)


def test_add_across_fall_switch_gives_est_offset():
    got = CAL.add(ny(2027, 11, 5, 17), 2 * H)
    assert got == utc(2027, 11, 8, 15)
    local = got.astimezone(NY)
    assert (local.hour, local.minute) == (10, 0)
    assert local.utcoffset() == timedelta(hours=-5)
    assert ny(2027, 11, 5, 17).utcoffset() == timedelta(hours=-4)


@pytest.mark.parametrize(
    "start",
    [
        case("saturday-noon", ny(2027, 1, 9, 12)),
        case("before-opening", ny(2027, 1, 5, 7)),
        case("at-closing", ny(2027, 1, 5, 18)),
        case("during-hours", ny(2027, 1, 5, 11, 15)),
        case("holiday", ny(2026, 12, 25, 10)),
    ],
)
def test_add_zero_returns_start_unchanged(start):
    got = CAL.add(start, timedelta(0))
    assert got == start
    assert got.tzinfo is timezone.utc


def test_add_with_a_midnight_close_runs_through_the_night():
    cal = BusinessCalendar(open_hour=0, close_hour=24)
    assert cal.add(ny(2027, 1, 8, 23), 2 * H) == ny(2027, 1, 11, 1)  # Fri 23:00 -> Mon 01:00


def test_add_takes_holidays_as_any_iterable():
    cal = BusinessCalendar(holidays=[date(2027, 1, 11)])  # type: ignore[arg-type]
    assert cal.holidays == frozenset({date(2027, 1, 11)})
    assert cal.add(ny(2027, 1, 8, 17), 2 * H) == ny(2027, 1, 12, 10)


def test_add_raises_when_no_business_day_exists():
    every_day = frozenset(date(2027, 1, 1) + timedelta(days=i) for i in range(4000))
    with pytest.raises(ValueError, match="no business hours"):
        BusinessCalendar(holidays=every_day).add(ny(2027, 1, 5, 10), H)


# -- elapsed ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        case("same-day", ny(2027, 1, 5, 10), ny(2027, 1, 5, 14, 30), 4 * H + 30 * M),
        case("same-day-clipped-both-ends", ny(2027, 1, 5, 8), ny(2027, 1, 5, 20), 9 * H),
        case("overnight", ny(2027, 1, 5, 16), ny(2027, 1, 6, 11), 4 * H),
        case("across-weekend", ny(2027, 1, 8, 17), ny(2027, 1, 11, 10), 2 * H),
        case("weekend-only", ny(2027, 1, 9, 8), ny(2027, 1, 10, 20), timedelta(0)),
        case("whole-week", ny(2027, 1, 11, 9), ny(2027, 1, 18, 9), 45 * H),
        case("across-thanksgiving-2026", ny(2026, 11, 25, 17), ny(2026, 11, 27, 10), 2 * H),
        case("christmas-week-2026", ny(2026, 12, 21, 9), ny(2026, 12, 28, 9), 36 * H),
        case("across-observed-july-5-2027", ny(2027, 7, 2, 17), ny(2027, 7, 6, 10), 2 * H),
        case("spring-switch-weekend", ny(2027, 3, 12, 12), ny(2027, 3, 15, 12), 9 * H),
        case("fall-switch-weekend", ny(2027, 11, 5, 12), ny(2027, 11, 8, 12), 9 * H),
        case("end-equals-start", ny(2027, 1, 5, 10), ny(2027, 1, 5, 10), timedelta(0)),
        case("end-before-start", ny(2027, 1, 5, 14), ny(2027, 1, 5, 10), timedelta(0)),
        case("mixed-zones", utc(2027, 1, 5, 15), ny(2027, 1, 5, 12), 2 * H),
    ],
)
def test_elapsed(start, end, expected):
    assert CAL.elapsed(start, end) == expected


def test_elapsed_refuses_spans_beyond_the_limit():
    with pytest.raises(ValueError, match="spans more than"):
        CAL.elapsed(ny(2027, 1, 5, 10), ny(2040, 1, 5, 10))


# A few hundred starts around weekends, holidays and both DST switches, at and
# around the opening and closing, against durations from a second to weeks.
ROUND_TRIP_DAYS = [
    date(2026, 11, 23) + timedelta(days=i) for i in range(7)  # Thanksgiving week
] + [
    date(2027, 3, 11) + timedelta(days=i) for i in range(5)  # spring switch
] + [
    date(2027, 7, 1) + timedelta(days=i) for i in range(6)  # July 4 observed Monday
] + [
    date(2027, 11, 4) + timedelta(days=i) for i in range(5)  # fall switch
]
ROUND_TRIP_TIMES = [(0, 0), (8, 59), (9, 0), (12, 17), (17, 59), (18, 0), (23, 30)]
ROUND_TRIP_STARTS = [ny(d.year, d.month, d.day, h, m) for d in ROUND_TRIP_DAYS for h, m in ROUND_TRIP_TIMES]


@pytest.mark.parametrize(
    "duration",
    [
        case("1s", timedelta(seconds=1)),
        case("1m", M),
        case("30m", 30 * M),
        case("1h", H),
        case("8h59m", 8 * H + 59 * M),
        case("9h", 9 * H),
        case("9h1m", 9 * H + M),
        case("2-business-days", CAL.days(2)),
        case("5d3h-wall", timedelta(days=5, hours=3)),
        case("2-weeks-wall", timedelta(weeks=2)),
    ],
)
def test_elapsed_inverts_add(duration):
    assert len(ROUND_TRIP_STARTS) == 161
    for start in ROUND_TRIP_STARTS:
        end = CAL.add(start, duration)
        assert end > start, start
        assert CAL.elapsed(start, end) == duration, start
        # The earliest such instant: one second earlier the duration is not yet used up.
        assert CAL.elapsed(start, end - timedelta(seconds=1)) < duration, start
        assert CAL.is_open(end) or end == CAL.window(end.astimezone(NY).date())[1], start


# -- is_open / next_open -----------------------------------------------------------
@pytest.mark.parametrize(
    ("moment", "is_open", "next_open"),
    [
        case("tue-during-hours", ny(2027, 1, 5, 12), True, ny(2027, 1, 5, 12)),
        case("tue-at-opening", ny(2027, 1, 5, 9), True, ny(2027, 1, 5, 9)),
        case("tue-before-opening", ny(2027, 1, 5, 8, 59), False, ny(2027, 1, 5, 9)),
        case("tue-at-closing", ny(2027, 1, 5, 18), False, ny(2027, 1, 6, 9)),
        case("fri-evening", ny(2027, 1, 8, 20), False, ny(2027, 1, 11, 9)),
        case("saturday", ny(2027, 1, 9, 12), False, ny(2027, 1, 11, 9)),
        case("thanksgiving-2026", ny(2026, 11, 26, 12), False, ny(2026, 11, 27, 9)),
        case("sun-july-4-2027-to-tue", ny(2027, 7, 4, 12), False, ny(2027, 7, 6, 9)),
        case("spring-switch-sunday-to-edt-monday", ny(2027, 3, 14, 12), False, utc(2027, 3, 15, 13)),
        case("fall-switch-sunday-to-est-monday", ny(2027, 11, 7, 12), False, utc(2027, 11, 8, 14)),
    ],
)
def test_is_open_and_next_open(moment, is_open, next_open):
    assert CAL.is_open(moment) is is_open
    got = CAL.next_open(moment)
    assert got == next_open
    assert got.tzinfo is timezone.utc


# -- days ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cal", "n", "expected"),
    [
        case("default-1", CAL, 1, 9 * H),
        case("default-half", CAL, 0.5, 4 * H + 30 * M),
        case("default-3", CAL, 3, 27 * H),
        case("08-16-2", BusinessCalendar(open_hour=8, close_hour=16), 2, 16 * H),
    ],
)
def test_days(cal, n, expected):
    assert cal.days(n) == expected


# -- around the clock ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("start", "duration", "expected_local"),
    [
        case("spring-sat-12:00-est+24h-sun-13:00-edt", ny(2027, 3, 13, 12), 24 * H, ny(2027, 3, 14, 13)),
        case("fall-sat-12:00-edt+24h-sun-11:00-est", ny(2027, 11, 6, 12), 24 * H, ny(2027, 11, 7, 11)),
        case("weekend-counts", ny(2027, 1, 8, 17, 30), H, ny(2027, 1, 8, 18, 30)),
        case("zero", ny(2027, 1, 9, 12), timedelta(0), ny(2027, 1, 9, 12)),
    ],
)
def test_around_the_clock_add(start, duration, expected_local):
    got = AroundTheClock().add(start, duration)
    assert got == expected_local
    assert got - start == duration  # exactly the wall duration in UTC
    assert got.tzinfo is timezone.utc
    assert got.astimezone(NY).replace(tzinfo=None) == expected_local.replace(tzinfo=None)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        case("spring-switch-weekend-71h", ny(2027, 3, 12, 12), ny(2027, 3, 15, 12), 71 * H),
        case("fall-switch-weekend-73h", ny(2027, 11, 5, 12), ny(2027, 11, 8, 12), 73 * H),
        case("end-before-start", ny(2027, 1, 5, 14), ny(2027, 1, 5, 10), timedelta(0)),
        # 01:30 happens twice on 2027-11-07; fold=1 is the second (EST) one
        case("repeated-hour-fall-switch", ny(2027, 11, 7, 1, 30), datetime(2027, 11, 7, 1, 30, fold=1, tzinfo=NY), H),
    ],
)
def test_around_the_clock_elapsed(start, end, expected):
    assert AroundTheClock().elapsed(start, end) == expected


# -- errors ----------------------------------------------------------------------
NAIVE = datetime(2027, 1, 5, 10)
AWARE = ny(2027, 1, 5, 10)


@pytest.mark.parametrize(
    "call",
    [
        case("add", lambda: CAL.add(NAIVE, H)),
        case("add-zero", lambda: CAL.add(NAIVE, timedelta(0))),
        case("elapsed-start", lambda: CAL.elapsed(NAIVE, AWARE)),
        case("elapsed-end", lambda: CAL.elapsed(AWARE, NAIVE)),
        case("is-open", lambda: CAL.is_open(NAIVE)),
        case("next-open", lambda: CAL.next_open(NAIVE)),
        case("around-add", lambda: AroundTheClock().add(NAIVE, H)),
        case("around-elapsed", lambda: AroundTheClock().elapsed(AWARE, NAIVE)),
    ],
)
def test_naive_datetime_raises(call):
    with pytest.raises(ValueError, match="naive"):
        call()


@pytest.mark.parametrize(
    "call",
    [
        case("business", lambda: CAL.add(AWARE, -M)),
        case("around", lambda: AroundTheClock().add(AWARE, -M)),
    ],
)
def test_negative_duration_raises(call):
    with pytest.raises(ValueError, match="negative"):
        call()


@pytest.mark.parametrize(
    ("open_hour", "close_hour"),
    [case("close-before-open", 18, 9), case("empty", 9, 9), case("past-midnight", 9, 25), case("negative", -1, 9)],
)
def test_bad_business_hours_raise(open_hour, close_hour):
    with pytest.raises(ValueError, match="business hours"):
        BusinessCalendar(open_hour=open_hour, close_hour=close_hour)
