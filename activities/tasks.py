"""Tasks in PostgreSQL: created once per play step, completed by people.

Completing a task from outside (CLI, HTTP) goes through `complete_task_by_id`
and then signals the play that created it, so a milestone wait ends.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from temporalio import activity

from activities.accounts import account_for_activity, fetch_staff
from activities.common import not_retryable, play_logger
from activities.email import resolve_roles
from activities.play_events import record_events, task_event
from core.metrics import count
from core.models import (
    CompleteTaskRequest, CreateTaskRequest, CreateTasksRequest, PlayRef, RescheduleTasksRequest, TaskRef,
)


class TaskNotFound(LookupError):
    pass


def task_ref(row: asyncpg.Record) -> TaskRef:
    return TaskRef(
        task_id=row["id"], step=row["step"], title=row["title"], owner_role=row["owner_role"],
        owner_email=row["owner_email"], due_at=row["due_at"], priority=row["priority"],
        status=row["status"], milestone=row["milestone"], completed_at=row["completed_at"],
    )


async def _mark_completed(pool: asyncpg.Pool, where: str, value, completed_by: str,
                          via: str | None = None) -> asyncpg.Record | None:
    """Complete a task once: a second completion keeps the first time and person. Records
    `task.completed` once (`via`: the CRM connection it came from, which is not written back to)."""
    assert where in ("id", "idem_key")
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"""
            UPDATE tasks SET status = 'completed', completed_at = COALESCE(completed_at, now()),
                   completed_by = COALESCE(completed_by, $2)
            WHERE {where} = $1 RETURNING *
            """,
            value, completed_by,
        )
        if row is not None and row["status"] == "completed":
            await record_events(conn, [task_event("task.completed", row, completed_by=row["completed_by"],
                                                  via=via)])
    return row


async def complete_task_by_id(pool: asyncpg.Pool, task_id: int, completed_by: str,
                              via: str | None = None) -> asyncpg.Record:
    """Mark a task completed (idempotent); returns the row, with its workflow id to signal. `via`:
    the CRM connection the completion came from (its record is already completed there)."""
    row = await _mark_completed(pool, "id", task_id, completed_by, via)
    if row is None:
        raise TaskNotFound(f"no task with id {task_id}")
    return row


class TaskActivities:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    @activity.defn(name="create_task")
    async def create_task(self, req: CreateTaskRequest) -> TaskRef:
        key = req.play.key(req.step)
        owner_email = req.owner_email
        if owner_email is None and req.owner_role is not None:
            account = await account_for_activity(self.pool, req.play.account_id)
            owners = resolve_roles([req.owner_role], account, await fetch_staff(self.pool))
            owner_email = str(owners[0].email) if owners else None
        row = await self.pool.fetchrow(
            """
            INSERT INTO tasks (idem_key, workflow_id, play_id, step, account_id, title, detail,
                               owner_role, owner_email, due_at, priority, milestone)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
            ON CONFLICT (idem_key) DO NOTHING RETURNING *
            """,
            key, req.play.workflow_id, req.play.play_id, req.step, req.play.account_id, req.title,
            req.detail, req.owner_role, owner_email, req.due_at, req.priority, req.milestone,
        )
        created = row is not None
        if created:
            count("tasks_created", playbook=req.play.workflow_id.split("-", 1)[0])
        if row is None:
            row = await self.pool.fetchrow("SELECT * FROM tasks WHERE idem_key = $1", key)
        # After the row, on every attempt: a retry after a crash between the two records it then.
        await record_events(self.pool, [task_event("task.created", row)])
        play_logger("tasks", req.play, req.step).info(
            "task.created" if created else "task.already_exists", task_id=row["id"], title=row["title"]
        )
        return task_ref(row)

    @activity.defn(name="create_tasks")
    async def create_tasks(self, req: CreateTasksRequest) -> list[TaskRef]:
        """Every task of one play step at once: one statement and one transaction for the rows and
        their `task.created` events, one read of the account and the staff for the owners. Each
        task is still created once per (play, step) (its idempotency key); a retry returns the
        rows written before. Returns one TaskRef per requested task, in the order asked for."""
        if not req.tasks:
            return []
        p = req.play
        owners: dict[str, str | None] = {}
        if any(t.owner_email is None and t.owner_role is not None for t in req.tasks):
            account = await account_for_activity(self.pool, p.account_id)
            staff = await fetch_staff(self.pool)
            for role in {t.owner_role for t in req.tasks if t.owner_role is not None}:
                found = resolve_roles([role], account, staff)
                owners[role] = str(found[0].email) if found else None
        keys = [p.key(t.step) for t in req.tasks]
        cols = list(zip(*[
            (key, t.step, t.title, t.detail, t.owner_role,
             t.owner_email if t.owner_email is not None else owners.get(t.owner_role), t.due_at, t.priority,
             t.milestone)
            for key, t in zip(keys, req.tasks)]))
        async with self.pool.acquire() as conn, conn.transaction():
            created = await conn.fetch(
                """
                INSERT INTO tasks (idem_key, workflow_id, play_id, step, account_id, title, detail,
                                   owner_role, owner_email, due_at, priority, milestone)
                SELECT k, $10, $11, s, $12, ti, d, o_r, o_e, due, pr, m
                FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                            $7::timestamptz[], $8::text[], $9::text[]) AS t(k, s, ti, d, o_r, o_e, due, pr, m)
                ON CONFLICT (idem_key) DO NOTHING RETURNING id
                """,
                *[list(c) for c in cols], p.workflow_id, p.play_id, p.account_id,
            )
            rows = {r["idem_key"]: r for r in await conn.fetch("SELECT * FROM tasks WHERE idem_key = ANY($1::text[])",
                                                                keys)}
            # On every attempt, after the rows: a retry after a crash records what it missed (once each).
            await record_events(conn, [task_event("task.created", rows[k]) for k in dict.fromkeys(keys)])
        if created:
            count("tasks_created", value=len(created), playbook=p.workflow_id.split("-", 1)[0])
        play_logger("tasks", p).info("tasks.created", created=len(created), asked=len(keys),
                                     steps=[t.step for t in req.tasks])
        return [task_ref(rows[k]) for k in keys]

    @activity.defn(name="complete_task")
    async def complete_task(self, req: CompleteTaskRequest) -> TaskRef:
        row = await _mark_completed(self.pool, "idem_key", req.play.key(req.step), req.completed_by)
        if row is None:
            raise not_retryable(f"the play has no task for step {req.step!r}", "TaskNotFound")
        return task_ref(row)

    @activity.defn(name="reschedule_tasks")
    async def reschedule_tasks(self, req: RescheduleTasksRequest) -> int:
        keys = [req.play.key(step) for step in req.due_dates]
        dues: list[datetime] = list(req.due_dates.values())
        result = await self.pool.execute(
            """
            UPDATE tasks SET due_at = new.due_at
            FROM unnest($1::text[], $2::timestamptz[]) AS new(idem_key, due_at)
            WHERE tasks.idem_key = new.idem_key AND tasks.status <> 'completed'
            """,
            keys, dues,
        )
        return int(result.split()[-1])

    @activity.defn(name="cancel_open_tasks")
    async def cancel_open_tasks(self, play: PlayRef) -> list[TaskRef]:
        """A cancelled play's open tasks leave the to-do lists; returns them as cancelled."""
        rows = await self.pool.fetch(
            """
            UPDATE tasks SET status = 'cancelled', completed_at = COALESCE(completed_at, now()),
                   completed_by = COALESCE(completed_by, 'play cancelled')
            WHERE workflow_id = $1 AND play_id = $2 AND status NOT IN ('completed', 'cancelled') RETURNING *
            """,
            play.workflow_id, play.play_id,
        )
        # A retry after a crash finds the tasks already cancelled (and their events recorded, or not:
        # then the cancelled rows without their event are recorded now).
        cancelled = await self.pool.fetch(
            "SELECT * FROM tasks WHERE workflow_id = $1 AND play_id = $2 AND status = 'cancelled'",
            play.workflow_id, play.play_id)
        await record_events(self.pool, [task_event("task.cancelled", r) for r in cancelled])
        play_logger("tasks", play).info("tasks.cancelled", count=len(rows))
        return [task_ref(r) for r in rows]
