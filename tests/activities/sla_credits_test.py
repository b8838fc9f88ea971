"""Service credits per miss and for repeat misses (issue 19; seed 001 section 8.1), against
hand-computed figures. The demo account `acme` is Enterprise with an ARR of $150,000: a monthly fee
of $12,500, so 5% is $625, 10% $1,250 and the 15% repeat-miss credit $1,875. Mid-Market's repeat
credit is 10% and its quarterly review goes to VP Engineering; Starter has neither ("no credits for
repeat misses").

Misses are counted by when the clock passed its target (`missed_at`), per calendar month and
quarter in UTC, across the account's tickets and both clocks.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from activities.sla import SlaActivities
from core.models import PlayRef, ServiceCreditRequest
from playbooks.loader import load_named

UTC = timezone.utc
ENTERPRISE = load_named("sla").content.tiers["Enterprise"].credits


def miss(ticket: str, clock: str, at: datetime, rates=ENTERPRISE) -> ServiceCreditRequest:
    play = PlayRef(workflow_id=f"sla-{ticket}", play_id=f"run-{ticket}", account_id="acme")
    repeat, review = rates.repeat, rates.review
    return ServiceCreditRequest(
        play=play, step=f"credit/{clock}", ticket_id=ticket, clock=clock, percent=getattr(rates, clock),
        reason=f"{clock} missed", missed_at=at,
        repeat_misses=repeat.misses if repeat else None, repeat_percent=repeat.percent if repeat else None,
        review_misses=review.misses if review else None, review_title=review.title if review else None,
        review_owner_role=review.owner_role if review else None, review_due_days=review.due_days if review else 7)


async def tickets(pool, *ids: str) -> None:
    for tid in ids:
        await pool.execute(
            "INSERT INTO sla_tickets (ticket_id, workflow_id, account_id, tier, priority, subject, status, opened_at)"
            " VALUES ($1, $2, 'acme', 'Enterprise', 'P2', 's', 'open', $3)",
            tid, f"sla-{tid}", datetime(2027, 3, 1, tzinfo=UTC))


async def credits(pool) -> list[tuple[str, str, Decimal]]:
    rows = await pool.fetch("SELECT kind, ticket_id, amount FROM service_credits ORDER BY id")
    return [(r["kind"], r["ticket_id"], r["amount"]) for r in rows]


async def reviews(pool) -> list[tuple[str, str | None, datetime]]:
    rows = await pool.fetch("SELECT step, owner_email, due_at FROM tasks WHERE step LIKE 'review/%' ORDER BY id")
    return [(r["step"], r["owner_email"], r["due_at"]) for r in rows]


def test_the_shipped_rules_follow_section_8_1():
    tiers = load_named("sla").content.tiers
    assert (ENTERPRISE.response, ENTERPRISE.resolution, ENTERPRISE.repeat.misses, ENTERPRISE.repeat.percent) == (
        5, 10, 2, 15)
    assert (ENTERPRISE.review.misses, ENTERPRISE.review.owner_role) == (3, "vp_customer_success")
    mid = tiers["Mid-Market"].credits
    assert (mid.response, mid.resolution, mid.repeat.percent, mid.review.misses, mid.review.owner_role) == (
        3, 5, 10, 3, "vp_engineering")
    starter = tiers["Starter"].credits
    assert (starter.response, starter.resolution, starter.repeat, starter.review) == (1, 2, None, None)


async def test_a_second_miss_in_a_month_earns_the_repeat_credit_once(pool):
    await tickets(pool, "T1", "T2", "T3")
    sla = SlaActivities(pool)
    assert await sla.record_service_credit(miss("T1", "response", datetime(2027, 4, 2, 14, tzinfo=UTC))) == Decimal(
        "625.00")
    assert await credits(pool) == [("miss", "T1", Decimal("625.00"))]
    await sla.record_service_credit(miss("T2", "resolution", datetime(2027, 4, 20, 9, tzinfo=UTC)))
    assert await credits(pool) == [("miss", "T1", Decimal("625.00")), ("miss", "T2", Decimal("1250.00")),
                                   ("repeat", "T2", Decimal("1875.00"))]
    # A third miss that month, and the second one again (a retried activity): no second repeat credit.
    await sla.record_service_credit(miss("T3", "response", datetime(2027, 4, 29, 9, tzinfo=UTC)))
    await sla.record_service_credit(miss("T2", "resolution", datetime(2027, 4, 20, 9, tzinfo=UTC)))
    assert [k for k, _, _ in await credits(pool)] == ["miss", "miss", "repeat", "miss"]
    reason = await pool.fetchval("SELECT reason FROM service_credits WHERE kind = 'repeat'")
    assert reason == "2 missed SLA clocks in 2027-04: repeat-miss credit"


async def test_misses_in_two_months_earn_no_repeat_credit(pool):
    await tickets(pool, "T1", "T2")
    sla = SlaActivities(pool)
    # 31 March 23:30 and 1 April 00:30 UTC: two months, one each.
    await sla.record_service_credit(miss("T1", "response", datetime(2027, 3, 31, 23, 30, tzinfo=UTC)))
    await sla.record_service_credit(miss("T2", "response", datetime(2027, 4, 1, 0, 30, tzinfo=UTC)))
    assert [k for k, _, _ in await credits(pool)] == ["miss", "miss"]
    assert await reviews(pool) == []


async def test_a_third_miss_in_a_quarter_gets_the_executive_review_once(pool):
    await tickets(pool, "T1", "T2", "T3", "T4")
    sla = SlaActivities(pool)
    # April, May, June 2027: one miss a month (no repeat credit), three in Q2.
    await sla.record_service_credit(miss("T1", "response", datetime(2027, 4, 5, tzinfo=UTC)))
    await sla.record_service_credit(miss("T2", "response", datetime(2027, 5, 5, tzinfo=UTC)))
    assert await reviews(pool) == []
    third = datetime(2027, 6, 5, tzinfo=UTC)
    await sla.record_service_credit(miss("T3", "response", third))
    vp_cs = await pool.fetchval("SELECT email FROM staff WHERE role = 'vp_customer_success'")
    assert await reviews(pool) == [("review/2027-Q2", vp_cs, third + timedelta(days=7))]
    title = await pool.fetchval("SELECT title FROM tasks WHERE step = 'review/2027-Q2'")
    assert title.startswith("Executive review and process improvement plan") and title.endswith("Acme Logistics")
    await sla.record_service_credit(miss("T4", "resolution", datetime(2027, 6, 6, tzinfo=UTC)))
    assert len(await reviews(pool)) == 1  # once a quarter
    assert [k for k, _, _ in await credits(pool)] == ["miss", "miss", "miss", "miss", "repeat"]  # June: 2 misses


@pytest.mark.parametrize("tier", ["Starter"])
async def test_starter_has_no_repeat_miss_rules(pool, tier):
    await tickets(pool, "T1", "T2", "T3")
    sla = SlaActivities(pool)
    rates = load_named("sla").content.tiers[tier].credits
    for n, tid in enumerate(("T1", "T2", "T3")):
        await sla.record_service_credit(miss(tid, "resolution", datetime(2027, 4, 5 + n, tzinfo=UTC), rates))
    assert [(k, a) for k, _, a in await credits(pool)] == [("miss", Decimal("250.00"))] * 3  # 2% of $12,500
    assert await reviews(pool) == []


async def test_the_database_takes_any_profile_s_tiers_and_priorities(pool):
    """Migration 0041: the tier and priority columns check their form, not seed 001's lists."""
    await pool.execute(
        "INSERT INTO sla_tickets (ticket_id, workflow_id, account_id, tier, priority, subject, status, opened_at)"
        " VALUES ('T-WG', 'sla-T-WG', 'acme', 'White Glove', 'P4', 's', 'open', now())")
    await pool.execute("UPDATE accounts SET crm_tier = 'Fortune 500' WHERE id = 'acme'")
    await pool.execute(
        "INSERT INTO escalations (idem_key, workflow_id, play_id, step, account_id, level, to_role, to_email,"
        " from_role, severity, title, reason) VALUES ('k', 'w', 'p', 's', 'acme', 1, 'cs_manager', 'x@y.z', 'csm',"
        " 'Critical', 't', 'r')")
    import asyncpg

    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE sla_tickets SET tier = ' leading space' WHERE ticket_id = 'T-WG'")
