"""Side effects of a ticket's communications (workflows/sla_comms.py): the CSAT survey e-mail with its
signed one-click links, and the account's CSAT average for its churn watch (seed 001 section 13.2:
"Support CSAT avg < 3/5" is a risk indicator fed by the metric `csat`)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from temporalio import activity

from activities.accounts import account_for_activity, fetch_staff
from activities.email import Mailer
from activities.survey_links import SurveyLink, sign_link
from core.models import CsatFeedRequest, CsatSurveyRequest, EmailResult
from core.settings import Settings

SCORES = range(1, 6)


def csat_secret(settings: Settings) -> str:
    """The CSAT links' key: derived from the NPS link secret, so an NPS token is no CSAT token and
    the other way round."""
    return "csat:" + settings.nps_link_secret.get_secret_value()


def csat_cycle(ticket_id: str, round: int) -> str:
    return f"{ticket_id}/{round}"


def csat_token(settings: Settings, ticket_id: str, round: int, account_id: str, email: str,
               expires_at: datetime) -> str:
    """The signed token of one survey (activities/survey_links.py, the NPS machinery)."""
    return sign_link(csat_secret(settings), SurveyLink(csat_cycle(ticket_id, round), account_id, email, expires_at))


def csat_links(settings: Settings, token: str) -> list[tuple[int, str]]:
    """(score, one-click URL) for 1-5: each opens the answer page with that score chosen."""
    return [(n, f"{settings.survey_base_url}/csat/{token}?score={n}") for n in SCORES]


class SlaCommsActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, feed=None):
        self.pool, self.settings = pool, settings
        self.mailer = Mailer(pool, settings)
        self.feed = feed  # an activities.churn.ChurnFeed

    @activity.defn(name="send_csat_survey")
    async def send_csat_survey(self, req: CsatSurveyRequest) -> EmailResult:
        """The survey e-mail, once per play step (the outbox key); the links are signed here, so the
        credential never enters the workflow's history. AccountNotFound is permanent."""
        account = await account_for_activity(self.pool, req.play.account_id)
        token = csat_token(self.settings, req.ticket_id, req.round, account.id, str(req.to.email), req.expires_at)
        data = {**req.data, "links": csat_links(self.settings, token), "expires_at": req.expires_at}
        staff = await fetch_staff(self.pool)
        return await self.mailer.deliver(req.play, req.step, req.template, [req.to], [], data, account, staff)

    @activity.defn(name="feed_account_csat")
    async def feed_account_csat(self, req: CsatFeedRequest) -> float | None:
        """The account's average CSAT (1-5, two decimals) over the answers of the last `days` days,
        sent to its churn watch as the metric `csat`; None without answers."""
        avg = await self.pool.fetchval(
            "SELECT round(avg(score)::numeric, 2) FROM csat_responses WHERE account_id = $1"
            " AND answered_at > now() - make_interval(days => $2)", req.play.account_id, req.days)
        if avg is None:
            return None
        if self.feed is not None:
            await self.feed.metrics(req.play.account_id, {"csat": float(avg)}, req.play.workflow_id)
        return float(avg)
