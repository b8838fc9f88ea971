"""Support tickets under an SLA clock, the service credits they earn, and the
monthly attainment report (seed 001 section 8.1)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import asyncpg
from temporalio import activity

from activities.accounts import account_for_activity, fetch_staff
from activities.common import play_logger
from activities.email import resolve_roles, send_report
from activities.play_events import PlayEvent, record_events
from core.models import EmailTemplate, ServiceCreditRequest, SlaReportRequest, TicketRecord
from core.settings import Settings

CENT = Decimal("0.01")


def monthly_fee(arr: Decimal) -> Decimal:
    return (arr / 12).quantize(CENT, ROUND_HALF_UP)


class SlaActivities:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @activity.defn(name="record_ticket")
    async def record_ticket(self, t: TicketRecord) -> None:
        """Write the ticket's current state (the play owns the row; writing the same state twice is harmless)."""
        await self.pool.execute(
            """
            INSERT INTO sla_tickets (ticket_id, workflow_id, account_id, tier, priority, subject, status,
                opened_at, acknowledged_at, resolved_at, response_due_at, resolution_due_at,
                response_met, resolution_met, escalation_level)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
            ON CONFLICT (ticket_id) DO UPDATE SET
                priority = EXCLUDED.priority, subject = EXCLUDED.subject, status = EXCLUDED.status,
                acknowledged_at = EXCLUDED.acknowledged_at, resolved_at = EXCLUDED.resolved_at,
                response_due_at = EXCLUDED.response_due_at, resolution_due_at = EXCLUDED.resolution_due_at,
                response_met = EXCLUDED.response_met, resolution_met = EXCLUDED.resolution_met,
                escalation_level = EXCLUDED.escalation_level, updated_at = now()
            """,
            t.ticket_id, t.play.workflow_id, t.play.account_id, t.tier, t.priority, t.subject, t.status,
            t.opened_at, t.acknowledged_at, t.resolved_at, t.response_due_at, t.resolution_due_at,
            t.response_met, t.resolution_met, t.escalation_level,
        )
        incident = t.incident if t.incident is not None else t.priority == "P0"
        if incident:
            # Once per play: a ticket raised to P0, or opened at it, is an incident (seed 001 section 3.2).
            await record_events(self.pool, [PlayEvent.of_play(
                t.play, "ticket.incident", f"incident/{t.ticket_id}", step=None, occurred_at=datetime.now(timezone.utc),
                title=f"{t.priority} incident: ticket {t.ticket_id}: {t.subject}", severity=t.priority,
                data={"ticket_id": t.ticket_id, "subject": t.subject, "status": t.status, "tier": t.tier,
                      "opened_at": t.opened_at, "response_due_at": t.response_due_at,
                      "resolution_due_at": t.resolution_due_at})])

    @activity.defn(name="record_service_credit")
    async def record_service_credit(self, req: ServiceCreditRequest) -> Decimal:
        """Issue the credit once per (ticket, clock); returns its amount (currency units). Then the
        account's repeat-miss rules, when the request carries them (`repeat_misses`, `review_misses`):
        see `_repeat_misses`."""
        account = await account_for_activity(self.pool, req.play.account_id)
        fee = monthly_fee(account.arr)
        amount = (fee * Decimal(str(req.percent)) / 100).quantize(CENT, ROUND_HALF_UP)
        key = req.play.key(req.step)
        async with self.pool.acquire() as conn, conn.transaction():
            # One account's misses are counted one at a time: two tickets missing at once both count.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('sla-credits/' || $1))", account.id)
            reason = req.reason
            if req.cap_percent is not None:
                amount, reason = await _capped(conn, req, account.id, fee, amount, key)
            await conn.execute(
                """
                INSERT INTO service_credits (idem_key, workflow_id, play_id, ticket_id, account_id, clock,
                                             percent, monthly_fee, amount, reason, missed_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (idem_key) DO NOTHING
                """,
                key, req.play.workflow_id, req.play.play_id, req.ticket_id, req.play.account_id, req.clock,
                Decimal(str(req.percent)), fee, amount, reason, req.missed_at,
            )
            row = await conn.fetchrow(
                "SELECT amount, coalesce(missed_at, created_at) AS at FROM service_credits WHERE idem_key = $1", key)
            amount = row["amount"]
            if req.repeat_misses or req.review_misses:
                await _repeat_misses(conn, req, account, fee, row["at"])
        play_logger("sla", req.play, req.step).warning(
            "sla.service_credit", clock=req.clock, percent=req.percent, amount=str(amount)
        )
        return amount


