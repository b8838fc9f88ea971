"""What plays did, for chat notifications, CRM write-back and outbound webhooks (`play_events`).

Every activity that does something a CS team wants to hear about records a `PlayEvent` next to
its own row, keyed by that row's idempotency key: a retried activity finds the event already
there (ON CONFLICT DO NOTHING), so each happens once. Recording never calls out: the relay
(starter/relay.py) routes events into deliveries afterwards, so a Slack or CRM outage
never holds a play up. The events, by name:

| event                  | recorded by                                   | data                                   |
|------------------------|-----------------------------------------------|----------------------------------------|
| play.started           | every play, first run (workflows/play.py)     | phase                                  |
| play.step_done         | every play step (Play.attempt)                | phase, outcome (done / failed: why)    |
| play.finished          | every play's end, cancelled ones too          | outcome (completed, renewed, ...)      |
| task.created           | create_task                                   | task_id, title, owner, due_at, priority |
| task.completed         | complete_task, the console, CLI, API, the CRM | task_id, title, completed_by           |
| task.cancelled         | cancel_open_tasks (a cancelled play)          | task_id, title                         |
| play.escalated         | escalate (seed 001 section 9)                 | level, to_role, to_email, reason, report title |
| account.band_changed   | record_risk (churn watch)                     | from_band, to_band, score              |
| account.risk_flagged   | record_risk_points (a red flag raised by a play) | indicator, points, reason           |
| account.risk_updated   | record_risk, any rescoring (CRM properties only) | score, band, health_score           |
| email.sent             | Mailer.deliver, once the relay accepted it    | communication_id, template, subject, to, cc |
| ticket.incident        | record_ticket, a ticket at P0 (once per play) | ticket_id, subject, status, tier       |
"""

from __future__ import annotations

import json
from datetime import datetime

import asyncpg
from temporalio import activity

from activities.common import play_logger
from core.metrics import count
from core.models import Model, PlayEventRequest, PlayEventsRequest, PlayRef, Severity

EVENTS: dict[str, str] = {
    "play.started": "a play started",
    "play.step_done": "a play did a step",
    "play.finished": "a play ended (completed, renewed, churned, closed, cancelled)",
    "task.created": "a play created a task",
    "task.completed": "a task was completed (console, CLI, API, the CRM or the play)",
    "task.cancelled": "a cancelled play's open task was cancelled",
    "play.escalated": "an escalation (seed 001 section 9)",
    "account.band_changed": "the churn-risk band changed",
    "account.risk_flagged": "a play raised a churn-risk flag (red flag)",
    "account.risk_updated": "the churn watch rescored the account",
    "email.sent": "a play's e-mail was sent",
    "ticket.incident": "a support ticket at P0 (an incident)",
}
EVENT_NAMES = tuple(EVENTS)


class PlayEvent(Model):
    """One thing a play did. `key` is unique (the source row's idempotency key and the event);
    `occurred_at` UTC; `severity` the priority it carries (P0-P3) when it has one; `data` the
    event's fields (see the module's table)."""

    event: str
    key: str
    account_id: str | None
    occurred_at: datetime
    title: str
    workflow_id: str | None = None
    play_id: str | None = None
    step: str | None = None
    playbook: str | None = None
    severity: Severity | None = None
    data: dict = {}

    @classmethod
    def of_play(cls, play: PlayRef, event: str, key_step: str, *, step: str | None, occurred_at: datetime,
                title: str, severity: str | None = None, data: dict | None = None) -> "PlayEvent":
        """An event of a play: keyed by the play's idempotency scope and `key_step`."""
        return cls(event=event, key=play.key(key_step), account_id=play.account_id or None, occurred_at=occurred_at,
                   title=title, workflow_id=play.workflow_id, play_id=play.play_id, step=step,
                   playbook=playbook_of(play.workflow_id), severity=severity, data=data or {})


def playbook_of(workflow_id: str | None) -> str | None:
    """The playbook of a play's workflow id (`onboarding-acme` -> onboarding, `sla-T-1` -> sla)."""
    return workflow_id.split("-", 1)[0] if workflow_id else None


def jsonable(value):
    """Plain JSON values (datetimes and decimals as text), as the pool's jsonb codec takes them."""
    return json.loads(json.dumps(value, default=str))


