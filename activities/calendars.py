"""The working-day calendars a play runs on: the account's and our staff's (issue 17).

Workflows never import the `holidays` package: a play asks this activity once per run (at its
start, and again when it continues as new) for both calendars over its horizon, and does its
day arithmetic on the dates it gets back (core/working_time.py).
"""

from __future__ import annotations

from temporalio import activity

from core.holiday_calendars import work_calendar
from core.models import CalendarsRequest, PlayCalendars


class CalendarActivities:
    @activity.defn(name="load_calendars")
    async def load_calendars(self, req: CalendarsRequest) -> PlayCalendars:
        """The account's calendar (its time zone, country and region) and our staff's (the playbook's
        team time zone and country), from the year of `start` for `years` years."""
        return PlayCalendars(account=work_calendar(req.account, req.start, req.years),
                             staff=work_calendar(req.staff, req.start, req.years))
