"""Accounts, their people, and our staff by role."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
from temporalio import activity

from activities.addresses import AddressProblem, parse_address
from activities.common import not_retryable, play_logger
from core.logs import get_logger
from core.holiday_calendars import work_calendar
from core.models import (
    Account, CalendarPlace, Contact, Person, PlayCalendars, PlayContext, PlayContextRequest, RenewalOutcomeRequest,
    StaffMember,
)

log = get_logger("accounts")


class AccountNotFound(LookupError):
    def __init__(self, account_id: str):
        self.account_id = account_id
        super().__init__(f"unknown account {account_id!r}")


def _usable(cls, what: str, account_id: str, name: str, email: str, **fields):
    """The person, or None when the stored address is not one (it was refused at import; older rows may
    hold one): a play must not fail, nor retry for ever, over one bad address. Checked with the mail
    code's own parser (cached: a survey batch builds a thousand accounts), then built unvalidated."""
    try:
        parse_address(email, name)
    except AddressProblem:
        log.warning("account.unusable_address", account_id=account_id, who=what)
        return None
    return cls.model_construct(name=name, email=email, **fields)


def account_from_row(row, contacts) -> Account:
    """An `accounts` row and its `contacts` rows as the Account plays see: only contacts with a usable
    e-mail address, and a sponsor always (the stored one, else the first contact, else the CSM, so
    that a freshly imported company's plays still reach a person; the import report says so)."""
    csm = Person(name=row["csm_name"], email=row["csm_email"])
    people = [p for c in contacts if c["email"] and (p := _usable(
        Contact, "contact", row["id"], c["name"], c["email"], role=c["role"])) is not None]
    sponsor = None
    if row["sponsor_email"]:
        sponsor = _usable(Person, "sponsor", row["id"], row["sponsor_name"] or row["sponsor_email"], row["sponsor_email"])
    if sponsor is None:
        sponsor = Person(name=people[0].name, email=people[0].email) if people else csm
    return Account(
        id=row["id"], name=row["name"], status=row["status"], health=row["health"], arr=Decimal(row["arr"]),
        arr_currency=row["arr_currency"], usd_rate=Decimal(row["usd_rate"]), crm_tier=row["crm_tier"],
        renewal_date=row["renewal_date"], vertical=row["vertical"], country=row["country"], region=row["region"],
        timezone=row["timezone"], language=row["language"], csm=csm, sponsor=sponsor, contacts=people,
    )


async def fetch_account(conn: asyncpg.Pool | asyncpg.Connection, account_id: str) -> Account:
    """The account by our id; an account merged into another (a CRM merge) answers as the survivor,
    so plays started for the merged one carry on with the surviving account's people.
    Raises AccountNotFound."""
    row = await conn.fetchrow(
        "WITH RECURSIVE chain AS (SELECT a.*, 0 AS depth FROM accounts a WHERE a.id = $1"
        " UNION ALL SELECT a.*, c.depth + 1 FROM accounts a JOIN chain c ON a.id = c.merged_into WHERE c.depth < 10)"
        " SELECT * FROM chain ORDER BY depth DESC LIMIT 1", account_id)
    if row is None:
        raise AccountNotFound(account_id)
    contacts = await conn.fetch(
        "SELECT name, email, role FROM contacts WHERE account_id = $1 AND crm_deleted_at IS NULL ORDER BY id", row["id"]
    )
    return account_from_row(row, contacts)


async def account_for_activity(pool: asyncpg.Pool, account_id: str) -> Account:
    """The account, or a non-retryable failure: no retry makes an unknown account known."""
    try:
        return await fetch_account(pool, account_id)
    except AccountNotFound as exc:
        raise not_retryable(str(exc), "AccountNotFound") from None


async def fetch_staff(conn: asyncpg.Pool | asyncpg.Connection) -> dict[str, StaffMember]:
    rows = await conn.fetch("SELECT role, name, email FROM staff")
    return {r["role"]: StaffMember(**dict(r)) for r in rows}


