"""Ticket communications as data: `CommsPlan` over `SlaTimeline` with the shipped sla.yaml, every
expectation computed by hand in New York time (Mon-Fri 09:00-18:00, one business day = 9 business
hours, US holidays).

Dates: Monday 2027-01-11; Monday 2027-01-18 is Martin Luther King Jr. Day (closed); DST starts on
Sunday 2027-03-14 at 02:00 (EST -05:00 -> EDT -04:00).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from playbooks.loader import load_named
from starter.steering import public_holidays
from workflows.sla_comms import CommsPlan, hours_text
from workflows.sla_timeline import Interval, SlaState, SlaTimeline

CONTENT = load_named("sla").content
ET = ZoneInfo("America/New_York")


def local(y: int, m: int, d: int, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(date(y, m, d), time(hour, minute), tzinfo=ET)


def ticket(priority: str, opened: datetime, tier: str = "Enterprise") -> tuple[SlaTimeline, CommsPlan]:
    state = SlaState(ticket_id="T", subject="s", tier=tier, priority=priority, opened_at=opened,
                     running=[Interval(start=opened)], comms=True)
    t = SlaTimeline(CONTENT, state, public_holidays("US", opened.date()))
    plan = CommsPlan(t)
    t.more_actions = plan.pending
    t.start()
    return t, plan


def steps(plan: CommsPlan) -> dict[str, datetime]:
    return {a.step: a.at for a in plan.pending() if not plan.t.is_done(a.step)}


def updates(plan: CommsPlan, count: int) -> list[datetime]:
    since, every = plan.spell(), plan.cadence()
    return [plan.update_at(since, every, n).astimezone(ET) for n in range(1, count + 1)]


@pytest.mark.parametrize(("case", "priority", "opened", "expected"), [
    # P1 every 4 hours, 24/7 (seed 001 section 3.2).
    ("P1 weekday", "P1", local(2027, 1, 11, 10), [local(2027, 1, 11, 14), local(2027, 1, 11, 18),
                                                   local(2027, 1, 11, 22)]),
    # 4 real hours across the spring-forward night: 23:00 EST + 4 h = 04:00 EDT (wall clock +5).
    ("P1 across DST", "P1", local(2027, 3, 13, 23), [local(2027, 3, 14, 4), local(2027, 3, 14, 8),
                                                      local(2027, 3, 14, 12)]),
    # P2 daily = one business day = 9 business hours: Mon 10:00 -> Tue 10:00 -> Wed 10:00.
    ("P2 weekday", "P2", local(2027, 1, 11, 10), [local(2027, 1, 12, 10), local(2027, 1, 13, 10)]),
    # Fri 15:00: 3 h on Friday, MLK Monday closed, 6 h on Tuesday -> Tue 15:00; then Wed 15:00.
    ("P2 over a holiday", "P2", local(2027, 1, 15, 15), [local(2027, 1, 19, 15), local(2027, 1, 20, 15)]),
    # Fri 15:00 EST: 3 h, the weekend of the DST switch, 6 h from Mon 09:00 EDT -> Mon 15:00 EDT.
    ("P2 DST week", "P2", local(2027, 3, 12, 15), [local(2027, 3, 15, 15), local(2027, 3, 16, 15)]),
    # Opened on Saturday before MLK Monday: counting starts Tuesday 09:00; + 9 h = Tuesday 18:00.
    ("P2 weekend", "P2", local(2027, 1, 16, 11), [local(2027, 1, 19, 18), local(2027, 1, 20, 18)]),
])
def test_update_cadence(case, priority, opened, expected):
    t, plan = ticket(priority, opened)
    assert updates(plan, len(expected)) == expected, case
    first = next(a for a in plan.pending() if a.step.startswith("comms/update/"))
    assert first.at == expected[0] and first.step.endswith("-1")


def test_p0_and_p3_get_no_regular_updates():
    for priority in ("P0", "P3"):
        _, plan = ticket(priority, local(2027, 1, 11, 10))
        assert not [s for s in steps(plan) if s.startswith("comms/update/")], priority


@pytest.mark.parametrize(("tier", "priority", "opened", "clock", "expected"), [
    # Enterprise P1 response 2 business hours; 75 % = 1.5 h.
    ("Enterprise", "P1", local(2027, 1, 11, 10), "response", local(2027, 1, 11, 11, 30)),
    # Opened at 17:00 (open): 1 h on Monday, 0.5 h from Tuesday 09:00.
    ("Enterprise", "P1", local(2027, 1, 11, 17), "response", local(2027, 1, 12, 9, 30)),
    # Resolution 24 hours 24/7: 18 h.
    ("Enterprise", "P1", local(2027, 1, 11, 10), "resolution", local(2027, 1, 12, 4)),
    # Starter P2 response 1 business day = 9 h; 75 % = 6.75 h: Fri 3 h, MLK Monday off, Tue 09:00 + 3.75 h.
    ("Starter", "P2", local(2027, 1, 15, 15), "response", local(2027, 1, 19, 12, 45)),
    # Mid-Market P1 response 4 business hours; 3 h: Fri 17:00 EST 1 h, Mon 09:00 EDT + 2 h.
    ("Mid-Market", "P1", local(2027, 3, 12, 17), "response", local(2027, 3, 15, 11)),
    # Enterprise P3 resolution 5 business days = 45 h; 33.75 h from Mon 10:00: Mon 8, Tue 9, Wed 9,
    # Thu 7.75 -> Thu 16:45.
    ("Enterprise", "P3", local(2027, 1, 11, 10), "resolution", local(2027, 1, 14, 16, 45)),
])
def test_sla_approaching_at_three_quarters(tier, priority, opened, clock, expected):
    _, plan = ticket(priority, opened, tier)
    assert steps(plan)[f"comms/approaching/{clock}"].astimezone(ET) == expected


def test_approaching_fires_once_per_clock_and_not_after_the_clock_stops():
    t, plan = ticket("P1", local(2027, 1, 11, 10))
    t.mark_done("comms/approaching/response")
    t.change_priority("P2", local(2027, 1, 11, 11), "lead")  # re-planned targets: no second warning
    assert "comms/approaching/response" not in steps(plan)
    t.acknowledge(local(2027, 1, 11, 11), "agent")
    t.hold(local(2027, 1, 11, 12), "pending customer")
    assert not [s for s in steps(plan) if s.startswith("comms/approaching/")]


def test_a_hold_stops_updates_and_a_resume_starts_a_new_spell():
    t, plan = ticket("P1", local(2027, 1, 11, 10))
    t.hold(local(2027, 1, 11, 13), "pending customer")
    assert not [s for s in steps(plan) if s.startswith("comms/update/")]
    t.resume(local(2027, 1, 11, 20))
    assert steps(plan)["comms/update/20270112T010000-1"] == local(2027, 1, 12, 0)  # 20:00 + 4 h


def test_missed_updates_collapse_to_the_latest():
    _, plan = ticket("P1", local(2027, 1, 11, 10))
    # Workers down from 10:00 to 23:00: 14:00, 18:00 and 22:00 were due; one update, number 3.
    assert plan.latest_update(plan.spell(), plan.cadence(), local(2027, 1, 11, 23), 1) == 3


def test_resolution_closing_and_csat_unless_reopened():
    t, plan = ticket("P2", local(2027, 1, 11, 10))
    t.resolve(local(2027, 1, 12, 9))
    due = steps(plan)
    assert due["comms/resolution/0"] == local(2027, 1, 12, 9)
    assert due["comms/closing/0"] == due["comms/csat/0"] == local(2027, 1, 15, 9)  # 72 h, 24/7
    assert not [s for s in due if s.startswith("comms/update/")]
    t.mark_done("comms/resolution/0")
    t.reopen(local(2027, 1, 13, 9))
    due = steps(plan)
    assert "comms/closing/0" not in due and "comms/csat/0" not in due
    t.resolve(local(2027, 1, 13, 12))
    assert steps(plan)["comms/closing/1"] == local(2027, 1, 16, 12)


def test_plays_from_before_communications_send_none():
    t, plan = ticket("P1", local(2027, 1, 11, 10))
    t.state.comms = False
    assert plan.pending() == []


def test_business_hours_as_read_in_the_acknowledgement():
    t, _ = ticket("P1", local(2027, 1, 11, 10))
    assert hours_text(t) == "Mon-Fri 09:00-18:00 (America/New_York)"
