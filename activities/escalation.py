"""Escalations (seed 001 section 9) and churn-risk points (section 13.2)."""

from __future__ import annotations

import asyncpg
from temporalio import activity

from activities.accounts import account_for_activity, fetch_staff
from activities.churn import ChurnFeed
from activities.common import needs_setup, play_logger
from activities.email import Mailer, resolve_roles
from activities.play_events import PlayEvent, record_events
from core.metrics import count
from core.models import EscalateRequest, EscalationResult, RiskPointsRequest
from core.settings import Settings


class EscalationActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, feed: ChurnFeed | None = None):
        self.pool = pool
        self.mailer = Mailer(pool, settings)
        self.feed = feed  # tells the account's churn watch; None where no Temporal client is at hand

    @activity.defn(name="escalate")
    async def escalate(self, req: EscalateRequest) -> EscalationResult:
        """Record the escalation and e-mail the §9.3 report to the level's owner."""
        account = await account_for_activity(self.pool, req.play.account_id)
        staff = await fetch_staff(self.pool)
        # A staff role (the ladder of seed 001 section 9) or an account role (the CSM on lower tiers).
        people = resolve_roles([req.to_role], account, staff)
        if not people:
            raise needs_setup(f"cannot escalate to {req.to_role!r}: nobody has that role", "RoleMissing")
        target = people[0]
        key = req.play.key(req.step)
        inserted = await self.pool.execute(
            """
            INSERT INTO escalations (idem_key, workflow_id, play_id, step, account_id, level,
                                     to_role, to_email, from_role, severity, title, reason)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (idem_key) DO NOTHING
            """,
            key, req.play.workflow_id, req.play.play_id, req.step, req.play.account_id, req.level,
            req.to_role, str(target.email), req.from_role, req.report.severity, req.report.title, req.reason,
        )
        if inserted.endswith(" 1"):
            count("escalations", level=req.level)
        row = await self.pool.fetchrow("SELECT id, created_at FROM escalations WHERE idem_key = $1", key)
        await record_events(self.pool, [PlayEvent.of_play(
            req.play, "play.escalated", f"{req.step}/escalated", step=req.step, occurred_at=row["created_at"],
            title=f"Escalation L{req.level} to {req.to_role}: {req.report.title}", severity=req.report.severity,
            data={"escalation_id": row["id"], "level": req.level, "to_role": req.to_role, "to_email": str(target.email),
                  "to_name": target.name, "from_role": req.from_role, "reason": req.reason,
                  "report_title": req.report.title, "business_impact": req.report.business_impact,
                  "needs": req.report.needs, "next_steps": req.report.next_steps})])
        data = {
            "escalation": {
                "level": req.level,
                "to": target.model_dump(mode="python"),
                "from_role": req.from_role,
                "reason": req.reason,
                "report": req.report.model_dump(mode="python"),
            }
        }
        await self.mailer.deliver(
            req.play, f"{req.step}/email", req.template, [target], [account.csm], data, account, staff
        )
        play_logger("escalation", req.play, req.step).warning(
            "escalation.raised", level=req.level, to_role=req.to_role, reason=req.reason
        )
        return EscalationResult(escalation_id=row["id"], to_email=str(target.email), level=req.level)

    @activity.defn(name="record_risk_points")
    async def record_risk_points(self, req: RiskPointsRequest) -> int:
        """Add churn-risk points for an indicator, once per play step; returns the row id."""
        await self.pool.execute(
            """
            INSERT INTO risk_events (idem_key, workflow_id, account_id, indicator, points, reason)
            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idem_key) DO NOTHING
            """,
            req.play.key(req.step), req.play.workflow_id, req.play.account_id, req.indicator,
            req.points, req.reason,
        )
        flagged = await self.pool.fetchrow("SELECT id, created_at FROM risk_events WHERE idem_key = $1",
                                           req.play.key(req.step))
        await record_events(self.pool, [PlayEvent.of_play(
            req.play, "account.risk_flagged", f"{req.step}/risk_flagged", step=req.step,
            occurred_at=flagged["created_at"], title=f"Churn risk +{req.points}: {req.reason}",
            data={"indicator": req.indicator, "points": req.points, "reason": req.reason})])
        play_logger("risk", req.play, req.step).warning(
            "churn_risk.recorded", indicator=req.indicator, points=req.points
        )
        if self.feed is not None:
            await self.feed.flag(req.play.account_id, req.indicator, True, req.play.workflow_id, req.reason)
        return flagged["id"]
