"""Webhook events waiting for an object the book did not have yet (a closed-won deal before its
company, a ticket before its organisation), and the hook that releases them.

`resolve_waiting(pool, connection, object_type, crm_ids)` is called by whatever adds objects to
the book (the importer, after an import is applied): the events waiting for those objects are
due at once. The HTTP service's sweeper acts on them within WEBHOOK_SWEEP_SECONDS; a caller with a
Temporal client and settings may pass them to have them acted on before it returns.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel


class WaitingEvent(BaseModel):
    """One waiting event as the console lists it."""

    event_id: str
    source: str
    connection: str | None
    event: str
    object_type: str | None
    object_id: str | None
    waits_for: str
    reason: str
    since: datetime
    attempts: int


async def resolve_waiting(pool: asyncpg.Pool, connection: str, object_type: str, crm_ids: list[str],
                          client=None, settings=None) -> int:
    """Release the events waiting for these CRM objects (object_type: company, contact, deal,
    ticket, organization); returns how many. Acted on now when `client` and `settings` are given,
    else by the sweeper. Safe to call with objects nobody waits for (it then does nothing)."""
    from starter.events import ledger

    ids = [str(i) for i in crm_ids if i is not None]
    if client is None or settings is None:
        return len(await ledger.take_waiting(pool, connection, object_type, ids, None))
    from starter.events.context import Context
    from starter.events.pipeline import act_one, settle

    ctx = Context(client, pool, settings)
    woken = await ledger.take_waiting(pool, connection, object_type, ids, settings.webhook_claim_seconds)
    for inc in woken:
        await act_one(ctx, inc)
    await settle(ctx)
    return len(woken)


async def waiting_events(pool: asyncpg.Pool, limit: int = 500, source: str | None = None) -> list[WaitingEvent]:
    """What waits, oldest first, with what for and why."""
    rows = await pool.fetch(
        """
        SELECT event_id, source, connection, subscription, object_type, object_id, wait_connection,
               wait_object_type, wait_crm_id, wait_reason, coalesce(waiting_since, received_at) AS since, attempts
        FROM crm_events WHERE status = 'waiting' AND ($2::text IS NULL OR source = $2)
        ORDER BY since, event_id LIMIT $1
        """, limit, source)
    out = []
    for r in rows:
        what = r["wait_object_type"] or "?"
        where = "" if r["wait_connection"] in (None, "*", "generic") else f"{r['wait_connection']} "
        out.append(WaitingEvent(
            event_id=r["event_id"], source=r["source"], connection=r["connection"], event=r["subscription"],
            object_type=r["object_type"], object_id=r["object_id"], waits_for=f"{where}{what} {r['wait_crm_id']}",
            reason=r["wait_reason"] or "", since=r["since"], attempts=r["attempts"]))
    return out


async def event_counts(pool: asyncpg.Pool) -> dict[str, int]:
    """Events by status (pending, waiting, done, refused)."""
    rows = await pool.fetch("SELECT status, count(*) AS n FROM crm_events GROUP BY status")
    return {r["status"]: r["n"] for r in rows}