async def _capped(conn: asyncpg.Connection, req: ServiceCreditRequest, account_id: str, fee: Decimal,
                  amount: Decimal, key: str) -> tuple[Decimal, str]:
    """Seed 004 section 3.3 ("Multiple breaches/mois : 25% crédit max"): the credit, cut so that the
    account's credits of the calendar month (UTC) of the miss stay within `cap_percent` of the monthly
    fee; (amount, reason), the reason saying when it was cut. The caller holds the account's lock."""
    at = (req.missed_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    start = datetime(at.year, at.month, 1, tzinfo=timezone.utc)
    end = datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=timezone.utc)
    so_far = await conn.fetchval(
        """
        SELECT coalesce(sum(amount), 0) FROM service_credits
        WHERE account_id = $1 AND idem_key <> $2
          AND coalesce(missed_at, created_at) >= $3 AND coalesce(missed_at, created_at) < $4
        """,
        account_id, key, start, end,
    )
    cap = (fee * Decimal(str(req.cap_percent)) / 100).quantize(CENT, ROUND_HALF_UP)
    left = max(cap - Decimal(so_far), Decimal("0.00"))
    if amount <= left:
        return amount, req.reason
    return left, (f"{req.reason}; cut from {amount} to {left}: credits of {at:%Y-%m} are capped at "
                  f"{req.cap_percent:g}% of the monthly fee ({cap})")


