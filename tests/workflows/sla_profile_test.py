"""A ticket of another organisation profile on the time-skipping server (issue 19): PROFILE names a
profile whose tiers are by MRR in euros and whose support region is Paris with a Saturday window
(seed 004's hours); the ticket's tier and its business hours come from it, and what the profile
does not have is refused before anything starts.

The demo account has an ARR of $150,000: 138,889 EUR at 1.08, 11,574 EUR a month: Enterprise
(over 2,000 a month). Its Enterprise P2 response target is 4 business hours (the default matrix):
opened Friday 17:00 in Paris, that is 1 hour on Friday and 3 on Saturday (10:00-14:00), due
Saturday 13:00 Paris.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest

from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import SteeringError, open_ticket
from tests.conftest import eventually
from tests.playbooks.profiles_test import copy_playbooks, write_profile
from tests.workflows.play_driver import skip_to_next_monday

PARIS = ZoneInfo("Europe/Paris")


async def next_plain_friday(env) -> datetime:
    """Friday 17:00 in Paris after the next Monday, in a week whose Friday and Saturday are not French holidays."""
    monday = await skip_to_next_monday(env)
    friday = monday.astimezone(PARIS).date() + timedelta(days=4)
    fr = holidays.FR(years=[friday.year, friday.year + 1])
    while friday in fr or friday + timedelta(days=1) in fr:
        friday += timedelta(days=7)
    at = datetime.combine(friday, time(17), tzinfo=PARIS)
    await env.sleep(at - await env.get_current_time())
    return at


async def test_a_ticket_counts_the_business_hours_of_its_profile_s_region(env, worker, pool, settings, tmp_path):
    folder = copy_playbooks(tmp_path)
    write_profile(folder, "paris")
    paris = settings.model_copy(update={"playbooks_dir": folder, "profile": "paris"})
    friday = await next_plain_friday(env)
    handle = await open_ticket(env.client, pool, paris, "T-PARIS", DEMO_ACCOUNT_ID, "P2", "Export fails", friday,
                               "test", paris.task_queue, now=friday)
    row = await eventually(lambda: pool.fetchrow(
        "SELECT tier, priority, response_due_at FROM sla_tickets WHERE ticket_id = 'T-PARIS'"), "the ticket's row")
    assert (row["tier"], row["priority"]) == ("Enterprise", "P2")
    saturday_13 = datetime.combine(friday.date() + timedelta(days=1), time(13), tzinfo=PARIS)
    assert row["response_due_at"] == saturday_13
    # At the SLA (Saturday 13:00) the ladder's first rung, the profile's Enterprise CS manager, hears of it.
    await env.sleep(saturday_13 + timedelta(minutes=5) - await env.get_current_time())
    levels = await eventually(lambda: pool.fetch(
        "SELECT level, to_role FROM escalations WHERE workflow_id = $1", handle.id), "the escalation at the SLA")
    assert [(r["level"], r["to_role"]) for r in levels] == [(1, "cs_manager")]


@pytest.mark.parametrize(("priority", "says"), [("P4", "priority 'P4' must be one of P0, P1, P2, P3"),
                                                ("urgent", "must be one of")])
async def test_a_priority_the_profile_does_not_have_starts_nothing(env, pool, settings, tmp_path, priority, says):
    folder = copy_playbooks(tmp_path)
    write_profile(folder, "paris")
    paris = settings.model_copy(update={"playbooks_dir": folder, "profile": "paris"})
    with pytest.raises(SteeringError) as info:
        await open_ticket(env.client, pool, paris, "T-NOPE", DEMO_ACCOUNT_ID, priority, "x", task_queue=paris.task_queue)
    assert says in str(info.value) and info.value.status == 422
    assert await pool.fetchval("SELECT count(*) FROM sla_tickets") == 0
