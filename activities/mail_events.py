"""What the product does when mail tells it something: a suppression, a task for the CSM.

Shared by the send path (the relay refused a mailbox outright) and the inbound path (a
bounce, a complaint, an unsubscribe by mail). Every write is idempotent: a suppression is one
row per address and category, a task one row per recipient and kind of news.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import asyncpg

from core.logs import get_logger

log = get_logger("mail_events")
TASK_DUE = timedelta(hours=24)


async def suppress(conn: asyncpg.Pool | asyncpg.Connection, address_key: str, category: str, reason: str,
                   source: str, by: str, account_id: str | None = None, note: str = "") -> bool:
    """Add a suppression; True if it is new (an existing one for the address and category stays)."""
    inserted = await conn.fetchval(
        "INSERT INTO suppressions (address_key, category, reason, source, account_id, note, created_by)"
        " VALUES ($1, $2, $3, $4, (SELECT id FROM accounts WHERE id = $5), $6, $7)"
        " ON CONFLICT (address_key, category) DO NOTHING RETURNING id",
        address_key, category, reason, source, account_id, note[:1000], by[:200],
    )
    if inserted:
        log.info("mail.suppressed", address_key=address_key, category=category, reason=reason, source=source)
    return inserted is not None


async def task_for_csm(conn: asyncpg.Pool | asyncpg.Connection, communication: asyncpg.Record, step: str,
                       title: str, detail: str, priority: str = "P2", now: datetime | None = None) -> int | None:
    """A task for the account's CSM about an e-mail of a play, once per `step`; None without an account."""
    account_id = communication["account_id"]
    if not account_id:
        return None
    csm = await conn.fetchval("SELECT csm_email FROM accounts WHERE id = $1", account_id)
    key = f"{communication['workflow_id']}/{communication['play_id']}/{step}"
    await conn.execute(
        """
        INSERT INTO tasks (idem_key, workflow_id, play_id, step, account_id, title, detail, owner_role,
                           owner_email, due_at, priority)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'csm', $8, $9, $10) ON CONFLICT (idem_key) DO NOTHING
        """,
        key, communication["workflow_id"], communication["play_id"], step, account_id, title[:300], detail[:4000],
        csm, (now or datetime.now(timezone.utc)) + TASK_DUE, priority,
    )
    return await conn.fetchval("SELECT id FROM tasks WHERE idem_key = $1", key)
