"""The four other profiles' SLA content (issue 19), cell by cell, computed by hand from each handbook:
the matrix (targets and deadlines), the credit rules and the escalation timers. Every ticket opens
on Monday 2027-01-11 at 10:00 in the profile's support time zone (no holiday that week; MLK day,
Monday the 18th, is a US holiday; France has none in January after the 1st).

Deadlines use the support region of the ticket's tier (profile.yaml): SlavkoKernel Standard
Mon-Fri 09-17 New York, Premium 07-21 New York, Enterprise and White Glove 24/7 (a business day is 8
hours everywhere); VMCloud Mon-Fri 09-18 and Saturday 10-14 Paris (a business day is 9 hours);
VK Cloud three Moscow shifts covering every hour (a business day is 9 hours); M&A 24/7.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from playbooks.loader import load_named
from playbooks.profiles import cached_profile
from workflows.sla_timeline import Interval, SlaState, SlaTimeline

ZONES = {"slavkokernel": "America/New_York", "vmcloud": "Europe/Paris", "vkcloud": "Europe/Moscow",
         "ma_suite": "America/New_York"}


def at(profile: str, day: int, hour: int, minute: int = 0) -> datetime:
    monday = datetime(2027, 1, 11).date()
    return datetime.combine(monday + timedelta(days=day), time(hour, minute), tzinfo=ZoneInfo(ZONES[profile]))


def content(profile: str):
    return load_named("sla", profile=cached_profile(profile)).content


def ticket(profile: str, tier: str, priority: str) -> SlaTimeline:
    opened = at(profile, 0, 10)
    calendar = cached_profile(profile).support_calendar(tier, opened)
    state = SlaState(ticket_id="T", subject="s", tier=tier, priority=priority, opened_at=opened,
                     running=[Interval(start=opened)])
    t = SlaTimeline(content(profile), state, [], calendar)
    t.start()
    return t


def cell(profile, tier, priority, response, response_due, resolution, resolution_due):
    return pytest.param(profile, tier, priority, response, response_due, resolution, resolution_due,
                        id=f"{profile}-{tier}-{priority}")


S, V, K, M = "slavkokernel", "vmcloud", "vkcloud", "ma_suite"
MATRIX = [
    # Seed 002 "Support Tiers" (response) and "Issue Prioritization" (resolution 4 h, 8 h, 3 and 10
    # business days). White Glove and Enterprise: 24/7, a business day of 8 hours.
    cell(S, "White Glove", "P1", "15 minutes", at(S, 0, 10, 15), "4 hours", at(S, 0, 14)),
    cell(S, "White Glove", "P2", "1 hours", at(S, 0, 11), "8 hours", at(S, 0, 18)),
    cell(S, "White Glove", "P3", "2 hours", at(S, 0, 12), "3 business days", at(S, 1, 10)),
    cell(S, "White Glove", "P4", "4 hours", at(S, 0, 14), "10 business days", at(S, 3, 18)),
    cell(S, "Enterprise", "P1", "30 minutes", at(S, 0, 10, 30), "4 hours", at(S, 0, 14)),
    cell(S, "Enterprise", "P2", "2 hours", at(S, 0, 12), "8 hours", at(S, 0, 18)),
    cell(S, "Enterprise", "P3", "4 hours", at(S, 0, 14), "3 business days", at(S, 1, 10)),
    cell(S, "Enterprise", "P4", "8 hours", at(S, 0, 18), "10 business days", at(S, 3, 18)),
    # Premium: 07-21 weekdays (14 h a day). 3 business days = 24 h: Monday 11 + Tuesday 13 -> Tue 20:00;
    # 10 business days = 80 h: Monday 11, Tuesday-Friday 56 (67), MLK Monday off, Tuesday 13 -> 20:00.
    cell(S, "Premium", "P1", "2 business hours", at(S, 0, 12), "4 business hours", at(S, 0, 14)),
    cell(S, "Premium", "P2", "4 business hours", at(S, 0, 14), "8 business hours", at(S, 0, 18)),
    cell(S, "Premium", "P3", "8 business hours", at(S, 0, 18), "3 business days", at(S, 1, 20)),
    cell(S, "Premium", "P4", "24 business hours", at(S, 1, 20), "10 business days", at(S, 8, 20)),
    # Standard: 09-17 weekdays. 8 h: Monday 7 + 1 -> Tue 10:00; 24 h: 7 + 8 + 8 + 1 -> Thu 10:00;
    # 48 h: 7 + 32 (Tue-Fri) = 39, MLK off, Tue 19th 8 = 47, Wed 20th 10:00; 80 h: ... Tue 26th 10:00.
    cell(S, "Standard", "P1", "4 business hours", at(S, 0, 14), "4 business hours", at(S, 0, 14)),
    cell(S, "Standard", "P2", "8 business hours", at(S, 1, 10), "8 business hours", at(S, 1, 10)),
    cell(S, "Standard", "P3", "24 business hours", at(S, 3, 10), "3 business days", at(S, 3, 10)),
    cell(S, "Standard", "P4", "48 business hours", at(S, 9, 10), "10 business days", at(S, 15, 10)),
    # Seed 004 section 3.1; a P1 is an emergency (section 1.3: on-call SRE, < 30 minutes, 24/7).
    # Support hours: Mon-Fri 09-18 (Monday from 10:00: 8 h), Saturday 10-14.
    # 24 h: 8 + 9 + 7 -> Wed 16:00; 48 h: 8 + 9 x 4 = 44 + Saturday 4 -> Sat 14:00.
    cell(V, "Enterprise", "P1", "30 minutes", at(V, 0, 10, 30), "2 hours", at(V, 0, 12)),
    cell(V, "Enterprise", "P2", "1 business hours", at(V, 0, 11), "8 business hours", at(V, 0, 18)),
    cell(V, "Enterprise", "P3", "1 business hours", at(V, 0, 11), "24 business hours", at(V, 2, 16)),
    cell(V, "Enterprise", "P4", "1 business hours", at(V, 0, 11), "48 business hours", at(V, 5, 14)),
    # 12 h: 8 + 4 -> Tue 13:00; 96 h: 48 by Saturday 14:00, then 9 x 5 = 45 (93), Saturday 23rd 3 -> 13:00.
    cell(V, "Business", "P1", "30 minutes", at(V, 0, 10, 30), "4 hours", at(V, 0, 14)),
    cell(V, "Business", "P2", "2 business hours", at(V, 0, 12), "12 business hours", at(V, 1, 13)),
    cell(V, "Business", "P3", "2 business hours", at(V, 0, 12), "48 business hours", at(V, 5, 14)),
    cell(V, "Business", "P4", "2 business hours", at(V, 0, 12), "96 business hours", at(V, 12, 13)),
    # 72 h: 48 by Saturday 16th 14:00, Monday 18th 9, Tuesday 9, Wednesday 6 -> 15:00;
    # 144 h: 96 by Saturday 23rd 13:00, 1 more that day, Mon-Fri 45 (142), Saturday 30th 2 -> 12:00.
    cell(V, "Standard", "P1", "30 minutes", at(V, 0, 10, 30), "8 hours", at(V, 0, 18)),
    cell(V, "Standard", "P2", "4 business hours", at(V, 0, 14), "24 business hours", at(V, 2, 16)),
    cell(V, "Standard", "P3", "4 business hours", at(V, 0, 14), "72 business hours", at(V, 9, 15)),
    cell(V, "Standard", "P4", "4 business hours", at(V, 0, 14), "144 business hours", at(V, 19, 12)),
    # Free: "best effort (< 24h)"; resolution default 5 business days = 45 h: 8 + 9 x 4 = 44, Sat 1 -> 11:00.
    cell(V, "Free", "P1", "24 hours", at(V, 1, 10), "5 business days", at(V, 5, 11)),
    cell(V, "Free", "P2", "24 hours", at(V, 1, 10), "5 business days", at(V, 5, 11)),
    cell(V, "Free", "P3", "24 hours", at(V, 1, 10), "5 business days", at(V, 5, 11)),
    cell(V, "Free", "P4", "24 hours", at(V, 1, 10), "5 business days", at(V, 5, 11)),
    # Seed 000 (no numbers: the defaults of its sla.yaml). Three shifts cover every hour; a business
    # day is 9 hours: 3 days = 27 h -> Tue 13:00; 10 days = 90 h -> Fri 04:00.
    cell(K, "Premium", "P1", "30 minutes", at(K, 0, 10, 30), "4 business hours", at(K, 0, 14)),
    cell(K, "Premium", "P2", "2 business hours", at(K, 0, 12), "8 business hours", at(K, 0, 18)),
    cell(K, "Premium", "P3", "4 business hours", at(K, 0, 14), "3 business days", at(K, 1, 13)),
    cell(K, "Premium", "P4", "8 business hours", at(K, 0, 18), "10 business days", at(K, 4, 4)),
    cell(K, "Professional", "P1", "2 business hours", at(K, 0, 12), "4 business hours", at(K, 0, 14)),
    cell(K, "Professional", "P2", "4 business hours", at(K, 0, 14), "8 business hours", at(K, 0, 18)),
    cell(K, "Professional", "P3", "8 business hours", at(K, 0, 18), "3 business days", at(K, 1, 13)),
    cell(K, "Professional", "P4", "24 business hours", at(K, 1, 10), "10 business days", at(K, 4, 4)),
    cell(K, "Standard", "P1", "4 business hours", at(K, 0, 14), "4 business hours", at(K, 0, 14)),
    cell(K, "Standard", "P2", "8 business hours", at(K, 0, 18), "8 business hours", at(K, 0, 18)),
    cell(K, "Standard", "P3", "24 business hours", at(K, 1, 10), "3 business days", at(K, 1, 13)),
    cell(K, "Standard", "P4", "48 business hours", at(K, 2, 10), "10 business days", at(K, 4, 4)),
    # Seed 003 "Response SLAs", 24/7.
    cell(M, "Fortune 500", "Critical", "1 hours", at(M, 0, 11), "4 hours", at(M, 0, 14)),
    cell(M, "Fortune 500", "High", "2 hours", at(M, 0, 12), "8 hours", at(M, 0, 18)),
    cell(M, "Fortune 500", "Medium", "4 hours", at(M, 0, 14), "24 hours", at(M, 1, 10)),
    cell(M, "Fortune 500", "Low", "8 hours", at(M, 0, 18), "48 hours", at(M, 2, 10)),
]


@pytest.mark.parametrize(("profile", "tier", "priority", "response", "response_due", "resolution",
                          "resolution_due"), MATRIX)
def test_matrix_cell(profile, tier, priority, response, response_due, resolution, resolution_due):
    t = ticket(profile, tier, priority)
    assert (str(t.target("response")), str(t.target("resolution"))) == (response, resolution)
    assert (t.deadline("response"), t.deadline("resolution")) == (response_due, resolution_due)


def test_every_cell_of_every_matrix_is_in_the_table():
    tested = {(p.values[0], p.values[1], p.values[2]) for p in MATRIX}
    for name in (S, V, K, M):
        profile = cached_profile(name)
        for tier in profile.tier_names:
            for priority in profile.priority_keys:
                assert (name, tier, priority) in tested, (name, tier, priority)


@pytest.mark.parametrize(("profile", "tier", "priority", "response", "resolution", "cap"), [
    # Seed 004 section 3.3: first response 5 %, P1 resolution 10 %, P2 resolution 5 %, 25 % a month at
    # most; credits are Business's and Enterprise's ("SLA avec crédits"); Free has no contractual SLA.
    (V, "Enterprise", "P1", 5, 10, 25), (V, "Enterprise", "P2", 5, 5, 25), (V, "Enterprise", "P3", 5, 0, 25),
    (V, "Enterprise", "P4", 5, 0, 25), (V, "Business", "P1", 5, 10, 25), (V, "Business", "P2", 5, 5, 25),
    (V, "Business", "P3", 5, 0, 25), (V, "Standard", "P1", 0, 0, None), (V, "Free", "P1", 0, 0, None),
    # Seed 000: the default rates (seed 001's by tier rank) and seed 004's cap.
    (K, "Premium", "P1", 5, 10, 25), (K, "Professional", "P3", 3, 5, 25), (K, "Standard", "P4", 1, 2, 25),
    # Seeds 002 and 003 have no service credits.
    (S, "White Glove", "P1", 0, 0, None), (S, "Standard", "P4", 0, 0, None), (M, "Fortune 500", "Critical", 0, 0, None),
])
def test_credit_rules(profile, tier, priority, response, resolution, cap):
    rates = content(profile).tiers[tier].credits
    assert (rates.percent("response", priority), rates.percent("resolution", priority)) == (response, resolution)
    assert rates.monthly_cap == cap


def open_time_rules(t: SlaTimeline) -> list[tuple[str, datetime]]:
    return [(t.rule(a.rule).label, a.at) for a in t.pending() if a.kind == "ladder" and a.clock is None]


@pytest.mark.parametrize(("profile", "tier", "priority", "expected"), [
    # Seed 004 section 3.2: P1 "auto vers SRE" at once, section 6.2 "P1 non résolu en 2h" (the
    # founder); P2 "si pas résolu en 4h", P3 "si pas résolu en 24h" (the SRE); P4 via the backlog.
    (V, "Business", "P1", [("P1, escalade automatique vers SRE", at(V, 0, 10)), ("P1 non résolu en 2h", at(V, 0, 12))]),
    (V, "Business", "P2", [("P2 non résolu en 4h", at(V, 0, 14))]),
    (V, "Standard", "P3", [("P3 non résolu en 24h", at(V, 1, 10))]),
    (V, "Enterprise", "P4", []),
    # Seed 002 "Escalation Path": P1 immediate, P2 4-hour, P3 24-hour management notification.
    (S, "Standard", "P1", [("P1 management notification", at(S, 0, 10))]),
    (S, "Premium", "P2", [("P2 open 4 hours (management notification)", at(S, 0, 14))]),
    (S, "Enterprise", "P3", [("P3 open 24 hours (management notification)", at(S, 1, 10))]),
    (S, "White Glove", "P4", []),
    # Seed 003: the executive on call hears of a Critical ticket at once.
    (M, "Fortune 500", "Critical", [("Critical ticket opened", at(M, 0, 10))]),
    (M, "Fortune 500", "Low", []),
    # Seed 000 (default): a P1 goes to the shift lead at once ("emergency escalation").
    (K, "Standard", "P1", [("P1 emergency escalation", at(K, 0, 10))]),
    (K, "Premium", "P2", []),
])
def test_escalation_timers_open_time(profile, tier, priority, expected):
    assert open_time_rules(ticket(profile, tier, priority)) == expected


@pytest.mark.parametrize(("profile", "tier", "priority", "expected"), [
    # Seed 003 (defaults): a clock at its target -> Tier 2, 1.5 x -> Tier 3, 2 x -> Tier 3 (Critical: Tier 4).
    # High: response 2 h -> 12:00, 13:00, 14:00; resolution 8 h -> 18:00, 22:00, Tue 02:00.
    (M, "Fortune 500", "High", [("SLA reached", "response", at(M, 0, 12)), ("SLA breached", "response", at(M, 0, 13)),
                                 ("SLA breached twice over", "response", at(M, 0, 14)),
                                 ("SLA reached", "resolution", at(M, 0, 18)),
                                 ("SLA breached", "resolution", at(M, 0, 22)),
                                 ("SLA breached twice over", "resolution", at(M, 1, 2))]),
    # Seed 002: an SLA breach goes to the Support Manager; twice the target to VP Customer Success.
    # Enterprise P2: response 2 h -> 12:00 and 14:00; resolution 8 h -> 18:00 and Tue 02:00.
    (S, "Enterprise", "P2", [("SLA breach", "response", at(S, 0, 12)),
                             ("SLA breached twice over (executive)", "response", at(S, 0, 14)),
                             ("SLA breach", "resolution", at(S, 0, 18)),
                             ("SLA breached twice over (executive)", "resolution", at(S, 1, 2))]),
    # Seed 004: a missed clock is credited when it passes its target. Enterprise P1: 10:30 and 12:00.
    (V, "Enterprise", "P1", [("SLA dépassé", "response", at(V, 0, 10, 30)), ("SLA dépassé", "resolution", at(V, 0, 12))]),
])
def test_escalation_timers_at_the_sla(profile, tier, priority, expected):
    t = ticket(profile, tier, priority)
    got = sorted(((t.rule(a.rule).label, a.clock, a.at) for a in t.pending() if a.clock is not None),
                 key=lambda x: (x[2], x[0]))
    assert got == sorted(expected, key=lambda x: (x[2], x[0]))


@pytest.mark.parametrize(("profile", "tier", "ladder", "role", "rung"), [
    (V, "Enterprise", ["cre", "sre", "founder"], "sre", 2),
    (S, "Standard", ["support_engineer", "senior_support_engineer", "product_engineering"], "support_manager", None),
    (K, "Premium", ["tam", "shift_lead", "senior_engineer", "director_operations"], "shift_lead", 2),
    (M, "Fortune 500", ["tier1_support", "tier2_support", "tier3_engineering", "tier4_executive"], "tier4_executive", 4),
])
def test_ladders_are_the_profile_s_roles(profile, tier, ladder, role, rung):
    t = ticket(profile, tier, next(iter(cached_profile(profile).priority_keys)))
    assert content(profile).tiers[tier].ladder == ladder and t.ladder_level(role) == rung
    assert set(ladder) <= set(cached_profile(profile).content.staff_roles)


def test_vmcloud_closes_72_hours_after_resolution_without_a_reply():
    t = ticket(V, "Business", "P3")
    t.resolve(at(V, 0, 15))
    assert [(a.kind, a.at) for a in t.pending()] == [("close", at(V, 3, 15))]
