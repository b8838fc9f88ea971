"""`crm_events`: every delivered event, once, with what became of it.

Each statement here is one short transaction on one pooled connection, never held while anything
else waits (a handler that held its connection while steering acquired another deadlocked the
service under 12 concurrent webhooks). The life of an event:

    claim (pending, claimed for WEBHOOK_CLAIM_SECONDS) -> act -> finish (done | refused | waiting)
                      \\-> a failure: pending again after a back-off, taken up by the sweeper
    waiting -> woken when what it waits for arrives (pending, due now) -> act again

A process that dies between claim and finish leaves a pending row whose claim runs out; the
vendor's retry or the sweeper acts on it again, idempotently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import asyncpg

from core.metrics import count

from starter.adapters.common import Incoming

ClaimState = Literal["fresh", "retry", "duplicate", "busy"]
MAX_BACKOFF_SECONDS = 3600


@dataclass
class Claim:
    """One event of a delivery as `claim` found it (`earlier`: a duplicate's first outcome)."""
    inc: Incoming
    state: ClaimState
    earlier: dict | None = None  # a duplicate's first outcome


async def claim(pool: asyncpg.Pool, incs: list[Incoming], lease_seconds: float) -> list[Claim]:
    """Claim each event for this process: fresh (new), retry (pending, its claim ran out),
    duplicate (already acted on, or waiting), busy (another process is acting on it now).
    A key twice in one delivery is a duplicate the second time."""
    claims: list[Claim] = []
    seen: set[str] = set()
    async with pool.acquire() as conn, conn.transaction():
        for inc in incs:
            if inc.key in seen:
                claims.append(Claim(inc, "duplicate", {"outcome": "the same event earlier in this delivery"}))
                continue
            seen.add(inc.key)
            row = await conn.fetchrow(
                """
                INSERT INTO crm_events (event_id, subscription, occurred_at, outcome, source, connection, status,
                    object_type, object_id, payload, attempts, next_attempt_at)
                VALUES ($1, $2, $3, 'pending', $4, $5, 'pending', $6, $7, $8::jsonb, 1,
                        now() + make_interval(secs => $9))
                ON CONFLICT (event_id) DO UPDATE SET attempts = crm_events.attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $9), updated_at = now()
                WHERE crm_events.status = 'pending' AND crm_events.next_attempt_at <= now()
                RETURNING (xmax = 0) AS fresh
                """,
                inc.key, inc.name[:100], inc.occurred_at, inc.source, inc.connection, inc.object_type,
                inc.object_id, inc.model_dump(mode="json"), lease_seconds,
            )
            if row is not None:
                claims.append(Claim(inc, "fresh" if row["fresh"] else "retry"))
                continue
            earlier = await conn.fetchrow(
                "SELECT status, outcome, workflow_id, trigger_name FROM crm_events WHERE event_id = $1", inc.key)
            state: ClaimState = "busy" if earlier["status"] == "pending" else "duplicate"
            claims.append(Claim(inc, state, dict(earlier)))
    return claims


async def finish(pool: asyncpg.Pool, key: str, status: str, outcome: str, *, account_id: str | None = None,
                 workflow_id: str | None = None, trigger: str | None = None,
                 wait: tuple[str, str, str, str] | None = None, retry_later: bool = False) -> None:
    """Record what became of the event. `wait`: (connection, object type, CRM id, reason) of a
    waiting event; `retry_later`: it is acted on again (a CRM lookup) after a back-off that doubles
    with each attempt, from a minute to six hours."""
    source = await pool.fetchval(
        """
        UPDATE crm_events SET status = $2, outcome = $3,
            account_id = (SELECT id FROM accounts WHERE id = $4), workflow_id = $5, trigger_name = $6,
            wait_connection = $7, wait_object_type = $8, wait_crm_id = $9, wait_reason = $10,
            waiting_since = CASE WHEN $2 = 'waiting' THEN coalesce(waiting_since, now()) END,
            next_attempt_at = CASE WHEN $11 THEN now()
                + make_interval(secs => least(60 * power(2, greatest(attempts - 1, 0)), 21600)) END,
            last_error = NULL, updated_at = now()
        WHERE event_id = $1 RETURNING source
        """,
        key, status, outcome[:2000], account_id, workflow_id, trigger,
        *(wait or (None, None, None, None)), retry_later,
    )
    # The vendor (one of four sources), never the event key: a label must have few values.
    count("webhook_events", vendor=source or "unknown", outcome=status)


def backoff(attempts: int) -> float:
    """Seconds before attempt `attempts + 1` of a failing event: 2, 4, 8, ... at most an hour."""
    return float(min(2 ** max(attempts, 1), MAX_BACKOFF_SECONDS))


async def postpone(pool: asyncpg.Pool, key: str, error: str) -> float:
    """A transient failure: the event stays pending and is tried again after a back-off that
    doubles with each attempt (at most an hour). Returns the seconds until then."""
    attempts = await pool.fetchval(
        "UPDATE crm_events SET last_error = $2, outcome = 'will retry: ' || $2,"
        " next_attempt_at = now() + make_interval(secs => least(power(2, greatest(attempts, 1)), $3)),"
        " updated_at = now() WHERE event_id = $1 RETURNING attempts",
        key, error[:1000], MAX_BACKOFF_SECONDS)
    return backoff(attempts or 1)


async def release(pool: asyncpg.Pool, keys: list[str]) -> None:
    """Claimed but not acted on (the delivery's time ran out): due now, for the sweeper."""
    if keys:
        await pool.execute("UPDATE crm_events SET next_attempt_at = now(), outcome = 'queued', updated_at = now()"
                           " WHERE event_id = ANY($1::text[]) AND status = 'pending'", keys)


def _incoming(rows) -> list[Incoming]:
    out = []
    for r in rows:
        payload = r["payload"]
        out.append(Incoming.model_validate(json.loads(payload) if isinstance(payload, str) else payload))
    return sorted(out, key=lambda i: i.occurred_at)


async def take_due(pool: asyncpg.Pool, limit: int, lease_seconds: float) -> list[Incoming]:
    """Pending events due now (queued, postponed, or claimed by a process that died), claimed
    for this process, oldest first. SKIP LOCKED: two sweepers never take the same event."""
    rows = await pool.fetch(
        """
        UPDATE crm_events SET next_attempt_at = now() + make_interval(secs => $2), attempts = attempts + 1,
            updated_at = now()
        WHERE event_id IN (SELECT event_id FROM crm_events WHERE status = 'pending' AND next_attempt_at <= now()
                           AND payload IS NOT NULL ORDER BY occurred_at LIMIT $1 FOR UPDATE SKIP LOCKED)
        RETURNING payload
        """, limit, lease_seconds)
    return _incoming(rows)


async def take_waiting(pool: asyncpg.Pool, connection: str, object_type: str, crm_ids: list[str],
                       lease_seconds: float | None) -> list[Incoming]:
    """Wake the events waiting for these objects. With `lease_seconds` they are claimed for this
    process and returned; without, they are due now for whoever sweeps first."""
    if not crm_ids:
        return []
    rows = await pool.fetch(
        """
        UPDATE crm_events SET status = 'pending', outcome = 'queued: ' || coalesce(wait_reason, ''),
            next_attempt_at = CASE WHEN $4::float8 IS NULL THEN now() ELSE now() + make_interval(secs => $4) END,
            attempts = attempts + CASE WHEN $4::float8 IS NULL THEN 0 ELSE 1 END,
            wait_connection = NULL, wait_object_type = NULL, wait_crm_id = NULL, updated_at = now()
        WHERE status = 'waiting' AND wait_connection = $1 AND wait_object_type = $2 AND wait_crm_id = ANY($3::text[])
        RETURNING payload
        """, connection, object_type, crm_ids, lease_seconds)
    return _incoming(rows)


async def wake_resolved(pool: asyncpg.Pool) -> int:
    """Wake waiting events whose object has arrived by a way that did not say so (an import
    without the resolve hook, an account made by hand): links, contacts and our own accounts."""
    result = await pool.execute(
        """
        UPDATE crm_events e SET status = 'pending', next_attempt_at = now(), updated_at = now(),
            outcome = 'queued: ' || coalesce(wait_reason, ''),
            wait_connection = NULL, wait_object_type = NULL, wait_crm_id = NULL
        WHERE e.status = 'waiting' AND (
            (e.wait_object_type = 'account' AND EXISTS (SELECT 1 FROM accounts a WHERE a.id = e.wait_crm_id))
         OR (e.wait_object_type IN ('company', 'deal', 'ticket', 'organization') AND EXISTS (
                SELECT 1 FROM crm_links l WHERE l.connection = e.wait_connection
                AND l.object_type = e.wait_object_type AND l.crm_id = e.wait_crm_id))
         OR (e.wait_object_type = 'contact' AND EXISTS (
                SELECT 1 FROM contacts c WHERE c.crm_key = e.wait_connection || ':' || e.wait_crm_id)))
        """)
    return int(result.split()[-1])


async def wake_due_lookups(pool: asyncpg.Pool, sources: list[str]) -> int:
    """Waiting events of these vendors whose next lookup is due: pending again."""
    if not sources:
        return 0
    result = await pool.execute(
        "UPDATE crm_events SET status = 'pending', next_attempt_at = now(), updated_at = now()"
        " WHERE status = 'waiting' AND source = ANY($1::text[]) AND next_attempt_at <= now()"
        " AND wait_object_type <> 'play'", sources)
    return int(result.split()[-1])


async def waiting_plays(pool: asyncpg.Pool, limit: int = 50) -> list[str]:
    """Workflow ids of plays events wait for (to see whether they have started)."""
    rows = await pool.fetch(
        "SELECT DISTINCT wait_crm_id FROM crm_events WHERE status = 'waiting' AND wait_object_type = 'play'"
        " LIMIT $1", limit)
    return [r["wait_crm_id"] for r in rows]
