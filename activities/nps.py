"""NPS surveys (seed 001 section 14): batched sending, reminders and closing,
answers, and the quarterly report.

A cycle of 100,000 accounts must not live in one workflow's history, nor as
one workflow per contact: the cycle workflow hands out batches of contacts
to `send_survey_batch`, each idempotent per (cycle, contact) (the invitation
row and the outbox key), resumable after a crash from the batch's cursor.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone

import asyncpg
from temporalio import activity

from activities.accounts import account_from_row, fetch_staff
from activities.common import not_retryable, play_logger
from activities.email import Mailer, send_report
from activities.survey_links import SurveyLink, sign_link
from core.models import (
    Account, EmailResult, EmailTemplate, Person, PlayRef, RespondentEmailRequest, SurveyBatchRequest,
    SurveyBatchResult, tier_of,
)
from core.settings import Settings

ACTIVE = ("onboarding", "active", "at-risk")


def category_of(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def survey_link(settings: Settings, cycle_id: str, account_id: str, email: str, expires_at: datetime) -> str:
    token = sign_link(settings.nps_link_secret.get_secret_value(), SurveyLink(cycle_id, account_id, email, expires_at))
    return f"{settings.survey_base_url}/nps/{token}"


class NpsActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, feed=None):
        self.pool, self.settings = pool, settings
        self.mailer = Mailer(pool, settings)
        self.feed = feed  # an activities.churn.ChurnFeed: answers move the account's NPS metric

    @activity.defn(name="send_survey_batch")
    async def send_survey_batch(self, req: SurveyBatchRequest) -> SurveyBatchResult:
        """The next batch of contacts: invite (or remind) each once; returns the cursor to go on from."""
        after_account, after_email = req.after or ("", "")
        if req.kind == "survey":
            rows = await self.pool.fetch(
                """
                SELECT c.account_id, c.email, c.name FROM contacts c JOIN accounts a ON a.id = c.account_id
                WHERE a.status = ANY($1::text[]) AND ($2::text[] IS NULL OR a.id = ANY($2::text[]))
                  AND a.merged_into IS NULL AND c.email IS NOT NULL AND (c.account_id, c.email) > ($3, $4) AND ($6::text IS NULL OR c.email = $6)
                ORDER BY c.account_id, c.email LIMIT $5
                """,
                list(ACTIVE), req.account_ids, after_account, after_email, req.limit, req.only_email,
            )
        else:
            rows = await self.pool.fetch(
                """
                SELECT i.account_id, i.contact_email AS email, i.contact_name AS name FROM nps_invitations i
                WHERE i.cycle_id = $1 AND i.closed_at IS NULL AND (i.account_id, i.contact_email) > ($2, $3)
                  AND NOT EXISTS (SELECT 1 FROM nps_responses r WHERE r.cycle_id = i.cycle_id
                                  AND r.contact_email = i.contact_email)
                ORDER BY i.account_id, i.contact_email LIMIT $4
                """,
                req.cycle_id, after_account, after_email, req.limit,
            )
        fetched = rows  # the cursor and the end follow what was read, whatever the tier filter keeps
        accounts = await self._accounts({r["account_id"] for r in rows})
        if req.tiers:
            rows = [r for r in rows if accounts[r["account_id"]].tier in req.tiers]
        staff = await fetch_staff(self.pool)
        # Contacts of a batch go out side by side (bounded by the pool), each still keyed once.
        gate = asyncio.Semaphore(max(1, self.settings.db_pool_max - 2))
        done = 0

        async def one(r) -> bool:
            nonlocal done
            async with gate:
                already = await self._invite_one(req, r, accounts[r["account_id"]], staff)
            done += 1
            if done % 100 == 0:
                activity.heartbeat(done)
            return already

        outcomes = await asyncio.gather(*(one(r) for r in rows))
        already = sum(outcomes)
        sent = len(outcomes) - already
        last = (fetched[-1]["account_id"], fetched[-1]["email"]) if fetched else req.after
        play_logger("nps", req.play).info("nps.batch", kind=req.kind, sent=sent, already=already, cycle=req.cycle_id)
        return SurveyBatchResult(sent=sent, already=already, last=last, done=len(fetched) < req.limit)

    async def _invite_one(self, req: SurveyBatchRequest, r, account: Account, staff) -> bool:
        """Invite (or remind) one contact; True if it had been done before (a retried batch)."""
        if req.kind == "survey":
            await self.pool.execute(
                "INSERT INTO nps_invitations (cycle_id, account_id, contact_email, contact_name, expires_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                req.cycle_id, r["account_id"], r["email"], r["name"], req.expires_at,
            )
        else:
            await self.pool.execute(
                "UPDATE nps_invitations SET reminded_at = COALESCE(reminded_at, now())"
                " WHERE cycle_id = $1 AND contact_email = $2", req.cycle_id, r["email"],
            )
        play = req.play.model_copy(update={"account_id": r["account_id"]})
        data = {"link": survey_link(self.settings, req.cycle_id, r["account_id"], r["email"], req.expires_at),
                "expires_at": req.expires_at}
        result = await self.mailer.deliver(
            play, f"{req.kind}/{req.cycle_id}/{r['email']}", req.template, [Person(name=r["name"], email=r["email"])],
            [], data, account, staff,
        )
        return result.already_sent

    async def _accounts(self, ids: set[str]) -> dict[str, Account]:
        if not ids:
            return {}
        rows = await self.pool.fetch("SELECT * FROM accounts WHERE id = ANY($1::text[])", list(ids))
        contacts = await self.pool.fetch(
            "SELECT account_id, name, email, role FROM contacts WHERE account_id = ANY($1::text[]) ORDER BY id", list(ids))
        by_account: dict[str, list] = {}
        for c in contacts:
            by_account.setdefault(c["account_id"], []).append(c)
        return {r["id"]: account_from_row(r, by_account.get(r["id"], [])) for r in rows}

    @activity.defn(name="close_nonresponses")
    async def close_nonresponses(self, cycle_id: str) -> int:
        result = await self.pool.execute(
            """
            UPDATE nps_invitations i SET closed_at = now() WHERE i.cycle_id = $1 AND i.closed_at IS NULL
              AND NOT EXISTS (SELECT 1 FROM nps_responses r WHERE r.cycle_id = i.cycle_id
                              AND r.contact_email = i.contact_email)
            """,
            cycle_id,
        )
        return int(result.split()[-1])

    @activity.defn(name="email_respondent")
    async def email_respondent(self, req: RespondentEmailRequest) -> EmailResult:
        account = (await self._accounts({req.play.account_id})).get(req.play.account_id)
        if account is None:
            raise not_retryable(f"unknown account {req.play.account_id!r}", "AccountNotFound")
        staff = await fetch_staff(self.pool)
        return await self.mailer.deliver(req.play, req.step, req.template, [req.to], [account.csm], req.data,
                                         account, staff)

    @activity.defn(name="feed_account_nps")
    async def feed_account_nps(self, play: PlayRef) -> int | None:
        """The account's NPS over the answers of its latest cycle, to its churn watch (seed 001 section 13.2)."""
        rows = await self.pool.fetch(
            "SELECT score FROM nps_responses WHERE account_id = $1 AND cycle_id = "
            "(SELECT cycle_id FROM nps_responses WHERE account_id = $1 ORDER BY answered_at DESC LIMIT 1)",
            play.account_id,
        )
        if not rows:
            return None
        nps = net_promoter_score([r["score"] for r in rows])
        if self.feed is not None:
            await self.feed.metrics(play.account_id, {"nps": nps}, play.workflow_id)
        return nps


