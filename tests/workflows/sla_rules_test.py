"""Seed 001 section 3.2 timers and roles as content (issue 19), computed by hand: the open-time rules
of the shipped sla.yaml per priority, the roles they name, and who a rule naming a role reaches on
each tier's ladder.

Monday 2027-01-11 10:00 New York time (a business day; MLK day is the 18th). Open-time rules count
hours open 24/7, holds excluded.
"""

from __future__ import annotations

from datetime import datetime

import pytest

from playbooks.loader import PlaybookError, load_named
from playbooks.profiles import cached_profile
from workflows.sla_timeline import SlaTimeline

# The seed 001 content, its days in January 2027 and a ticket on them: as the timeline tests build them.
from tests.workflows.sla_timeline_test import CONTENT, at, ticket


def open_time_rules(t: SlaTimeline) -> list[tuple[str, datetime]]:
    return [(t.rule(a.rule).label, a.at) for a in t.pending() if a.kind == "ladder" and a.clock is None]


@pytest.mark.parametrize(("priority", "expected"), [
    # P0: VP Engineering at once (with level 2), the COO notice at 2 hours, VP Product at 4 hours.
    ("P0", [("P0 severity", at(0, 10)), ("P0 unresolved 2 hours", at(0, 12)), ("P0 open 4 hours", at(0, 14))]),
    # P1: the team alert at once, level 2 at 4 hours, "escalation if not resolved in 8 hours" (level 3).
    ("P1", [("P1 opened", at(0, 10)), ("P1 open 4 hours", at(0, 14)), ("P1 unresolved 8 hours", at(0, 18))]),
    # P2: "escalation if not resolved in 24 hours" (level 2), Tuesday 10:00.
    ("P2", [("P2 unresolved 24 hours", at(1, 10))]),
    # P3: "escalation if related to multiple customers" is no timer.
    ("P3", []),
])
def test_section_3_2_timers_by_priority(priority, expected):
    assert open_time_rules(ticket(priority)) == expected


def test_the_timers_count_open_time_without_holds():
    t = ticket("P1")
    t.hold(at(0, 11), "pending customer")
    t.resume(at(0, 13))  # two hours on hold: 4 and 8 hours open fall two hours later
    labels = dict(open_time_rules(t))
    assert labels["P1 open 4 hours"] == at(0, 16) and labels["P1 unresolved 8 hours"] == at(0, 20)


def test_the_rules_name_their_level_role_and_notice():
    rules = {r.label: r for r in CONTENT.ladder}
    assert (rules["P0 severity"].level, rules["P0 severity"].role) == (2, "vp_engineering")
    assert (rules["P0 open 4 hours"].level, rules["P0 open 4 hours"].role) == (3, "vp_product")
    assert rules["P1 unresolved 8 hours"].level == 3 and rules["P2 unresolved 24 hours"].level == 2
    coo, alert = rules["P0 unresolved 2 hours"], rules["P1 opened"]
    assert (coo.level, coo.notify, coo.notice.template) == (0, ["coo"], "sla/executive_notice.html.j2")
    assert (alert.level, alert.notify, alert.notice.template) == (0, ["support_team"], "sla/alert.html.j2")


@pytest.mark.parametrize(("tier", "vp_engineering", "vp_product"), [
    ("Enterprise", 2, 3),   # [cs_manager, vp_engineering, vp_product, ceo]
    ("Mid-Market", 3, 4),   # [csm, cs_manager, vp_engineering, vp_product]: climbed to
    ("Starter", None, None),  # [support_team, csm, cs_manager]: escalated to once, off the ladder
])
def test_a_role_is_a_rung_of_the_tier_s_ladder_or_off_it(tier, vp_engineering, vp_product):
    t = ticket("P0", tier)
    assert (t.ladder_level("vp_engineering"), t.ladder_level("vp_product")) == (vp_engineering, vp_product)


def _sla_with(tmp_path, old: str, new: str) -> str:
    from tests.playbooks.profiles_test import copy_playbooks

    folder = copy_playbooks(tmp_path)
    path = folder / "sla.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(PlaybookError) as info:
        load_named("sla", profile=cached_profile("tai", folder))
    return str(info.value)


@pytest.mark.parametrize(("old", "new", "says"), [
    ("    role: vp_engineering\n", "    role: vp_enginering\n",
     "ladder[3].role: 'vp_enginering' is not a role of profile tai"),
    ("    notify: [coo]\n", "    notify: [cfo]\n", "'cfo' is not a role of profile tai"),
    ("    ladder: [support_team, csm, cs_manager]\n", "    ladder: [support_team, csm, vp_customer_succes]\n",
     "'vp_customer_succes' is not a role of profile tai"),
    ("    open_hours: 2\n    notify: [coo]\n", "    open_hours: 2\n", "ladder[8].notice: a notice needs the roles"),
    ("    open_hours: 24\n    level: 2\n", "    open_hours: 24\n", "ladder[7].level: the rule does nothing"),
])
def test_a_role_the_profile_does_not_declare_is_refused_with_file_and_line(tmp_path, old, new, says):
    message = _sla_with(tmp_path, old, new)
    assert "sla.yaml:" in message and says in message, message
