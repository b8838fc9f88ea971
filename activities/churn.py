"""Churn-risk records (seed 001 section 13.2) and the monthly risk summary (section 13.4)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
from temporalio import activity
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy, WorkflowIDReusePolicy,
)

from activities.common import play_logger
from activities.email import send_report
from activities.play_events import PlayEvent, record_events
from core.models import RiskRecord, RiskSummaryRequest
from core.settings import Settings
from playbooks.loader import SCORING_FILE, load_named, load_scoring
from playbooks.profiles import profile_of
from workflows.churn_messages import CHURN, ChurnInput, IndicatorFlag, MetricsReading, churn_workflow_id
from workflows.common import ACCOUNT_ID, PLAYBOOK

BANDS = ("GREEN", "YELLOW", "ORANGE", "RED")
NY = ZoneInfo("America/New_York")


class ChurnActivities:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @activity.defn(name="record_risk")
    async def record_risk(self, rec: RiskRecord) -> None:
        """The account's current score (latest wins) and its band changes (each once)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """
                INSERT INTO account_risk (account_id, score, band, indicators, updated_at, health_score)
                VALUES ($1, $2, $3, $4, $5, $6)
                ON CONFLICT (account_id) DO UPDATE SET score = EXCLUDED.score, band = EXCLUDED.band,
                    indicators = EXCLUDED.indicators, updated_at = EXCLUDED.updated_at,
                    health_score = coalesce(EXCLUDED.health_score, account_risk.health_score)
                WHERE account_risk.updated_at <= EXCLUDED.updated_at
                """,
                rec.play.account_id, rec.score, rec.band, rec.indicators, rec.at, rec.health_score,
            )
            await conn.executemany(
                """
                INSERT INTO risk_band_changes (idem_key, account_id, workflow_id, from_band, to_band, score, changed_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idem_key) DO NOTHING
                """,
                [(rec.play.key(f"band-change/{rec.first_change + i}"), rec.play.account_id, rec.play.workflow_id,
                  c.from_band, c.to_band, c.score, c.at) for i, c in enumerate(rec.changes)],
            )
            await record_events(conn, [
                *(PlayEvent.of_play(rec.play, "account.band_changed", f"band-change/{rec.first_change + i}",
                                    step=f"band-change/{rec.first_change + i}", occurred_at=c.at,
                                    title=f"Risk band {c.from_band} -> {c.to_band} (score {c.score})",
                                    data={"from_band": c.from_band, "to_band": c.to_band, "score": c.score,
                                          "indicators": rec.indicators})
                  for i, c in enumerate(rec.changes)),
                PlayEvent.of_play(rec.play, "account.risk_updated", f"risk/{rec.at.isoformat()}", step=None,
                                  occurred_at=rec.at, title=f"Risk score {rec.score} ({rec.band})",
                                  data={"score": rec.score, "band": rec.band, "health_score": rec.health_score}),
            ])
        for c in rec.changes:
            play_logger("churn", rec.play).warning("churn.band_changed", from_band=c.from_band, to_band=c.to_band,
                                                   score=c.score)


def month_bounds(month: date) -> tuple[datetime, datetime]:
    first = month.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return datetime.combine(first, time(), tzinfo=NY), datetime.combine(nxt, time(), tzinfo=NY)


async def risk_summary(pool: asyncpg.Pool, month: date) -> dict:
    """Accounts per band (and their ARR) now, the band moves during `month`, the accounts
    rescued (ORANGE or RED, back to GREEN within the month) and lost (churned)."""
    start, end = month_bounds(month)
    rows = await pool.fetch(
        "SELECT a.id, a.name, a.arr, a.status, coalesce(r.band, 'GREEN') AS band FROM accounts a"
        " LEFT JOIN account_risk r ON r.account_id = a.id WHERE a.status <> 'churned' ORDER BY a.id"
    )
    counts = {b: 0 for b in BANDS}
    arr = {b: Decimal(0) for b in BANDS}
    for r in rows:
        counts[r["band"]] += 1
        arr[r["band"]] += Decimal(r["arr"])
    moves = await pool.fetch(
        "SELECT c.account_id, a.name, c.from_band, c.to_band, c.changed_at FROM risk_band_changes c"
        " JOIN accounts a ON a.id = c.account_id WHERE c.changed_at >= $1 AND c.changed_at < $2"
        " ORDER BY c.changed_at, c.id", start, end,
    )
    rescued = await _rescued(pool, [m for m in moves if m["to_band"] == "GREEN"])
    lost = await pool.fetch(
        "SELECT name FROM accounts WHERE status = 'churned' AND updated_at >= $1 AND updated_at < $2 ORDER BY name",
        start, end,
    )
    return {
        "month": month.strftime("%Y-%m"),
        "counts": counts,
        "arr": arr,
        "moves": [{"account": m["name"], "from_band": m["from_band"], "to_band": m["to_band"], "at": m["changed_at"]}
                  for m in moves],
        "rescued": rescued,
        "lost": [r["name"] for r in lost],
    }


async def _rescued(pool: asyncpg.Pool, back_to_green: list) -> list[str]:
    """Accounts back to GREEN whose spell away from GREEN (however long ago it began) reached ORANGE or RED."""
    names = set()
    for move in back_to_green:
        peak = await pool.fetchval(
            """
            SELECT bool_or(to_band IN ('ORANGE', 'RED')) FROM risk_band_changes
            WHERE account_id = $1 AND changed_at < $2 AND changed_at > coalesce(
                (SELECT max(changed_at) FROM risk_band_changes
                 WHERE account_id = $1 AND to_band = 'GREEN' AND changed_at < $2), '-infinity')
            """,
            move["account_id"], move["changed_at"],
        )
        if peak:
            names.add(move["name"])
    return sorted(names)


class RiskSummaryActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings):
        self.pool, self.settings = pool, settings

    @activity.defn(name="send_risk_summary")
    async def send_risk_summary(self, req: RiskSummaryRequest) -> dict:
        """E-mail the month's summary once (the communication log keys it by month)."""
        report = await risk_summary(self.pool, req.month)
        await send_report(self.pool, self.settings, "churn", report["month"], req.template, req.to, report)
        return {"month": report["month"], "counts": report["counts"], "moves": len(report["moves"])}


