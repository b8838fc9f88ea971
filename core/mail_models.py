"""Models of customer e-mail and working days (issue 17) that cross a boundary; re-exported by
core.models, where the e-mail requests and results that use them live."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WrapValidator

from core.working_time import WorkCalendar

_SHARED_CALENDARS: dict[tuple, WorkCalendar] = {}


def _shared_calendar(value, handler) -> WorkCalendar:
    """Cached plays in one place share one calendar object (issue 18: worker memory per cached play):
    a calendar read from a payload (JSON values) is frozen, so equal data, one object."""
    if not isinstance(value, dict):
        return handler(value)
    try:
        key = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in value.items()))
        shared = _SHARED_CALENDARS.get(key)
    except TypeError:  # not JSON values
        return handler(value)
    if shared is None:
        shared = handler(value)
        if len(_SHARED_CALENDARS) >= 1024:
            _SHARED_CALENDARS.clear()
        _SHARED_CALENDARS[key] = shared
    return shared


SharedCalendar = Annotated[WorkCalendar, WrapValidator(_shared_calendar)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeetingSpec(Model):
    """A meeting an e-mail proposes (kickoff, QBR, check-in): it carries an iCalendar invitation
    at a working-hours slot in the account's time zone, `lead_working_days` after the e-mail."""

    title: str | None = Field(None, min_length=1, max_length=200, description="the event's title; default: the subject")
    duration_minutes: int = Field(30, ge=15, le=480)
    lead_working_days: int = Field(3, ge=1, le=30)
    earliest: str = Field("10:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$", description="local time, HH:MM")
    location: str = Field("", max_length=500)


class Meeting(Model):
    """A meeting slot the workflow chose (UTC instants) and what the invitation says."""

    title: str
    start: datetime
    end: datetime
    tz: str
    location: str = ""


SendOutcome = Literal["sent", "suppressed", "failed", "deferred", "stopped"]
RecipientStatus = Literal["pending", "deferred", "sent", "suppressed", "refused", "bounced", "stopped"]


class RecipientOutcome(Model):
    name: str
    address: str
    kind: Literal["to", "cc"]
    customer: bool
    status: RecipientStatus
    reason: str = ""


class CalendarPlace(Model):
    """Where a calendar comes from: a time zone and the country / region of its public holidays."""

    tz: str
    country: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    region: str | None = Field(None, pattern=r"^[A-Z0-9]{1,3}$")


class CalendarsRequest(Model):
    account: CalendarPlace
    staff: CalendarPlace
    start: date
    years: int = Field(3, ge=1, le=10)


class PlayCalendars(Model):
    """The account's and our staff's working days over a play's horizon (computed outside workflows)."""

    account: SharedCalendar
    staff: SharedCalendar