async def upsert_account(pool: asyncpg.Pool, account: Account) -> None:
    """Create or replace an account and its contacts, as given (tests and fixtures; CRM data
    goes through starter/book, which keeps CRM ids and never deletes)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """
            INSERT INTO accounts (id, name, status, health, arr, arr_currency, usd_rate, crm_tier, renewal_date,
                                  vertical, country, region, timezone, language,
                                  csm_name, csm_email, sponsor_name, sponsor_email)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
            ON CONFLICT (id) DO UPDATE SET
                name = EXCLUDED.name, status = EXCLUDED.status, health = EXCLUDED.health,
                arr = EXCLUDED.arr, arr_currency = EXCLUDED.arr_currency, usd_rate = EXCLUDED.usd_rate,
                crm_tier = EXCLUDED.crm_tier, renewal_date = EXCLUDED.renewal_date, vertical = EXCLUDED.vertical,
                country = EXCLUDED.country, region = EXCLUDED.region, timezone = EXCLUDED.timezone,
                language = EXCLUDED.language,
                csm_name = EXCLUDED.csm_name, csm_email = EXCLUDED.csm_email,
                sponsor_name = EXCLUDED.sponsor_name, sponsor_email = EXCLUDED.sponsor_email,
                updated_at = now()
            """,
            account.id, account.name, account.status, account.health, account.arr, account.arr_currency,
            account.usd_rate, account.crm_tier, account.renewal_date, account.vertical, account.country,
            account.region, account.timezone, account.language, account.csm.name, str(account.csm.email),
            account.sponsor.name, str(account.sponsor.email),
        )
        await conn.execute("DELETE FROM contacts WHERE account_id = $1", account.id)
        await conn.executemany(
            "INSERT INTO contacts (account_id, name, email, role) VALUES ($1, $2, $3, $4)",
            [(account.id, c.name, str(c.email), c.role) for c in account.contacts],
        )


async def upsert_staff(pool: asyncpg.Pool, members: list[StaffMember]) -> None:
    await pool.executemany(
        "INSERT INTO staff (role, name, email) VALUES ($1, $2, $3) "
        "ON CONFLICT (role) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email",
        [(m.role, m.name, str(m.email)) for m in members],
    )


class AccountActivities:
    def __init__(self, pool: asyncpg.Pool, feed=None):
        self.pool = pool
        self.feed = feed  # an activities.churn.ChurnFeed, to clear contract risk once renewed

    @activity.defn(name="load_account")
    async def load_account(self, account_id: str) -> Account:
        return await account_for_activity(self.pool, account_id)

    @activity.defn(name="load_play_context")
    async def load_play_context(self, req: PlayContextRequest) -> PlayContext:
        """A play's start in one activity: its account (AccountNotFound, non-retryable) and, when asked,
        both working-day calendars (as `load_calendars`, the account's from its own zone and country)."""
        account = await account_for_activity(self.pool, req.account_id)
        calendars = None
        if req.calendars:
            place = CalendarPlace(tz=account.timezone, country=account.country, region=account.region)
            calendars = PlayCalendars(account=work_calendar(place, req.start, req.years),
                                      staff=work_calendar(req.staff, req.start, req.years))
        return PlayContext(account=account, calendars=calendars)

    @activity.defn(name="record_renewal_outcome")
    async def record_renewal_outcome(self, req: RenewalOutcomeRequest) -> None:
        """Renewed: active with the new term's end date. Churned: churned. Setting the same values twice is harmless."""
        if req.outcome == "renewed":
            result = await self.pool.execute(
                "UPDATE accounts SET status = 'active', renewal_date = $2, updated_at = now() WHERE id = $1",
                req.play.account_id, req.new_renewal_date,
            )
        else:
            result = await self.pool.execute(
                "UPDATE accounts SET status = 'churned', updated_at = now() WHERE id = $1", req.play.account_id
            )
        if result.endswith(" 0"):
            raise not_retryable(f"unknown account {req.play.account_id!r}", "AccountNotFound")
        if req.outcome == "renewed" and self.feed is not None:
            for indicator in ("contract_final_90_days", "renewal_past_due"):
                await self.feed.flag(req.play.account_id, indicator, False, req.play.workflow_id, "renewed")
        play_logger("accounts", req.play).info(
            "account.renewal_outcome", outcome=req.outcome, new_renewal_date=str(req.new_renewal_date or "")
        )
