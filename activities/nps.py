"""NPS surveys (seed 001 section 14): batched sending, reminders and closing,
answers, and the quarterly report.

A cycle of 100,000 accounts must not live in one workflow's history, nor as
one workflow per contact: the cycle workflow hands out batches of contacts
to `send_survey_batch`, each idempotent per (cycle, contact) (the invitation
row and the outbox key), resumable after a crash from the batch's cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import asyncpg
from temporalio import activity

from activities.accounts import account_from_row, fetch_staff
from activities.addresses import address_key
from activities.common import activity_now, not_retryable, play_logger
from activities.email import Mailer, send_report
from activities.mail_batch import OneEmail, deliver_batch
from activities.mail_policy import cap_holds, suppressions_for
from activities.survey_links import SurveyLink, sign_link
from core.holiday_calendars import work_calendar
from core.models import (
    Account, CalendarPlace, DeferredInvitationsRequest, EmailResult, EmailTemplate, Person, PlayRef,
    RespondentEmailRequest, SurveyBatchRequest, SurveyBatchResult, tier_of,
)
from core.settings import Settings

ACTIVE = ("onboarding", "active", "at-risk")


def category_of(score: int) -> str:
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


@dataclass(frozen=True)
class SendChecks:
    blocked: dict[str, str]  # e-mail -> why it is suppressed
    holds: dict[str, datetime]  # address key -> not before (the weekly cap)


def send_slot(template: EmailTemplate, account: Account, now: datetime, hold: datetime | None) -> datetime:
    """When a survey e-mail may go to a contact of `account`: now, or the next opening of the send window
    in the account's local time on its working days, after the weekly cap's hold if any."""
    earliest = max(now, hold) if hold else now
    if template.window is None:
        return earliest
    cal = work_calendar(CalendarPlace(tz=account.timezone, country=account.country, region=account.region),
                        earliest.date() - timedelta(days=1), years=2)
    return template.window.next_slot(earliest, cal)


def survey_link(settings: Settings, cycle_id: str, account_id: str, email: str, expires_at: datetime) -> str:
    token = sign_link(settings.nps_link_secret.get_secret_value(), SurveyLink(cycle_id, account_id, email, expires_at))
    return f"{settings.survey_base_url}/nps/{token}"


class NpsActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, feed=None):
        self.pool, self.settings = pool, settings
        self.mailer = Mailer(pool, settings)
        self.feed = feed  # an activities.churn.ChurnFeed: answers move the account's NPS metric
        self._staff_cache: tuple[datetime, dict] | None = None

    @activity.defn(name="send_survey_batch")
    async def send_survey_batch(self, req: SurveyBatchRequest) -> SurveyBatchResult:
        """The next batch of contacts: invite (or remind) each once; returns the cursor to go on from.
        Each contact is checked at send time: suppressed (unsubscribed, opted out, bounced) is recorded
        and skipped; with `req.defer`, outside their account's send window or over the weekly cap is
        deferred (the cycle sends it later)."""
        after_account, after_email = req.after or ("", "")
        if req.kind == "survey":
            rows = await self.pool.fetch(
                """
                SELECT c.account_id, c.email, c.name FROM contacts c JOIN accounts a ON a.id = c.account_id
                WHERE a.status = ANY($1::text[]) AND ($2::text[] IS NULL OR a.id = ANY($2::text[]))
                  AND a.merged_into IS NULL AND c.email IS NOT NULL AND (c.account_id, c.email) > ($3, $4) AND ($6::text IS NULL OR c.email = $6)
                  AND ($7::int = 1 OR mod(hashtext(c.account_id)::bigint + 2147483648, $7::int) = $8::int)
                ORDER BY c.account_id, c.email LIMIT $5
                """,
                list(ACTIVE), req.account_ids, after_account, after_email, req.limit, req.only_email, req.shards,
                req.shard,
            )
        else:
            rows = await self.pool.fetch(
                """
                SELECT i.account_id, i.contact_email AS email, i.contact_name AS name FROM nps_invitations i
                WHERE i.cycle_id = $1 AND i.closed_at IS NULL AND (i.account_id, i.contact_email) > ($2, $3)
                  AND i.deferred_kind IS DISTINCT FROM 'survey'
                  AND ($7::int = 1 OR mod(hashtext(i.account_id)::bigint + 2147483648, $7::int) = $8::int)
                  AND NOT EXISTS (SELECT 1 FROM nps_responses r WHERE r.cycle_id = i.cycle_id
                                  AND r.contact_email = i.contact_email)
                  AND NOT ($5 AND EXISTS (
                      SELECT 1 FROM communications c JOIN inbound_mail m ON m.communication_id = c.id
                      WHERE c.idem_key = $6 || 'survey/' || i.cycle_id || '/' || i.contact_email
                        AND m.kind = 'reply' AND m.outcome <> 'automatic reply'))
                ORDER BY i.account_id, i.contact_email LIMIT $4
                """,
                req.cycle_id, after_account, after_email, req.limit, req.template.stop_on_reply, req.play.key(""),
                req.shards, req.shard,
            )
        fetched = rows  # the cursor and the end follow what was read, whatever the tier filter keeps
        accounts = await self._accounts({r["account_id"] for r in rows})
        if req.tiers:
            rows = [r for r in rows if accounts[r["account_id"]].tier in req.tiers]
        checks = await self._checks(req.template, [r["email"] for r in rows], req.defer)
        # A second attempt of this batch (a retry while the first still runs) waits for the first (mail_batch).
        claim = f"{req.play.key('')}{req.kind}/{req.shard}/{req.shards}/{req.after}/{req.only_email}"
        outcomes = await self._invite(req.play, req.cycle_id, req.kind, req.template, req.expires_at, rows, accounts,
                                      checks, req.defer, claim)
        last = (fetched[-1]["account_id"], fetched[-1]["email"]) if fetched else req.after
        result = self._tally(outcomes, last, done=len(fetched) < req.limit)
        if result.deferred:
            result.next_at = await self._next_deferred(req.cycle_id)
        play_logger("nps", req.play).info("nps.batch", kind=req.kind, sent=result.sent, already=result.already,
                                          suppressed=result.suppressed, deferred=result.deferred, cycle=req.cycle_id)
        return result

    @activity.defn(name="send_deferred_invitations")
    async def send_deferred_invitations(self, req: DeferredInvitationsRequest) -> SurveyBatchResult:
        """Invitations and reminders of a cycle whose deferral has run out: checked again, then sent (or
        deferred again). `next_at`: the earliest one still waiting."""
        rows = await self.pool.fetch(
            "SELECT account_id, contact_email AS email, contact_name AS name, deferred_kind FROM nps_invitations"
            " WHERE cycle_id = $1 AND deferred_until <= $3 AND closed_at IS NULL ORDER BY deferred_until LIMIT $2",
            req.cycle_id, req.limit, activity_now(),
        )
        accounts = await self._accounts({r["account_id"] for r in rows})
        templates = {"survey": req.survey, "reminder": req.reminder}
        outcomes = []
        for kind in ("survey", "reminder"):
            mine = [r for r in rows if r["deferred_kind"] == kind]
            checks = await self._checks(templates[kind], [r["email"] for r in mine], True)
            outcomes += await self._invite(req.play, req.cycle_id, kind, templates[kind], req.expires_at, mine,
                                           accounts, checks, True, f"{req.play.key('')}deferred/{kind}")
        result = self._tally(outcomes, None, done=len(rows) < req.limit)
        result.next_at = await self._next_deferred(req.cycle_id)
        play_logger("nps", req.play).info("nps.deferred_batch", sent=result.sent, suppressed=result.suppressed,
                                          deferred=result.deferred, cycle=req.cycle_id)
        return result

    @staticmethod
    def _tally(outcomes: list[str], last, done: bool) -> SurveyBatchResult:
        return SurveyBatchResult(sent=outcomes.count("sent"), already=outcomes.count("already"), last=last, done=done,
                                 suppressed=outcomes.count("suppressed"), deferred=outcomes.count("deferred"))

    async def _checks(self, template: EmailTemplate, emails: list[str], defer: bool) -> SendChecks:
        """Suppressions (always) and the weekly cap (with deferral), for a whole batch in two queries."""
        category = template.category or "survey"
        blocked = await suppressions_for(self.pool, emails, category)
        holds = {}
        if defer:
            holds = await cap_holds(self.pool, sorted({address_key(e) for e in emails}), category,
                                    self.settings.email_weekly_cap, activity_now())
        return SendChecks(blocked, holds)

    async def _next_deferred(self, cycle_id: str) -> datetime | None:
        return await self.pool.fetchval(
            "SELECT min(deferred_until) FROM nps_invitations WHERE cycle_id = $1 AND deferred_until IS NOT NULL"
            " AND closed_at IS NULL", cycle_id)

    async def _invite(self, play: PlayRef, cycle_id: str, kind: str, template: EmailTemplate, expires_at: datetime,
                      rows, accounts: dict[str, Account], checks: SendChecks, defer: bool, claim: str) -> list[str]:
        """Invite (or remind) each contact of `rows`: "sent", "already" (a retried batch), "suppressed" or
        "deferred", in order. Who is deferred is decided first and the invitation rows of the batch are
        written in two statements (issue 18: not one per contact), before any of its e-mails goes."""
        now = activity_now()
        verdict: dict[int, str] = {}
        later: list[tuple] = []
        for i, r in enumerate(rows):
            if r["email"] in checks.blocked:
                verdict[i] = "suppressed"
            elif defer and (when := send_slot(template, accounts[r["account_id"]], now,
                                              checks.holds.get(address_key(r["email"])))) > now:
                verdict[i] = "deferred"
                later.append((r, when))
        await self._defer_many(cycle_id, kind, later, expires_at)
        await self._mark_invited(cycle_id, kind, [r for i, r in enumerate(rows) if i not in verdict], expires_at)
        staff = await self._staff()
        emails = [OneEmail(play=play.model_copy(update={"account_id": r["account_id"]}),
                           step=f"{kind}/{cycle_id}/{r['email']}", person=Person(name=r["name"], email=r["email"]),
                           account=accounts[r["account_id"]],
                           data={"link": survey_link(self.settings, cycle_id, r["account_id"], r["email"], expires_at),
                                 "expires_at": expires_at},
                           blocked=checks.blocked[r["email"]] if verdict.get(i) == "suppressed" else None)
                  for i, r in enumerate(rows) if verdict.get(i) != "deferred"]
        # One outbox write for the batch, each copy's outcome as the relay answers (activities/mail_batch.py).
        sent = iter(await deliver_batch(self.mailer, template, emails, staff, claim))
        return ["deferred" if verdict.get(i) == "deferred" else next(sent) for i in range(len(rows))]

    async def _mark_invited(self, cycle_id: str, kind: str, rows, expires_at: datetime) -> None:
        """The invitation rows of the contacts about to be e-mailed (one statement; a contact whose
        address two accounts share is invited once, as the table's key says)."""
        first = {r["email"]: r for r in reversed(rows)}  # the first row of each address wins
        if not first:
            return
        if kind == "survey":
            await self.pool.execute(
                "INSERT INTO nps_invitations (cycle_id, account_id, contact_email, contact_name, expires_at)"
                " SELECT $1, a, e, n, $5 FROM unnest($2::text[], $3::text[], $4::text[]) AS t(a, e, n)"
                " ON CONFLICT (cycle_id, contact_email) DO UPDATE"
                " SET deferred_until = NULL, deferred_kind = NULL, sent_at = now()"
                " WHERE nps_invitations.deferred_kind IS NOT NULL",
                cycle_id, [r["account_id"] for r in first.values()], list(first), [r["name"] for r in first.values()],
                expires_at,
            )
        else:
            await self.pool.execute(
                "UPDATE nps_invitations SET reminded_at = COALESCE(reminded_at, now()), deferred_until = NULL,"
                " deferred_kind = NULL WHERE cycle_id = $1 AND contact_email = ANY($2::text[])", cycle_id, list(first),
            )

    async def _defer_many(self, cycle_id: str, kind: str, later: list[tuple], expires_at: datetime) -> None:
        """Record when each deferred contact is to be invited (reminded) instead (one statement)."""
        first = {r["email"]: (r, when) for r, when in reversed(later)}
        if not first:
            return
        emails, whens = list(first), [when for _, when in first.values()]
        if kind == "survey":
            await self.pool.execute(
                "INSERT INTO nps_invitations (cycle_id, account_id, contact_email, contact_name, expires_at,"
                " deferred_until, deferred_kind)"
                " SELECT $1, a, e, n, $5, w, 'survey' FROM unnest($2::text[], $3::text[], $4::text[],"
                " $6::timestamptz[]) AS t(a, e, n, w)"
                " ON CONFLICT (cycle_id, contact_email) DO UPDATE SET deferred_until = EXCLUDED.deferred_until"
                " WHERE nps_invitations.deferred_kind = 'survey'",
                cycle_id, [r["account_id"] for r, _ in first.values()], emails,
                [r["name"] for r, _ in first.values()], expires_at, whens,
            )
        else:
            await self.pool.execute(
                "UPDATE nps_invitations i SET deferred_until = t.w, deferred_kind = 'reminder'"
                " FROM unnest($2::text[], $3::timestamptz[]) AS t(e, w)"
                " WHERE i.cycle_id = $1 AND i.contact_email = t.e", cycle_id, emails, whens,
            )

    async def _staff(self):
        # The staff ladder changes rarely; a batch reads it once a minute at most.
        now = datetime.now(timezone.utc)
        if self._staff_cache is None or now - self._staff_cache[0] > timedelta(minutes=1):
            self._staff_cache = (now, await fetch_staff(self.pool))
        return self._staff_cache[1]

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
