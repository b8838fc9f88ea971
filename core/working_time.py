"""Working days, send windows and meeting slots: pure, deterministic, safe inside workflows.

Rules:
- A `WorkCalendar` is one party's calendar: an IANA time zone, the weekdays of
  its weekend (0 = Monday ... 6 = Sunday; Friday-Saturday in some countries)
  and its public holidays as local dates. A working day is a local date that is
  neither. The holiday dates are handed in: they are computed outside workflow
  code from the `holidays` package (`activities/calendars.py`), for the play's
  horizon, so a workflow never looks anything up itself.
- `WorkCalendar.every_day(tz)` has no weekend and no holidays: day arithmetic
  on it is plain calendar-day arithmetic (plays launched before working days
  existed replay on it unchanged).
- A `SendWindow` is a local time range on some days: customer e-mail goes out
  only inside it. `opens` and `closes` are "HH:MM" (closes may be "24:00");
  when `closes` is not after `opens` the window runs past local midnight into
  the next day, and belongs to the day it opens. `days` None means the
  calendar's working days; a holiday closes the window that opens on it, even
  on a day named in `days`, unless `on_holidays` says otherwise. Each window is computed from its own local date,
  so both DST switch days come out right (09:00 stays 09:00 local).
- All instants in and out are timezone-aware; results are in UTC. Walks are
  bounded by `MAX_DAYS`: a calendar whose every day is a holiday fails loudly
  instead of looping for ever.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

MAX_DAYS = 3_700
WEEKDAY_INDEX = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4, "saturday": 5, "sunday": 6,
}
WEEKDAY_NAMES = {v: k for k, v in WEEKDAY_INDEX.items()}


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: working time needs a time zone")
    return moment.astimezone(timezone.utc)


def _minutes(value: str) -> int:
    """'09:30' -> 570; '24:00' -> 1440. Raises ValueError for anything else."""
    hours, sep, minutes = value.partition(":")
    if not sep or not (hours.isdigit() and minutes.isdigit()) or len(minutes) != 2 or len(hours) != 2:
        raise ValueError(f"{value!r} is not a time of day like 09:00")
    total = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or total > 24 * 60:
        raise ValueError(f"{value!r} is not a time of day between 00:00 and 24:00")
    return total


class WorkCalendar(BaseModel):
    """One party's working days: `tz` (IANA), `weekend` weekdays, `holidays` (local dates)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tz: str = "America/New_York"
    weekend: tuple[int, ...] = (5, 6)
    holidays: tuple[date, ...] = ()
    # Where the holidays come from, for people reading a status: "US-NY", "FR", "none".
    source: str = ""
    _holidays: frozenset[date] = PrivateAttr(default=frozenset())
    _zone: ZoneInfo = PrivateAttr()

    @field_validator("weekend")
    @classmethod
    def _weekdays(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 0 <= d <= 6 for d in v):
            raise ValueError("weekend days are 0 (Monday) to 6 (Sunday)")
        if len(set(v)) == 7:
            raise ValueError("a weekend cannot be the whole week")
        return tuple(sorted(set(v)))

    @field_validator("holidays")
    @classmethod
    def _sorted(cls, v: tuple[date, ...]) -> tuple[date, ...]:
        return tuple(sorted(set(v)))  # a stable payload, whatever order they came in

    def model_post_init(self, _context) -> None:
        self._holidays = frozenset(self.holidays)
        self._zone = ZoneInfo(self.tz)

    @classmethod
    def every_day(cls, tz: str) -> "WorkCalendar":
        """Every day is a working day: calendar-day arithmetic."""
        return cls(tz=tz, weekend=(), holidays=(), source="every day")

    # -- dates -------------------------------------------------------------------
    def is_working_day(self, day: date) -> bool:
        return day.weekday() not in self.weekend and day not in self._holidays

    def is_holiday(self, day: date) -> bool:
        return day in self._holidays

    def roll_forward(self, day: date) -> date:
        """`day` if it is a working day, else the next one."""
        for offset in range(MAX_DAYS):
            candidate = day + timedelta(days=offset)
            if self.is_working_day(candidate):
                return candidate
        raise ValueError(f"no working day within {MAX_DAYS} days of {day.isoformat()}")

    def roll_back(self, day: date) -> date:
        """`day` if it is a working day, else the last one before it."""
        for offset in range(MAX_DAYS):
            candidate = day - timedelta(days=offset)
            if self.is_working_day(candidate):
                return candidate
        raise ValueError(f"no working day within {MAX_DAYS} days before {day.isoformat()}")

    def add_working_days(self, day: date, n: int) -> date:
        """`n` working days after `day` (before it when negative). `day` itself is first
        rolled to a working day (forward, or back for a negative `n`), so 0 rolls forward."""
        step = 1 if n >= 0 else -1
        current = self.roll_forward(day) if n >= 0 else self.roll_back(day)
        for _ in range(abs(n)):
            current = current + timedelta(days=step)
            current = self.roll_forward(current) if step > 0 else self.roll_back(current)
        return current

    def working_days_after(self, first: date, last: date) -> int:
        """Working days in (first, last]: how many working days `last` is after `first`
        (0 when it is not after). Calendar days on an every-day calendar."""
        if last <= first:
            return 0
        if (last - first).days > MAX_DAYS:
            raise ValueError(f"{first.isoformat()} to {last.isoformat()} spans more than {MAX_DAYS} days")
        return sum(1 for k in range(1, (last - first).days + 1) if self.is_working_day(first + timedelta(days=k)))

    # -- instants ----------------------------------------------------------------
    def local_date(self, moment: datetime) -> date:
        return _utc(moment).astimezone(self._zone).date()

    def at(self, day: date, minutes: int) -> datetime:
        """The UTC instant of `minutes` after local midnight of `day` (1440 = the next midnight)."""
        local_day = day + timedelta(days=minutes // 1440)
        rest = minutes % 1440
        return datetime.combine(local_day, time(rest // 60, rest % 60), tzinfo=self._zone).astimezone(timezone.utc)

    def at_hour(self, day: date, hour: int) -> datetime:
        return self.at(day, hour * 60)

    def roll_instant(self, moment: datetime, hour: int) -> datetime:
        """`moment` if its local date is a working day, else `hour`:00 on the next working day."""
        day = self.local_date(moment)
        if self.is_working_day(day):
            return _utc(moment)
        return self.at_hour(self.roll_forward(day), hour)


class SendWindow(BaseModel):
    """When customer e-mail may go out, in the recipient's local time (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days: tuple[int, ...] | None = Field(None, description="weekdays 0-6; None: the calendar's working days")
    opens: str = "09:00"
    closes: str = "17:00"
    on_holidays: bool = Field(False, description="open on public holidays too (never for customer mail by default)")

    @field_validator("opens", "closes")
    @classmethod
    def _time_of_day(cls, v: str) -> str:
        _minutes(v)
        return v

    @field_validator("days")
    @classmethod
    def _weekdays(cls, v):
        if v is not None:
            if not v or any(not 0 <= d <= 6 for d in v):
                raise ValueError("days are weekdays 0 (Monday) to 6 (Sunday), at least one")
            return tuple(sorted(set(v)))
        return v

    @model_validator(mode="after")
    def _not_empty(self) -> "SendWindow":
        if _minutes(self.opens) == _minutes(self.closes) and _minutes(self.opens) not in (0, 1440):
            raise ValueError(f"the window {self.opens}-{self.closes} is empty")
        if _minutes(self.opens) == 1440:
            raise ValueError("a window cannot open at 24:00")
        return self

    @property
    def open_minutes(self) -> int:
        return _minutes(self.opens)

    @property
    def close_minutes(self) -> int:
        """Minutes after the opening day's midnight: past 1440 for an overnight window."""
        opens, closes = _minutes(self.opens), _minutes(self.closes)
        return closes if closes > opens else closes + 1440

    def opens_on(self, day: date, cal: WorkCalendar) -> bool:
        if cal.is_holiday(day) and not self.on_holidays:
            return False
        return day.weekday() in self.days if self.days is not None else cal.is_working_day(day)

    def window(self, day: date, cal: WorkCalendar) -> tuple[datetime, datetime] | None:
        """The UTC open and close instants of the window opening on local `day`, or None."""
        if not self.opens_on(day, cal):
            return None
        return cal.at(day, self.open_minutes), cal.at(day, self.close_minutes)

    def next_slot(self, moment: datetime, cal: WorkCalendar) -> datetime:
        """`moment` itself if the window is open then, else the next opening."""
        moment = _utc(moment)
        first = cal.local_date(moment) - timedelta(days=1)  # an overnight window opened yesterday
        for offset in range(MAX_DAYS):
            w = self.window(first + timedelta(days=offset), cal)
            if w is not None and moment < w[1]:
                return max(moment, w[0])
        raise ValueError(f"the send window {self.describe()} never opens within {MAX_DAYS} days")

    def closes_at(self, moment: datetime, cal: WorkCalendar) -> datetime | None:
        """The end of the window open at `moment`, or None when it is closed then."""
        moment = _utc(moment)
        day = cal.local_date(moment)
        for candidate in (day - timedelta(days=1), day):
            w = self.window(candidate, cal)
            if w is not None and w[0] <= moment < w[1]:
                return w[1]
        return None

    def describe(self) -> str:
        days = "working days" if self.days is None else ", ".join(WEEKDAY_NAMES[d][:3].title() for d in self.days)
        return f"{days} {self.opens}-{self.closes}"


ALWAYS = SendWindow(days=(0, 1, 2, 3, 4, 5, 6), opens="00:00", closes="24:00", on_holidays=True)


def meeting_slot(after: datetime, lead_working_days: int, duration_minutes: int, earliest: str,
                 account: WorkCalendar, hours: SendWindow, staff: WorkCalendar,
                 staff_hours: SendWindow) -> datetime:
    """A meeting's start (UTC): on the account's `lead_working_days`-th working day after the
    local date of `after` that is also a working day for our staff, inside the account's working
    `hours`, at or after `earliest` local time. Of the half-hour starts that fit, the first that
    also falls inside our staff's hours wins; with no overlap (Tokyo and New York), the first that
    fits the account's hours: the customer's working day comes first."""
    day = account.add_working_days(account.local_date(after), max(lead_working_days, 0))
    for _ in range(MAX_DAYS):
        if staff.is_working_day(day) and account.is_working_day(day):
            break
        day = account.add_working_days(day, 1)
    first = max(hours.open_minutes, _minutes(earliest))
    last = hours.close_minutes - duration_minutes
    if last < first:
        first = last = max(hours.open_minutes, hours.close_minutes - duration_minutes)
    starts = [account.at(day, m) for m in range(first, last + 1, 30)]
    for start in starts:
        end = start + timedelta(minutes=duration_minutes)
        close = staff_hours.closes_at(start, staff)
        if staff.is_working_day(staff.local_date(start)) and close is not None and end <= close:
            return start
    return starts[0]


class SupportCalendar(BaseModel):
    """The business hours an SLA clock counts (issue 19): the support region of the ticket's tier in
    its organisation profile, computed at launch and handed to the play (workflows never read
    profiles or the `holidays` package). `week`: per weekday, Monday first, the open spells as
    (opens, closes) minutes after local midnight (closes up to 1440); `holidays`: local dates the
    region is closed; `business_day_hours`: open hours in one business day of an SLA target."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    region: str
    tz: str
    week: tuple[tuple[tuple[int, int], ...], ...] = Field(min_length=7, max_length=7)
    holidays: tuple[date, ...] = ()
    business_day_hours: float = Field(gt=0, le=24)
    source: str = ""

    @field_validator("week")
    @classmethod
    def _spells(cls, week):
        for spells in week:
            last = -1
            for opens, closes in spells:
                if not 0 <= opens < closes <= 24 * 60 or opens < last:
                    raise ValueError(f"week: spells must be rising (opens, closes) minutes within a day: {spells}")
                last = closes
        return week
