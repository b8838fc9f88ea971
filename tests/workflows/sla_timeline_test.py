"""A ticket's SLA clocks as data: `SlaTimeline` with the shipped sla.yaml.

Monday 2027-01-11 is a business day (MLK day is the 18th); New York time.
Covers target choice (after-hours response, business vs 24/7 units),
deadlines across holds and priority changes, the ladder by tier, P0 update
collapsing after an outage, and the reopen window.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from playbooks.loader import load_named
from starter.steering import public_holidays
from workflows.sla_timeline import Interval, SlaState, SlaTimeline

CONTENT = load_named("sla").content
ET = ZoneInfo("America/New_York")
MONDAY = date(2027, 1, 11)


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(MONDAY + timedelta(days=day), time(hour, minute), tzinfo=ET)


def ticket(priority: str = "P2", tier: str = "Enterprise", opened: datetime | None = None) -> SlaTimeline:
    opened = opened or at(0, 10)
    state = SlaState(ticket_id="T", subject="s", tier=tier, priority=priority, opened_at=opened,
                     running=[Interval(start=opened)])
    t = SlaTimeline(CONTENT, state, public_holidays("US", MONDAY))
    t.start()
    return t


def drain(t: SlaTimeline, now: datetime) -> list[str]:
    steps = []
    while due := t.due(now):
        for a in due:
            t.mark_done(a.step)
            if a.kind == "p0_update":
                t.state.p0_updates_sent = a.occurrence
            steps.append(a.step)
    return steps


@pytest.mark.parametrize(("tier", "priority", "opened", "response", "due"), [
    ("Enterprise", "P0", at(0, 10), "30 minutes", at(0, 10, 30)),
    ("Enterprise", "P1", at(0, 10), "2 business hours", at(0, 12)),
    ("Enterprise", "P1", at(5, 12), "4 hours", at(5, 16)),            # Saturday: evenings/weekends target
    ("Mid-Market", "P0", at(0, 20), "4 hours", at(1, 0)),             # after hours
    ("Mid-Market", "P3", at(0, 17), "1 business days", at(1, 17)),
    ("Starter", "P3", at(4, 17, 30), "2 business days", at(9, 17, 30)),  # Fri 17:30 -> Wed (MLK Monday off)
])
def test_response_target_and_deadline(tier, priority, opened, response, due):
    t = ticket(priority, tier, opened)
    assert str(t.target("response")) == response
    assert t.deadline("response") == due


def test_levels_beyond_a_short_ladder_go_to_its_last_rung():
    t = ticket(tier="Starter")
    # Seed 001 section 8.1: Support Team -> Implementation CSM -> CS Manager; beyond, the last rung.
    assert [t.ladder_role(n) for n in (1, 2, 3, 4)] == ["support_team", "csm", "cs_manager", "cs_manager"]
    assert ticket(tier="Mid-Market").ladder_role(1) == "csm"


def test_missed_p0_updates_collapse_into_the_latest():
    t = ticket("P0")
    assert drain(t, at(0, 10, 31))[-1] == "p0-update/1-1"
    # Workers down for two hours: one update (the 5th), not four.
    steps = drain(t, at(0, 12, 35))
    assert [s for s in steps if s.startswith("p0-update/")] == ["p0-update/1-5"]
    assert t.next_wake(at(0, 12, 35)) == at(0, 13)


def test_hold_and_priority_change_move_the_deadlines():
    t = ticket("P2")
    t.hold(at(0, 11), "pending customer")
    assert t.deadline("response") is None and t.pending() == []
    t.resume(at(0, 15))
    assert t.deadline("response") == at(0, 18)  # 3 business hours left from 15:00
    t.change_priority("P3", at(0, 16), "support")
    assert t.deadline("response") == at(1, 13)  # 8 business hours: 1 before the hold, 3 from 15:00, 4 on Tuesday
    t.acknowledge(at(0, 16, 30), "csm")
    assert t.deadline("response") is None and t.met("response", at(0, 17)) is True


def test_resolved_ticket_closes_after_the_reopen_window_and_a_p0_asks_for_a_root_cause():
    t = ticket("P0")
    t.resolve(at(0, 13))
    assert [(a.kind, a.at) for a in t.pending()] == [("root_cause", at(0, 13)), ("close", at(7, 13))]
    t.reopen(at(2, 9))
    assert t.state.status == "open" and t.deadline("resolution") == at(2, 10)  # 3 of 4 hours spent
    assert t.is_running("resolution")
