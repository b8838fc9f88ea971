"""Business-time arithmetic for SLA clocks: pure, deterministic, safe inside workflows.

Rules:
- A business day is a local Monday to Friday that is not in `holidays`.
  Holidays are local dates handed in by the caller (the workflow must not
  import the `holidays` package or look anything up itself).
- A business day is open from `open_hour`:00 to `close_hour`:00 local time,
  opening instant included, closing instant excluded. Each day's window is
  computed from its own local date, so both DST switch days come out right.
- `add` counts business time forward from `start`: outside business hours
  counting begins at the next opening; time left at a closing carries over to
  the next opening. A zero duration returns `start` as it is.
- `elapsed` is the business time between two instants and is the inverse of
  `add`: elapsed(s, add(s, d)) == d for every d > 0.
- `AroundTheClock` has the same `add` / `elapsed` interface for 24/7 targets.
- With `week` (an organisation profile's support region, core/working_time.SupportCalendar), the
  open spells per weekday replace Mon-Fri `open_hour`-`close_hour`: several spells a day (shifts),
  partial days (a Saturday morning), days with none. A holiday closes its whole local date.

All datetimes in and out are timezone-aware; results are in UTC. Naive
datetimes and negative durations raise ValueError. Calculations walk the
calendar one local date at a time, up to `MAX_DAYS`, which is plenty for SLA
horizons of hours to weeks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

# About ten years: far beyond any SLA, yet a bad input (say, a calendar whose
# every day is a holiday) fails loudly instead of looping forever.
MAX_DAYS = 3_700

Window = tuple[datetime, datetime]


def _to_utc(moment: datetime) -> datetime:
    """`moment` in UTC. Everything is compared and subtracted in UTC because
    Python does wall-clock arithmetic on two datetimes sharing a tzinfo, which
    is off by an hour across a DST switch."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: business time needs a time zone")
    return moment.astimezone(timezone.utc)


def _require_non_negative(duration: timedelta) -> None:
    if duration < timedelta(0):
        raise ValueError(f"negative duration {duration}")


@dataclass(frozen=True)
class BusinessCalendar:
    tz: str = "America/New_York"
    open_hour: int = 9
    close_hour: int = 18
    holidays: frozenset[date] = frozenset()
    # Per weekday (Monday first) the open spells, (opens, closes) in minutes after local midnight.
    week: tuple[tuple[tuple[int, int], ...], ...] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.open_hour < self.close_hour <= 24:
            raise ValueError(f"business hours {self.open_hour}-{self.close_hour} are not within one day")
        # Workflow inputs arrive as lists; a frozenset keeps the calendar hashable.
        object.__setattr__(self, "holidays", frozenset(self.holidays))
        if self.week is not None:
            week = tuple(tuple((int(a), int(b)) for a, b in spells) for spells in self.week)
            if len(week) != 7 or not any(week):
                raise ValueError("week: seven weekdays, at least one open spell")
            object.__setattr__(self, "week", week)

    # -- days ------------------------------------------------------------------
    def is_business_day(self, day: date) -> bool:
        if day in self.holidays:
            return False
        return bool(self.week[day.weekday()]) if self.week is not None else day.weekday() < 5

    def window(self, day: date) -> Window | None:
        """The UTC instants local `day` first opens and last closes, or None if it is not a business day."""
        windows = self.windows(day)
        return (windows[0][0], windows[-1][1]) if windows else None

    def windows(self, day: date) -> list[Window]:
        """The UTC open and close instants of each open spell of local `day`, in order."""
        if not self.is_business_day(day):
            return []
        if self.week is None:
            return [(self._at(day, self.open_hour), self._at(day, self.close_hour))]
        return [(self._at_minute(day, a), self._at_minute(day, b)) for a, b in self.week[day.weekday()]]

    def days(self, n: float) -> timedelta:
        """`n` full business days of open time."""
        return timedelta(hours=n * (self.close_hour - self.open_hour))

    # -- instants --------------------------------------------------------------
    def is_open(self, moment: datetime) -> bool:
        moment = _to_utc(moment)
        return any(opens <= moment < closes for opens, closes in self.windows(self._local_date(moment)))

    def next_open(self, moment: datetime) -> datetime:
        """`moment` itself if business hours are on, else the next opening instant."""
        moment = _to_utc(moment)
        for opens, closes in self._windows_from(self._local_date(moment)):
            if moment < closes:
                return max(moment, opens)
        raise AssertionError("unreachable: _windows_from raises when it runs out")

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant when `duration` of business time has passed since `start`."""
        start = _to_utc(start)
        _require_non_negative(duration)
        if not duration:
            return start
        remaining = duration
        for opens, closes in self._windows_from(self._local_date(start)):
            if closes <= start:
                continue
            begin = max(start, opens)
            # `<=` so that time running out exactly at closing ends there, not at the next opening.
            if remaining <= closes - begin:
                return begin + remaining
            remaining -= closes - begin
        raise AssertionError("unreachable: _windows_from raises when it runs out")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time between two instants; zero if `end` is not after `start`."""
        start, end = _to_utc(start), _to_utc(end)
        if end <= start:
            return timedelta(0)
        first, last = self._local_date(start), self._local_date(end)
        if (last - first).days >= MAX_DAYS:
            raise ValueError(f"{start.isoformat()} to {end.isoformat()} spans more than {MAX_DAYS} days")
        total = timedelta(0)
        for offset in range((last - first).days + 1):
            for opens, closes in self.windows(first + timedelta(days=offset)):
                total += max(min(closes, end) - max(opens, start), timedelta(0))
        return total

    # -- helpers ---------------------------------------------------------------
    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(ZoneInfo(self.tz)).date()

    def _at(self, day: date, hour: int) -> datetime:
        # Hour 24 is the next midnight, which `time()` cannot express.
        local_day = day + timedelta(days=hour // 24)
        return datetime.combine(local_day, time(hour % 24), tzinfo=ZoneInfo(self.tz)).astimezone(timezone.utc)

    def _at_minute(self, day: date, minute: int) -> datetime:
        local_day = day + timedelta(days=minute // 1440)
        minute %= 1440
        at = time(minute // 60, minute % 60)
        return datetime.combine(local_day, at, tzinfo=ZoneInfo(self.tz)).astimezone(timezone.utc)

    def _windows_from(self, first: date) -> Iterator[Window]:
        for offset in range(MAX_DAYS):
            yield from self.windows(first + timedelta(days=offset))
        raise ValueError(f"no business hours within {MAX_DAYS} days of {first.isoformat()}")


@dataclass(frozen=True)
class AroundTheClock:
    """A 24/7 clock with the same interface as `BusinessCalendar`'s add/elapsed."""

    def add(self, start: datetime, duration: timedelta) -> datetime:
        start = _to_utc(start)
        _require_non_negative(duration)
        return start + duration

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        start, end = _to_utc(start), _to_utc(end)
        return max(end - start, timedelta(0))
