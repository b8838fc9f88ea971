"""iCalendar invitations (RFC 5545, sent as iMIP per RFC 6047) for e-mails that schedule a meeting.

The slot is chosen by the play (`core.working_time.meeting_slot`: a working-hours slot in the
account's time zone); this module only writes it down: the event in the account's zone with
its VTIMEZONE, our CSM as organizer, the customer recipients as attendees asked to reply, and a
UID derived from the e-mail's idempotency key, so a resent invitation updates the same event.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from zoneinfo import ZoneInfo

import icalendar

from core.models import Meeting

PRODID = "-//TAI Autonomic Systems//Customer success playbooks//EN"


def meeting_uid(idem_key: str, domain: str) -> str:
    return f"{hashlib.sha256(idem_key.encode()).hexdigest()[:32]}@{domain}"


def invitation(meeting: Meeting, uid: str, organizer: tuple[str, str], attendees: list[tuple[str, str]],
               description: str, stamp: datetime) -> str:
    """The VCALENDAR text: METHOD:REQUEST, one VEVENT from `meeting.start` to `meeting.end` (UTC
    instants, written in `meeting.tz`). `organizer` and `attendees` are (name, address)."""
    zone = ZoneInfo(meeting.tz)
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("method", "REQUEST")
    cal.add("calscale", "GREGORIAN")
    event = icalendar.Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp)
    event.add("dtstart", meeting.start.astimezone(zone))
    event.add("dtend", meeting.end.astimezone(zone))
    event.add("summary", meeting.title)
    if description:
        event.add("description", description)
    if meeting.location:
        event.add("location", meeting.location)
    event.add("sequence", 0)
    event.add("status", "CONFIRMED")
    event.add("transp", "OPAQUE")
    org = icalendar.vCalAddress(f"mailto:{organizer[1]}")
    org.params["cn"] = icalendar.vText(organizer[0])
    event.add("organizer", org)
    for name, address in attendees:
        who = icalendar.vCalAddress(f"mailto:{address}")
        who.params["cn"] = icalendar.vText(name)
        who.params["role"] = icalendar.vText("REQ-PARTICIPANT")
        who.params["partstat"] = icalendar.vText("NEEDS-ACTION")
        who.params["rsvp"] = icalendar.vText("TRUE")
        event.add("attendee", who, encode=0)
    cal.add_component(event)
    cal.add_missing_timezones()
    return cal.to_ical().decode("utf-8")