NOTIFY_CHANNEL = "play_events"
_INSERT = """
    INSERT INTO play_events (event_key, event, account_id, workflow_id, play_id, step, playbook, occurred_at,
                             title, severity, data)
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                         $8::timestamptz[], $9::text[], $10::text[], $11::jsonb[])
    ON CONFLICT (event_key) DO NOTHING
"""


async def record_events(conn: asyncpg.Pool | asyncpg.Connection, events: list[PlayEvent]) -> None:
    """Record events once each (a repeated key is skipped) and wake the relay. Safe inside a
    transaction: the wake-up (NOTIFY) is delivered when it commits."""
    if not events:
        return
    columns = list(zip(*[
        (e.key[:1000], e.event, e.account_id, e.workflow_id, e.play_id, e.step, e.playbook, e.occurred_at,
         e.title[:500], e.severity, jsonable(e.data)) for e in events]))
    await conn.execute(_INSERT, *[list(c) for c in columns])
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)


def task_event(event: str, row, when: datetime | None = None, **extra) -> PlayEvent:
    """task.created / task.completed / task.cancelled for a `tasks` row."""
    play = PlayRef(workflow_id=row["workflow_id"], play_id=row["play_id"], account_id=row["account_id"])
    verb = event.split(".", 1)[1]
    data = {"task_id": row["id"], "title": row["title"], "detail": row["detail"], "owner_role": row["owner_role"],
            "owner_email": row["owner_email"], "due_at": row["due_at"], "priority": row["priority"],
            "milestone": row["milestone"], "task_key": row["idem_key"], **extra}
    at = when or (row["completed_at"] if verb != "created" else row["created_at"])
    return PlayEvent.of_play(play, event, f"{row['step']}/task.{verb}", step=row["step"], occurred_at=at,
                             title=f"Task {verb}: {row['title']}", severity=row["priority"], data=data)


class PlayEventActivities:
    """The plays' own news (started, step done, finished) and the phase each play is in."""

    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @activity.defn(name="record_play_event")
    async def record_play_event(self, req: PlayEventRequest) -> None:
        """Record it once per play and step, and keep `play_phases` (the phase CRM write-back names)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._record(conn, req)

    @activity.defn(name="record_play_events")
    async def record_play_events(self, req: PlayEventsRequest) -> None:
        """Several of a play's events (what it did since it last waited), in order, in one transaction:
        each recorded once, as `record_play_event` does."""
        async with self.pool.acquire() as conn, conn.transaction():
            for one in req.events:
                await self._record(conn, one)

    @staticmethod
    async def _record(conn: asyncpg.Connection, req: PlayEventRequest) -> None:
        p = req.play
        key_step = {"play.started": "play.started", "play.finished": "play.finished"}.get(
            req.event, f"play.step_done/{req.step}")
        verb = {"play.started": "started", "play.finished": "finished", "play.step_done": "did"}[req.event]
        title = f"{req.playbook} {verb}" + (f" {req.step}" if req.step else "") + (
            f" ({req.outcome})" if req.outcome and req.event == "play.finished" else "")
        event = PlayEvent.of_play(p, req.event, key_step, step=req.step, occurred_at=req.at, title=title,
                                  data={"phase": req.phase, "outcome": req.outcome})
        if p.account_id:
            await conn.execute(
                """
                INSERT INTO play_phases (workflow_id, play_id, account_id, playbook, phase, running, updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                ON CONFLICT (workflow_id) DO UPDATE SET play_id = EXCLUDED.play_id,
                    phase = coalesce(EXCLUDED.phase, play_phases.phase), running = EXCLUDED.running,
                    updated_at = EXCLUDED.updated_at
                WHERE play_phases.updated_at <= EXCLUDED.updated_at
                """,
                p.workflow_id, p.play_id, p.account_id, req.playbook,
                req.outcome if req.event == "play.finished" else req.phase,
                req.event != "play.finished", req.at)
        await record_events(conn, [event])
        if req.event == "play.started":
            count("plays_started", playbook=req.playbook)
        play_logger("play_events", p, req.step).info("play_event.recorded", play_event=req.event, phase=req.phase,
                                                     outcome=req.outcome)
