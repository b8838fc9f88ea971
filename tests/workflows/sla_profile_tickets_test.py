"""One whole ticket per organisation profile on the time-skipping server (issue 19), and seed 001's
section 3.2 rules that name a role or send their own notice. Expectations are computed by hand from
each profile's sla.yaml (see tests/workflows/sla_profile_matrix_test.py for the cells).

The demo account has an ARR of $150,000 (a monthly fee of 12,500.00 in its currency). Its tier is the
profile's: Enterprise in vmcloud (by MRR in euros), Fortune 500 in ma_suite; slavkokernel and
vkcloud take the tier the CRM states (set here). Tickets open on the next working Monday, 10:00 New
York time; every profile timer below is relative to that instant, except SlavkoKernel's Premium
hours (New York, 07:00-21:00 on weekdays, the same Monday).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from starter.demo import DEMO_ACCOUNT_ID
from starter.steering import open_ticket
from tests.conftest import eventually
from tests.workflows.play_driver import skip_to_next_monday
from workflows.sla import SlaClock
from workflows.sla_messages import Acknowledged, Resolved

FEE = Decimal("12500.00")


async def sleep_to(env, moment: datetime) -> None:
    now = await env.get_current_time()
    assert moment > now, f"cannot go back to {moment}"
    await env.sleep(moment - now)


async def escalations(pool, workflow_id: str) -> list[tuple[int, str]]:
    rows = await pool.fetch("SELECT level, to_role FROM escalations WHERE workflow_id = $1 ORDER BY id", workflow_id)
    return [(r["level"], r["to_role"]) for r in rows]


async def open_under(env, pool, settings, profile: str, ticket_id: str, priority: str, crm_tier: str | None = None,
                     start: datetime | None = None):
    if crm_tier is not None:
        await pool.execute("UPDATE accounts SET crm_tier = $1 WHERE id = $2", crm_tier, DEMO_ACCOUNT_ID)
    chosen = settings.model_copy(update={"profile": profile})
    start = start or await skip_to_next_monday(env)
    handle = await open_ticket(env.client, pool, chosen, ticket_id, DEMO_ACCOUNT_ID, priority, "Cluster unreachable",
                               start, "test", settings.task_queue, now=start)
    return handle, start


def found(pick):
    """An awaitable check for `eventually` of what `pick` finds now (in the SMTP sink)."""
    async def check():
        return pick()
    return check


def notices(sink) -> list:
    return [m for m in sink.messages if m.step.endswith("/notify")]


# -- seed 001 (tai): section 3.2 rules ------------------------------------------------------------
async def test_tai_p0_reaches_vp_engineering_at_once_on_every_tier_and_the_coo_at_2_hours(env, worker, pool,
                                                                                          settings, sink):
    start = await skip_to_next_monday(env)
    mid, _ = await open_under(env, pool, settings, "tai", "T-MID", "P0", "Mid-Market", start)
    await env.sleep(timedelta(minutes=5))
    # Mid-Market ladder [csm, cs_manager, vp_engineering, vp_product]: level 2 and VP Engineering (level 3).
    assert await escalations(pool, mid.id) == [(1, "csm"), (2, "cs_manager"), (3, "vp_engineering")]
    await pool.execute("UPDATE accounts SET crm_tier = 'Starter' WHERE id = $1", DEMO_ACCOUNT_ID)
    starter, _ = await open_under(env, pool, settings, "tai", "T-STARTER", "P0",
                                  start=await env.get_current_time())
    # Starter ladder [support_team, csm, cs_manager]: level 2, then VP Engineering off the ladder.
    await eventually(lambda: _at_least(pool, starter.id, 3), "the Starter P0's escalations")
    assert await escalations(pool, starter.id) == [(1, "support_team"), (2, "csm"), (2, "vp_engineering")]
    await sleep_to(env, start + timedelta(hours=2, minutes=10))
    coo = [m for m in notices(sink) if "coo@tai.example" in m.rcpt_to]
    assert len(coo) == 2, [(m.step, m.rcpt_to) for m in notices(sink)]
    assert all("Unresolved 2 hours" in m.subject and m.step == "ladder/8/notify" for m in coo)
    assert "still unresolved" in coo[0].text
    for handle in (mid, starter):
        await handle.signal(SlaClock.resolved, Resolved(by="test"))


async def _at_least(pool, workflow_id: str, n: int) -> bool:
    return await pool.fetchval("SELECT count(*) FROM escalations WHERE workflow_id = $1", workflow_id) >= n


async def test_tai_p1_alerts_the_team_when_opened(env, worker, pool, settings, sink):
    handle, start = await open_under(env, pool, settings, "tai", "T-P1-ALERT", "P1")
    alert = await eventually(found(lambda: next((m for m in sink.messages if m.step == "ladder/9/notify"), None)),
                             "the P1 alert")
    assert list(alert.rcpt_to) == ["support@tai.example"] and "[P1] New ticket T-P1-ALERT" in alert.subject
    assert await escalations(pool, handle.id) == []  # the alert climbs nothing
    await handle.signal(SlaClock.resolved, Resolved(by="test"))


# -- seed 004 (vmcloud) ----------------------------------------------------------------------------
async def test_vmcloud_p1_tickets_go_to_the_sre_at_once_the_founder_at_2_hours_credits_capped(env, worker, pool,
                                                                                               settings, sink):
    a, start = await open_under(env, pool, settings, "vmcloud", "T-VM-A", "P1")
    b, _ = await open_under(env, pool, settings, "vmcloud", "T-VM-B", "P1", start=start)
    row = await eventually(lambda: pool.fetchrow("SELECT tier, response_due_at, resolution_due_at FROM sla_tickets "
                                                 "WHERE ticket_id = 'T-VM-A'"), "the ticket's row")
    # Enterprise P1: 30 minutes and 2 hours, round the clock (on-call SRE).
    assert (row["tier"], row["response_due_at"], row["resolution_due_at"]) == (
        "Enterprise", start + timedelta(minutes=30), start + timedelta(hours=2))
    await env.sleep(timedelta(minutes=5))
    # Section 3.2 "auto vers SRE": the SRE is level 2 of [cre, sre, founder].
    assert await escalations(pool, a.id) == [(1, "cre"), (2, "sre")]
    await sleep_to(env, start + timedelta(minutes=35))
    # Section 3.3: first response missed, 5 % of the monthly fee, each ticket.
    assert sorted(r["amount"] for r in await pool.fetch("SELECT amount FROM service_credits")) == [
        Decimal("625.00"), Decimal("625.00")]
    await sleep_to(env, start + timedelta(hours=2, minutes=5))
    assert await escalations(pool, a.id) == [(1, "cre"), (2, "sre"), (3, "founder")]
    # P1 resolution missed, 10 % each; the month's credits are capped at 25 % (3,125.00): the second
    # resolution credit is cut from 1,250.00 to 625.00, with the reason.
    credits = await pool.fetch("SELECT clock, amount, reason FROM service_credits ORDER BY id")
    assert sorted(r["amount"] for r in credits) == [Decimal("625.00")] * 3 + [Decimal("1250.00")]
    assert sum(r["amount"] for r in credits) == FEE / 4
    cut = [r for r in credits if r["clock"] == "resolution" and r["amount"] == Decimal("625.00")]
    assert len(cut) == 1 and "capped at 25% of the monthly fee (3125.00)" in cut[0]["reason"]
    # French e-mails: the customer's hourly updates and the escalation reports.
    updates = [m for m in sink.messages if m.step.startswith("p0-update/")]
    assert updates and "[P1] Point sur le ticket" in updates[0].subject and "Bonjour" in updates[0].text
    reports = [m for m in sink.messages if m.step.startswith("escalation/")]
    assert reports and all("RAPPORT D'ESCALADE" in m.text for m in reports)
    await sleep_to(env, start + timedelta(hours=2, minutes=30))
    for handle in (a, b):
        await handle.signal(SlaClock.resolved, Resolved(by="test"))
    # Section 6.1: closed 72 hours after resolution without a reply; the post-mortem task goes to the SRE.
    result = await a.result()
    assert result.escalation_level == 3 and result.resolution_met is False
    assert await pool.fetchval("SELECT status FROM sla_tickets WHERE ticket_id = 'T-VM-A'") == "closed"
    task = await pool.fetchrow("SELECT title, owner_role FROM tasks WHERE workflow_id = $1", a.id)
    assert (task["title"], task["owner_role"]) == ("Post-mortem de l'incident P1: ticket T-VM-A", "sre")
    await b.result()


# -- seed 002 (slavkokernel) -----------------------------------------------------------------------
async def test_slavkokernel_premium_p1_notifies_management_at_once_and_escalates_at_the_sla(env, worker, pool,
                                                                                           settings, sink):
    handle, start = await open_under(env, pool, settings, "slavkokernel", "T-SK", "P1", "Premium")
    # "Immediate management notification".
    notice = await eventually(found(lambda: next((m for m in notices(sink)), None)), "the management notification")
    assert notice.step == "ladder/2/notify" and list(notice.rcpt_to) == ["support.manager@slavkokernel.example"]
    await sleep_to(env, start + timedelta(hours=1))
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="test"))  # response within its 2 business hours
    # Premium P1 resolution: 4 business hours (07-21 New York): 14:00. Its breach goes to the Support
    # Manager (Escalation Matrix "Management"), twice the target (18:00) to VP Customer Success.
    await sleep_to(env, start + timedelta(hours=4, minutes=5))
    assert await escalations(pool, handle.id) == [(1, "support_manager")]
    await sleep_to(env, start + timedelta(hours=8, minutes=5))
    assert await escalations(pool, handle.id) == [(1, "support_manager"), (1, "vp_customer_success")]
    assert await pool.fetchval("SELECT count(*) FROM service_credits") == 0  # no credits in seed 002
    await sleep_to(env, start + timedelta(hours=8, minutes=30))
    await handle.signal(SlaClock.resolved, Resolved(by="test"))
    result = await handle.result()  # the verification day, then closed
    assert (result.response_met, result.resolution_met) == (True, False)
    updates = [m for m in sink.messages if m.step.startswith("p0-update/")]
    assert len(updates) == 8, [m.step for m in updates]  # hourly, 11:00 to 18:00
    task = await pool.fetchrow("SELECT title, owner_role, due_at FROM tasks WHERE workflow_id = $1", handle.id)
    assert task["owner_role"] == "support_engineer" and task["title"].startswith("Knowledge capture")
    assert abs((task["due_at"] - (start + timedelta(hours=8 + 48, minutes=30))).total_seconds()) < 2


# -- seed 000 (vkcloud) ----------------------------------------------------------------------------
async def test_vkcloud_standard_p1_climbs_its_default_ladder_with_a_capped_credit(env, worker, pool, settings, sink):
    handle, start = await open_under(env, pool, settings, "vkcloud", "T-VK", "P1", "Standard")
    await env.sleep(timedelta(minutes=5))
    # "Emergency escalation": the shift lead (level 2 of its ladder) at once.
    assert await escalations(pool, handle.id) == [(1, "support_engineer"), (2, "shift_lead")]
    await sleep_to(env, start + timedelta(hours=1))
    await handle.signal(SlaClock.acknowledged, Acknowledged(by="test"))
    # Standard P1 resolution: 4 business hours of the 24/7 shifts: the credit (2 %) and the shift
    # lead's breach notice; twice the target (8 hours): level 4 for a P1.
    await sleep_to(env, start + timedelta(hours=4, minutes=5))
    credit = await pool.fetchrow("SELECT clock, percent, amount FROM service_credits")
    assert (credit["clock"], credit["percent"], credit["amount"]) == ("resolution", Decimal("2.00"), Decimal("250.00"))
    breach = [m for m in notices(sink)]
    assert [m.step for m in breach] == ["ladder/0/resolution/notify"]
    assert breach[0].rcpt_to[0] == "shift.lead@vkcloud.example"
    await sleep_to(env, start + timedelta(hours=8, minutes=5))
    assert await escalations(pool, handle.id) == [(1, "support_engineer"), (2, "shift_lead"),
                                                  (3, "senior_engineer"), (4, "director_operations")]
    await handle.signal(SlaClock.resolved, Resolved(by="test"))
    result = await handle.result()
    assert result.escalation_level == 4 and result.credits == {"resolution": 2.0}


# -- seed 003 (ma_suite) ---------------------------------------------------------------------------
async def test_ma_suite_critical_climbs_tier_1_to_4_round_the_clock(env, worker, pool, settings, sink):
    handle, start = await open_under(env, pool, settings, "ma_suite", "T-MA", "Critical")
    alert = await eventually(found(lambda: next((m for m in notices(sink)), None)), "the executive's alert")
    assert alert.step == "ladder/3/notify" and list(alert.rcpt_to) == ["tier4.executive@ma-suite.example"]
    # Response < 1 hour (24/7): Tier 2 at 1 hour, Tier 3 (and the executive's breach notice) at 1.5,
    # Tier 4 at 2 hours for a Critical ticket.
    await sleep_to(env, start + timedelta(hours=1, minutes=5))
    assert await escalations(pool, handle.id) == [(1, "tier1_support"), (2, "tier2_support")]
    await sleep_to(env, start + timedelta(hours=1, minutes=35))
    assert (await escalations(pool, handle.id))[-1] == (3, "tier3_engineering")
    assert [m.step for m in notices(sink)] == ["ladder/3/notify", "ladder/1/response/notify"]
    await sleep_to(env, start + timedelta(hours=2, minutes=5))
    assert (await escalations(pool, handle.id))[-1] == (4, "tier4_executive")
    await sleep_to(env, start + timedelta(hours=3))
    await handle.signal(SlaClock.resolved, Resolved(by="test"))  # within the 4-hour resolution
    result = await handle.result()
    assert (result.response_met, result.resolution_met, result.credits) == (False, True, {})
    task = await pool.fetchrow("SELECT owner_role FROM tasks WHERE workflow_id = $1", handle.id)
    assert task["owner_role"] == "tier3_engineering"