class ChurnFeed:
    """Tells an account's churn watch what other plays learnt (an onboarding delay, the
    final 90 days before renewal, a missed renewal date), starting the watch if needed."""

    def __init__(self, client: Client, settings: Settings):
        self.client, self.settings = client, settings

    async def flag(self, account_id: str, indicator: str, present: bool, source: str, note: str = "") -> None:
        await signal_watch(self.client, self.settings, account_id, "flag_indicator",
                           IndicatorFlag(indicator=indicator, present=present, source=source, note=note), source)

    async def metrics(self, account_id: str, values: dict[str, float], source: str) -> None:
        await signal_watch(self.client, self.settings, account_id, "read_metrics",
                           MetricsReading(values=values, source=source), source)


def watch_input(settings: Settings, account_id: str, launched_by: str, max_history_events: int | None = None):
    extra = {"max_history_events": max_history_events} if max_history_events else {}
    return ChurnInput(
        account_id=account_id, playbook=load_named(CHURN, profile=profile_of(settings)),
        scoring=load_scoring(profile_of(settings).path(SCORING_FILE)), launched_by=launched_by,
        search_attributes=settings.search_attributes, **extra,
    )


async def signal_watch(client: Client, settings: Settings, account_id: str, signal: str, arg, launched_by: str,
                       task_queue: str | None = None, input: ChurnInput | None = None):
    """Signal-with-start: one watch per account, started by whatever first has news for it.
    `input` is the watch's start input when the caller has already loaded it."""
    input = input or watch_input(settings, account_id, launched_by)
    version = input.playbook.content.version
    return await client.start_workflow(
        "ChurnWatch", input, id=churn_workflow_id(account_id),
        task_queue=task_queue or settings.task_queue, start_signal=signal, start_signal_args=[arg],
        static_summary=f"churn watch for account {account_id}, playbook v{version}",
        static_details=(f"**Account:** {account_id}\n\n**Playbook:** churn v{version}, digest "
                        f"{input.playbook.digest[:12]}; scoring v{input.scoring.version}\n\n"
                        f"**Started by:** {input.launched_by} ({signal})"),
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        search_attributes=(
            TypedSearchAttributes([SearchAttributePair(ACCOUNT_ID, account_id), SearchAttributePair(PLAYBOOK, CHURN)])
            if settings.search_attributes else None
        ),
    )
