"""Ticket SLA clocks on the time-skipping test server: the escalation ladder,
service credits, P0 updates and root cause, priority changes, holds and reopens.

The demo account is Enterprise ($150K ARR: monthly fee $12,500). Tickets open
on a Monday at 10:00 New York time unless a test says otherwise.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import SteeringError, open_ticket, sla_status
from tests.workflows.play_driver import ET, skip_to_next_monday
from workflows.sla import SlaClock
from workflows.sla_messages import Acknowledged, OnHold, PriorityChanged, Reopened, Resolved, Resumed

LADDER = {1: ("cs_manager", "diana.hoang@tai.example"), 2: ("vp_engineering", "marcus.webb@tai.example"),
          3: ("vp_product", "priya.nair@tai.example"), 4: ("ceo", "alex.chen@tai.example")}


async def open_at(env, pool, settings, ticket_id: str, priority: str, **kw):
    start = await skip_to_next_monday(env)
    handle = await open_ticket(env.client, pool, settings, ticket_id, DEMO_ACCOUNT_ID, priority,
                               "Dashboards do not load", start, "test", settings.task_queue, now=start, **kw)
    return handle, start


async def sleep_to(env, moment: datetime) -> None:
    now = await env.get_current_time()
    assert moment > now, f"cannot go back to {moment}"
    await env.sleep(moment - now)


def near(a: datetime, b: datetime) -> bool:
    """Equal but for the milliseconds a signal takes to arrive."""
    return abs((a - b).total_seconds()) < 1


async def escalations(pool, workflow_id: str) -> list[tuple[int, str]]:
    rows = await pool.fetch("SELECT level, to_role FROM escalations WHERE workflow_id = $1 ORDER BY id", workflow_id)
    return [(r["level"], r["to_role"]) for r in rows]


async def test_p0_climbs_every_level_updates_the_customer_and_asks_for_a_root_cause(env, worker, pool, settings, sink):
    handle, start = await open_at(env, pool, settings, "T-P0", "P0")
    await env.sleep(timedelta(minutes=5))
    # P0 severity: the CS manager and VP Engineering at once (seed 001 sections 3.2 and 9.2).
    assert await escalations(pool, handle.id) == [(1, "cs_manager"), (2, "vp_engineering")]
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="Casey Morgan"))
    await sleep_to(env, start + timedelta(hours=4, minutes=5))
    # Open 4 hours (and the 4-hour resolution SLA reached): VP Product.
    assert await escalations(pool, handle.id) == [(1, "cs_manager"), (2, "vp_engineering"), (3, "vp_product")]
    await sleep_to(env, start + timedelta(hours=6, minutes=5))
    notices = [m for m in sink.messages if m.step.endswith("/notify")]
    # The COO's notice at 2 hours unresolved (section 3.2), the CS manager's breach notice at 1.5x.
    assert [m.step for m in notices] == ["ladder/8/notify", "ladder/1/resolution/notify"]
    assert "SLA breached" in notices[1].subject and "diana.hoang@tai.example" in notices[1].rcpt_to
    await sleep_to(env, start + timedelta(hours=8, minutes=5))
    # Twice the resolution SLA: the CEO. The 10% credit of the monthly fee came with the miss, at 4 hours.
    assert (await escalations(pool, handle.id))[-1] == (4, "ceo")
    credit = await pool.fetchrow("SELECT clock, percent, monthly_fee, amount FROM service_credits")
    assert (credit["clock"], credit["percent"], credit["monthly_fee"], credit["amount"]) == (
        "resolution", Decimal("10.00"), Decimal("12500.00"), Decimal("1250.00"))

    await sleep_to(env, start + timedelta(hours=9, minutes=10))
    await handle.signal(SlaClock.resolved, Resolved(by="Marcus Webb"))
    await env.sleep(timedelta(hours=1))
    updates = [m for m in sink.messages if m.step.startswith("p0-update/")]
    assert len(updates) == 18, [m.step for m in updates]  # every 30 minutes for 9 hours 10 minutes
    assert set(updates[0].rcpt_to) >= {"dana.reyes@acme.example", "lee.park@acme.example"}
    assert "[P0] Update on ticket T-P0" in updates[0].subject
    rca = await pool.fetchrow("SELECT title, owner_email, due_at FROM tasks WHERE workflow_id = $1", handle.id)
    assert rca["owner_email"] == "marcus.webb@tai.example"
    assert near(rca["due_at"], start + timedelta(hours=9 + 24, minutes=10))

    reports = [m for m in sink.messages if m.step.startswith("escalation/")]
    assert [(m.step, m.rcpt_to[0]) for m in reports] == [
        (f"escalation/L{n}/email", LADDER[n][1]) for n in (1, 2, 3, 4)]
    for field in ("ESCALATION REPORT", "Timeline", "Reported:", "First response:", "Severity: P0",
                  "Tier: Enterprise", "Every 30 minutes until resolved"):
        assert field in reports[0].text, field
    result = await handle.result()  # closes after the 7-day reopen window
    assert result.escalation_level == 4 and result.resolution_met is False and result.response_met is True
    row = await pool.fetchrow("SELECT status, response_met, resolution_met, escalation_level FROM sla_tickets")
    assert dict(row) == {"status": "closed", "response_met": True, "resolution_met": False, "escalation_level": 4}


async def test_p2_climbs_to_the_executive_level_on_business_hours_with_a_response_credit(env, worker, pool, settings, sink):
    handle, start = await open_at(env, pool, settings, "T-P2", "P2")
    day = start.astimezone(ET).date()
    at = lambda d, h: datetime.combine(day + timedelta(days=d), time(h), tzinfo=ET)  # noqa: E731
    # Response: 4 business hours from Monday 10:00 -> 14:00; 1.5x -> 16:00; 2x -> 18:00.
    await sleep_to(env, at(0, 13))
    assert await escalations(pool, handle.id) == []
    await sleep_to(env, at(0, 15))
    assert await escalations(pool, handle.id) == [(1, "cs_manager")]
    # Seed 001 section 8.1: a response miss is credited at once, 5% of the $12,500 monthly fee.
    credit = await pool.fetchrow("SELECT clock, amount, reason FROM service_credits")
    assert (credit["clock"], credit["amount"]) == ("response", Decimal("625.00"))
    assert credit["reason"] == "P2 response SLA (4 business hours) missed: SLA reached (response)"
    await sleep_to(env, at(0, 17))
    assert await escalations(pool, handle.id) == [(1, "cs_manager"), (2, "vp_engineering")]
    await sleep_to(env, at(0, 19))
    assert await escalations(pool, handle.id) == [(1, "cs_manager"), (2, "vp_engineering"), (3, "vp_product")]
    credit = await pool.fetchrow("SELECT clock, amount FROM service_credits")
    assert (credit["clock"], credit["amount"]) == ("response", Decimal("625.00"))
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="Casey Morgan"))
    # Resolution: 48 hours (24/7) -> Wednesday 10:00 (a second credit); twice over -> Friday 10:00: no CEO for a P2.
    await sleep_to(env, at(4, 11))
    assert (await escalations(pool, handle.id))[-1] == (3, "vp_product")
    amounts = await pool.fetch("SELECT clock, amount FROM service_credits WHERE kind = 'miss' ORDER BY id")
    assert [(r["clock"], r["amount"]) for r in amounts] == [("response", Decimal("625.00")),
                                                              ("resolution", Decimal("1250.00"))]
    # Two misses in one calendar month (UTC): one more credit, 15% of the monthly fee (section 8.1).
    misses = [at(0, 14).astimezone(timezone.utc), at(2, 10).astimezone(timezone.utc)]
    repeat = await pool.fetch("SELECT amount, missed_at FROM service_credits WHERE kind = 'repeat'")
    if misses[0].month == misses[1].month:
        assert [(r["amount"], r["missed_at"]) for r in repeat] == [(Decimal("1875.00"), misses[1])]
    else:
        assert repeat == []
    assert not [m for m in sink.messages if m.step.startswith("p0-update/")]


async def test_priority_change_replans_from_the_new_targets(env, worker, pool, settings, sink):
    handle, start = await open_at(env, pool, settings, "T-UP", "P3")
    await env.sleep(timedelta(hours=1))
    await handle.signal(SlaClock.priority_changed, PriorityChanged(priority="P1", by="support"))
    await env.sleep(timedelta(minutes=1))
    st = await sla_status(env.client, "T-UP")
    response = next(c for c in st.clocks if c.clock == "response")
    # P1 Enterprise response: 2 business hours, 1 already spent -> due at 12:00.
    assert response.target == "2 business hours" and near(response.due_at, start + timedelta(hours=2))
    assert [(c.from_priority, c.to_priority) for c in st.priority_changes] == [("P3", "P1")]
    await sleep_to(env, start + timedelta(hours=2, minutes=5))
    assert await escalations(pool, handle.id) == [(1, "cs_manager")]
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="Casey Morgan"))
    # A P1 open 4 hours goes to VP Engineering (seed 001 section 9.2).
    await sleep_to(env, start + timedelta(hours=4, minutes=5))
    assert await escalations(pool, handle.id) == [(1, "cs_manager"), (2, "vp_engineering")]
    await handle.signal(SlaClock.priority_changed, PriorityChanged(priority="P0", by="support"))
    await env.sleep(timedelta(minutes=31))
    assert [m.step for m in sink.messages if m.step.startswith("p0-update/")] == ["p0-update/1-1"]
    # Now a P0 open over 4 hours: VP Product at once.
    assert (await escalations(pool, handle.id))[-1] == (3, "vp_product")


async def test_on_hold_stops_both_clocks_and_resume_carries_on(env, worker, pool, settings, sink):
    handle, start = await open_at(env, pool, settings, "T-HOLD", "P2")
    await env.sleep(timedelta(hours=1))
    await handle.signal(SlaClock.on_hold, OnHold(reason="pending customer"))
    await env.sleep(timedelta(days=1))
    st = await sla_status(env.client, "T-HOLD")
    assert st.status == "on_hold" and all(not c.running and c.due_at is None for c in st.clocks)
    assert await escalations(pool, handle.id) == []
    await handle.signal(SlaClock.resumed, Resumed(by="customer"))
    await env.sleep(timedelta(minutes=1))
    st = await sla_status(env.client, "T-HOLD")
    response = next(c for c in st.clocks if c.clock == "response")
    # 1 of 4 business hours spent on Monday; resumed Tuesday 11:00 -> due Tuesday 14:00.
    assert response.elapsed_minutes == 60 and near(response.due_at, start + timedelta(days=1, hours=4))
    await sleep_to(env, start + timedelta(days=1, hours=4, minutes=5))
    assert await escalations(pool, handle.id) == [(1, "cs_manager")]


async def test_reopen_resumes_the_resolution_clock_where_it_stopped(env, worker, pool, settings, sink):
    handle, start = await open_at(env, pool, settings, "T-RE", "P2")
    await env.sleep(timedelta(minutes=30))
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="Casey Morgan"))
    await sleep_to(env, start + timedelta(hours=10))
    await handle.signal(SlaClock.resolved, Resolved(by="Casey Morgan"))
    await sleep_to(env, start + timedelta(days=2))
    row = await pool.fetchrow("SELECT status, resolution_met FROM sla_tickets")
    assert (row["status"], row["resolution_met"]) == ("resolved", True)
    await handle.signal(SlaClock.reopened, Reopened(reason="came back"))
    await env.sleep(timedelta(minutes=1))
    st = await sla_status(env.client, "T-RE")
    resolution = next(c for c in st.clocks if c.clock == "resolution")
    # 10 of 48 hours spent before the resolution; 38 left from the reopen.
    assert st.status == "acknowledged" and resolution.elapsed_minutes == 600
    assert near(resolution.due_at, start + timedelta(days=2, hours=38))
    await sleep_to(env, start + timedelta(days=2, hours=38, minutes=5))
    # Open 24 hours (10 before the resolution, 14 after the reopen): section 3.2's P2 escalation, level 2.
    assert await escalations(pool, handle.id) == [(1, "cs_manager"), (2, "vp_engineering")]
    await handle.signal(SlaClock.resolved, Resolved(by="Casey Morgan"))
    result = await handle.result()
    assert result.reopens == 1 and result.resolution_met is False


async def test_friday_evening_ticket_waits_for_monday_business_hours(env, worker, pool, settings, sink):
    start = await skip_to_next_monday(env)
    friday = datetime.combine(start.astimezone(ET).date() + timedelta(days=4), time(17, 30), tzinfo=ET)
    await sleep_to(env, friday)
    handle = await open_ticket(env.client, pool, settings, "T-FRI", DEMO_ACCOUNT_ID, "P2", "Export fails",
                               friday, "test", settings.task_queue, now=friday)
    await env.sleep(timedelta(minutes=1))
    response = next(c for c in (await sla_status(env.client, "T-FRI")).clocks if c.clock == "response")
    # 30 minutes on Friday, 3.5 hours on Monday from 09:00.
    monday = datetime.combine(friday.date() + timedelta(days=3), time(12, 30), tzinfo=ET)
    assert near(response.due_at, monday)
    await sleep_to(env, monday + timedelta(minutes=5))
    # Open 24 hours on Saturday 17:30 (section 3.2's P2 escalation runs 24/7): level 2 before Monday.
    assert await escalations(pool, handle.id) == [(1, "cs_manager"), (2, "vp_engineering")]


async def test_bad_tickets_are_refused_and_start_nothing(env, worker, pool, settings):
    now = await env.get_current_time()
    cases = [
        ("bad id!", DEMO_ACCOUNT_ID, "P1", "x", None, 422, "ticket id"),
        ("T-1", DEMO_ACCOUNT_ID, "P5", "x", None, 422, "priority 'P5'"),
        ("T-1", "nobody", "P1", "x", None, 404, "unknown account 'nobody'"),
        ("T-1", DEMO_ACCOUNT_ID, "P1", "  ", None, 422, "subject"),
        ("T-1", DEMO_ACCOUNT_ID, "P1", "x", now.replace(tzinfo=None), 422, "time zone"),
        ("T-1", DEMO_ACCOUNT_ID, "P1", "x", now + timedelta(days=9000), 422, "in the future"),
    ]
    for ticket_id, account, priority, subject, opened, code, text in cases:
        with pytest.raises(SteeringError) as refused:
            await open_ticket(env.client, pool, settings, ticket_id, account, priority, subject, opened, "test",
                              settings.task_queue, now=now)
        assert refused.value.status == code and text in str(refused.value), (ticket_id, str(refused.value))
    with pytest.raises(SteeringError) as missing:
        await sla_status(env.client, "T-1")
    assert missing.value.status == 404
    assert await pool.fetchval("SELECT count(*) FROM sla_tickets") == 0


async def test_the_monthly_report_is_scheduled_on_the_2nd_and_sent_once_a_month(env, worker, pool, settings, sink):
    """Seed 001 section 8.1: "Monthly SLA report (on 2nd of month for prior month)", to the CS manager
    and VP Customer Success (sla.yaml `report.to`)."""
    from playbooks.loader import load_named
    from starter.schedules import sla_report_schedule
    from tests.conftest import eventually
    from workflows.sla_messages import SlaReportInput
    from workflows.sla_report import MonthlySlaReport

    spec = sla_report_schedule(settings).spec
    days, hours = spec.calendars[0].day_of_month, spec.calendars[0].hour
    assert ([r.start for r in days], [r.start for r in hours], spec.time_zone_name) == ([2], [8], "America/New_York")
    handle, start = await open_at(env, pool, settings, "T-REP", "P2")
    await eventually(lambda: pool.fetchval("SELECT 1 FROM sla_tickets WHERE ticket_id = 'T-REP'"), "the ticket's row")
    month = start.astimezone(ET).date().replace(day=1)
    run = lambda n: env.client.execute_workflow(  # noqa: E731
        MonthlySlaReport.run, SlaReportInput(playbook=load_named("sla"), month=month), id=f"sla-report-{n}",
        task_queue=settings.task_queue)
    first = await run(1)
    assert first == {"month": f"{month:%Y-%m}", "tickets": 1, "already_sent": False}
    reports = [m for m in sink.messages if m.step == "report"]
    assert len(reports) == 1 and "diana.hoang@tai.example" in reports[0].rcpt_to
    assert (await run(2))["already_sent"] is True
    assert len([m for m in sink.messages if m.step == "report"]) == 1