async def _repeat_misses(conn: asyncpg.Connection, req: ServiceCreditRequest, account, fee: Decimal,
                         at: datetime) -> None:
    """Seed 001 section 8.1, for the account of a miss recorded at `at`: with `repeat_misses` or more
    missed clocks (any ticket, either clock) in that calendar month (UTC), one repeat-miss credit of
    `repeat_percent` of the monthly fee, once a month (recorded with this ticket, kind `repeat`);
    with `review_misses` or more in that calendar quarter, a review task for `review_owner_role`,
    once a quarter. Both idempotent (keyed by account and period); the caller holds the account's lock."""
    at = at.astimezone(timezone.utc)
    month = f"{at:%Y-%m}"
    quarter = f"{at.year}-Q{(at.month - 1) // 3 + 1}"
    month_start = datetime(at.year, at.month, 1, tzinfo=timezone.utc)
    quarter_start = datetime(at.year, 3 * ((at.month - 1) // 3) + 1, 1, tzinfo=timezone.utc)
    counts = await conn.fetchrow(
        """
        SELECT count(*) FILTER (WHERE coalesce(missed_at, created_at) >= $2) AS month, count(*) AS quarter
        FROM service_credits
        WHERE account_id = $1 AND kind = 'miss'
          AND coalesce(missed_at, created_at) >= $3 AND coalesce(missed_at, created_at) <= $4
        """,
        account.id, month_start, quarter_start, at,
    )
    if req.repeat_misses and req.repeat_percent and counts["month"] >= req.repeat_misses:
        amount = (fee * Decimal(str(req.repeat_percent)) / 100).quantize(CENT, ROUND_HALF_UP)
        await conn.execute(
            """
            INSERT INTO service_credits (idem_key, workflow_id, play_id, ticket_id, account_id, clock,
                                         percent, monthly_fee, amount, reason, kind, missed_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'repeat', $11) ON CONFLICT (idem_key) DO NOTHING
            """,
            f"sla-repeat/{account.id}/{month}", req.play.workflow_id, req.play.play_id, req.ticket_id, account.id,
            req.clock, Decimal(str(req.repeat_percent)), fee, amount,
            f"{counts['month']} missed SLA clocks in {month}: repeat-miss credit", at,
        )
    if req.review_misses and req.review_title and counts["quarter"] >= req.review_misses:
        owners = resolve_roles([req.review_owner_role], account, await fetch_staff(conn)) if req.review_owner_role else []
        await conn.execute(
            """
            INSERT INTO tasks (idem_key, workflow_id, play_id, step, account_id, title, detail, owner_role,
                               owner_email, due_at, priority)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'P1') ON CONFLICT (idem_key) DO NOTHING
            """,
            f"sla-review/{account.id}/{quarter}", req.play.workflow_id, req.play.play_id, f"review/{quarter}",
            account.id, f"{req.review_title}: {account.name}",
            f"{counts['quarter']} missed SLA clocks in {quarter} (the latest: ticket {req.ticket_id}, {req.clock}).",
            req.review_owner_role, str(owners[0].email) if owners else None,
            at + timedelta(days=req.review_due_days),
        )


def _pct(part: int, whole: int) -> float:
    return round(100 * part / whole, 1) if whole else 100.0


async def sla_attainment(pool: asyncpg.Pool, month: date, tiers: tuple[str, ...] | None = None) -> dict:
    """Tickets opened in `month` (New York time), by tier and priority: how many
    were answered and resolved within SLA, how many are still open, credits owed.
    Rows in the order of `tiers` (default: the active organisation profile's), then priority."""
    if tiers is None:
        from playbooks.profiles import active_profile

        tiers = active_profile().tier_names
    rows = await pool.fetch(
        """
        WITH t AS (
            SELECT * FROM sla_tickets
            WHERE date_trunc('month', opened_at AT TIME ZONE 'America/New_York') = $1::date
        )
        SELECT t.tier, t.priority, count(*) AS tickets,
               count(*) FILTER (WHERE t.response_met) AS response_met,
               count(*) FILTER (WHERE t.resolution_met) AS resolution_met,
               count(*) FILTER (WHERE t.status NOT IN ('resolved', 'closed')) AS open,
               coalesce(sum((SELECT sum(amount) FROM service_credits c WHERE c.ticket_id = t.ticket_id)), 0)
                   AS credits
        FROM t GROUP BY t.tier, t.priority
        ORDER BY array_position($2::text[], t.tier), t.tier, t.priority
        """,
        month.replace(day=1), list(tiers),
    )
    out = [
        {
            "tier": r["tier"], "priority": r["priority"], "tickets": r["tickets"],
            "response_met": r["response_met"], "response_pct": _pct(r["response_met"], r["tickets"]),
            "resolution_met": r["resolution_met"], "resolution_pct": _pct(r["resolution_met"], r["tickets"]),
            "open": r["open"], "credits": Decimal(r["credits"]).quantize(CENT),
        }
        for r in rows
    ]
    tickets = sum(r["tickets"] for r in out)
    return {
        "month": month.strftime("%Y-%m"),
        "rows": out,
        "totals": {
            "tickets": tickets,
            "response_pct": _pct(sum(r["response_met"] for r in out), tickets),
            "resolution_pct": _pct(sum(r["resolution_met"] for r in out), tickets),
            "credits": sum((r["credits"] for r in out), Decimal("0.00")),
        },
    }


async def send_sla_report(pool: asyncpg.Pool, settings: Settings, month: date, template: EmailTemplate,
                          to: list[str]) -> tuple[dict, bool]:
    """E-mail the month's attainment to CS leadership, once per month; (report, already sent before)."""
    report = await sla_attainment(pool, month)
    return report, await send_report(pool, settings, "sla", report["month"], template, to, report)


class SlaReportActivities:
    """The monthly SLA report, run by its Temporal Schedule (starter/schedules.py)."""

    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool, self.settings = pool, settings

    @activity.defn(name="send_sla_report")
    async def send_monthly_report(self, req: SlaReportRequest) -> dict:
        """E-mail the attainment of the tickets opened in `req.month` to `req.to` (staff roles), once
        per month (the communication log keys it by month); the month and its totals."""
        report, already = await send_sla_report(self.pool, self.settings, req.month, req.template, req.to)
        return {"month": report["month"], "tickets": report["totals"]["tickets"], "already_sent": already}