def net_promoter_score(scores: list[int]) -> int:
    """% promoters (9-10) minus % detractors (0-6), rounded."""
    if not scores:
        return 0
    promoters = sum(s >= 9 for s in scores)
    detractors = sum(s <= 6 for s in scores)
    return round(100 * (promoters - detractors) / len(scores))


def _tenure(created: datetime, at: datetime) -> str:
    years = (at - created).days / 365.25
    return "under 1 year" if years < 1 else "1-2 years" if years < 2 else "2+ years"


async def nps_report(pool: asyncpg.Pool, cycle_id: str, now: datetime | None = None) -> dict:
    """NPS overall and by tier, vertical and tenure, with response rates, for one cycle."""
    now = now or datetime.now(timezone.utc)
    invited = await pool.fetch(
        "SELECT i.account_id, a.arr, a.usd_rate, a.crm_tier, coalesce(a.vertical, 'unknown') AS vertical, a.created_at,"
        " r.score FROM nps_invitations i JOIN accounts a ON a.id = i.account_id"
        " LEFT JOIN nps_responses r ON r.cycle_id = i.cycle_id AND r.contact_email = i.contact_email"
        " WHERE i.cycle_id = $1",
        cycle_id,
    )

    def summary(rows) -> dict:
        scores = [r["score"] for r in rows if r["score"] is not None]
        return {
            "nps": net_promoter_score(scores), "responses": len(scores), "invited": len(rows),
            "promoters": sum(s >= 9 for s in scores), "passives": sum(7 <= s <= 8 for s in scores),
            "detractors": sum(s <= 6 for s in scores),
            "response_rate": round(100 * len(scores) / len(rows), 1) if rows else 0.0,
        }

    groups = []
    for by, key in (("tier", tier_of), ("vertical", lambda r: r["vertical"]),
                    ("tenure", lambda r: _tenure(r["created_at"], now))):
        buckets: dict[str, list] = {}
        for r in invited:
            buckets.setdefault(key(r), []).append(r)
        groups.append({"by": by, "rows": [{"name": name, **summary(rows)} for name, rows in sorted(buckets.items())]})
    return {"cycle": cycle_id, "overall": summary(invited), "groups": groups}


async def send_nps_report(pool: asyncpg.Pool, settings: Settings, cycle_id: str, template: EmailTemplate,
                          to: list[str]) -> tuple[dict, bool]:
    """E-mail the cycle's report to CS leadership, once per cycle; (report, already sent before)."""
    report = await nps_report(pool, cycle_id)
    return report, await send_report(pool, settings, "nps", cycle_id, template, to, report)


def cycle_for(day: date) -> str:
    """A cycle is named after the month end it measures (seed 001 section 14.1: Jan 31, Apr 30,
    Jul 31, Oct 31): a survey sent in early February is cycle "2027-01"."""
    return f"{day.replace(day=1) - timedelta(days=1):%Y-%m}"
