"""The calendars a play's timeline plans on: pure, deterministic, safe inside workflows.

A timeline asks here where a date lands (issue 17):
- customer-facing moments (steps, e-mails, meetings) at an hour of the account's time zone, on
  one of its working days (the next one, or the last one before with `back`);
- internal ones (tasks, escalations, risk marks) at an hour of our team's zone, on our staff's
  next working day;
- plan-day counting: the account's working days (`business_days`), or every calendar day.
A play from before working days (`on` False) plans on every day of the playbook's time zone,
which is the old calendar-day plan to the minute; so is a playbook that says `keep`.
"""

from __future__ import annotations

from datetime import date, datetime

from core.models import PlayCalendars
from core.working_time import WorkCalendar


class PlanCalendars:
    def __init__(self, playbook_tz: str, calendars: PlayCalendars | None, on: bool, business_days: bool = False,
                 roll: bool = True):
        every_day = WorkCalendar.every_day(playbook_tz)
        on = on and calendars is not None
        self.account = calendars.account if on else every_day
        self.staff = calendars.staff if on else every_day
        # Plan days count the account's working days, or every day of its calendar.
        self.days = self.account if on and business_days else WorkCalendar.every_day(self.account.tz)
        self.roll = on and roll

    def customer_at(self, day: date, hour: int, back: bool = False) -> datetime:
        """`hour`:00 account time on `day`, or on the account's next working day (the last one before, `back`)."""
        if self.roll:
            day = self.account.roll_back(day) if back else self.account.roll_forward(day)
        return self.account.at_hour(day, hour)

    def staff_at(self, day: date, hour: int) -> datetime:
        """`hour`:00 in our team's zone on `day`, or on our staff's next working day."""
        return self.staff.at_hour(self.staff.roll_forward(day) if self.roll else day, hour)
