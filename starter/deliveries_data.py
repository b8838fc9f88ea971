"""What the console's Deliveries pages and `csplay deliveries` show: the outbox of chat messages,
CRM writes and webhooks (`deliveries`), each one's attempts, and what is configured on or off."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from activities.notice_routing import (
    chat_destination_on, current_connections, current_notifications, subscription_on, write_back_on,
)
from core.settings import Settings
from playbooks.loader import PlaybookError

KINDS = ("chat", "crm", "webhook")
STATUSES = ("pending", "sending", "delivered", "failed")
PAGE = 50


async def list_deliveries(pool: asyncpg.Pool, kind: str | None = None, status: str | None = None,
                          account: str | None = None, q: str = "", page: int = 1, limit: int = PAGE) -> dict:
    """A page of deliveries, newest first, with the counts per status of the same filter (not by status)."""
    where, args = ["true"], []
    for column, value in (("kind", kind), ("account_id", account)):
        if value:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if q:
        args.append(f"%{q.lower()}%")
        where.append(f"(lower(summary) LIKE ${len(args)} OR lower(destination) LIKE ${len(args)}"
                     f" OR lower(event) LIKE ${len(args)} OR lower(coalesce(last_error, '')) LIKE ${len(args)})")
    base = " AND ".join(where)
    counts = {r["status"]: r["n"] for r in await pool.fetch(
        f"SELECT status, count(*) AS n FROM deliveries WHERE {base} GROUP BY status", *args)}
    if status:
        args.append(status)
        base += f" AND status = ${len(args)}"
    args += [limit, (max(page, 1) - 1) * limit]
    rows = await pool.fetch(
        f"SELECT id, kind, channel, destination, operation, event, account_id, workflow_id, summary, status, attempts,"
        f" next_attempt_at, last_status, last_error, remote_id, replays, created_at, delivered_at, updated_at"
        f" FROM deliveries WHERE {base} ORDER BY id DESC LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    return {"rows": [dict(r) for r in rows], "counts": counts, "page": max(page, 1),
            "more": len(rows) == limit}


async def delivery_detail(pool: asyncpg.Pool, delivery_id: int) -> dict | None:
    """One delivery, its attempts (oldest first) and the play event it came from; None if unknown."""
    row = await pool.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery_id)
    if row is None:
        return None
    attempts = await pool.fetch("SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id", delivery_id)
    event = await pool.fetchrow("SELECT * FROM play_events WHERE id = $1", row["event_id"]) if row["event_id"] else None
    return {"d": dict(row), "attempts": [dict(a) for a in attempts], "event": dict(event) if event else None}


@dataclass
class Switch:
    """One configurable thing and whether it sends: `why` says what is missing when it does not."""

    what: str
    name: str
    on: bool
    why: str = ""
    detail: str = ""


def configuration(settings: Settings) -> tuple[list[Switch], list[str]]:
    """Every destination, subscription and CRM connection, on or off and why; and the content
    problems (file:line: field: message) that hold routing."""
    switches: list[Switch] = []
    problems: list[str] = []
    try:
        content = current_notifications(settings)
    except PlaybookError as exc:
        problems += str(exc).splitlines()
        content = None
    if content is not None:
        for name, dest in sorted(content.destinations.items()):
            why = chat_destination_on(settings, content, name)
            target = dest.slack_channel or dest.secret_name or ""
            switches.append(Switch("chat", name, why is None, why or "", f"{dest.channel} {target}".strip()))
        for sub in content.webhooks:
            why = subscription_on(settings, sub.name)
            switches.append(Switch("webhook", sub.name, why is None, why or "", f"{sub.url} ({len(sub.events)} events)"))
    try:
        connections = current_connections(settings)
    except (PlaybookError, FileNotFoundError) as exc:
        problems += str(exc).splitlines()
        connections = None
    if connections is not None:
        for name, conn in sorted(connections.by_name.items()):
            if conn.source not in ("hubspot", "salesforce"):
                continue
            why = write_back_on(settings, connections, name)
            switches.append(Switch("crm", name, why is None, why or "", conn.source))
    return switches, problems


async def erase_person(conn: asyncpg.Connection, names: set[str], emails: set[str], scrub) -> dict[str, int]:
    """A privacy erasure (starter/book/privacy.py) reaches play events and deliveries too: their
    texts are scrubbed (`scrub` replaces the person's names and addresses), and a delivery not made
    yet that is about them is not made (failed, saying why). Returns rows changed per table."""
    import json

    words = sorted({n for n in names if n and len(n) >= 2} | emails)
    if not words:
        return {"play_events": 0, "deliveries": 0}
    like = [f"%{w.lower()}%" for w in words]

    def clean(value):
        text = scrub(json.dumps(value, ensure_ascii=False))
        try:
            return json.loads(text)
        except ValueError:
            return {"erased": True}

    events = await conn.fetch("SELECT id, title, data FROM play_events WHERE lower(title) LIKE ANY($1::text[])"
                              " OR lower(data::text) LIKE ANY($1::text[])", like)
    for e in events:
        await conn.execute("UPDATE play_events SET title = $2, data = $3 WHERE id = $1", e["id"], scrub(e["title"]),
                           clean(e["data"]))
    rows = await conn.fetch("SELECT id, status, summary, payload FROM deliveries WHERE lower(summary) LIKE ANY($1::text[])"
                            " OR lower(payload::text) LIKE ANY($1::text[])", like)
    for r in rows:
        undone = r["status"] in ("pending", "sending")
        await conn.execute(
            "UPDATE deliveries SET summary = $2, payload = $3, updated_at = now(),"
            " status = CASE WHEN $4 THEN 'failed' ELSE status END,"
            " last_error = CASE WHEN $4 THEN 'erased: the person asked for their data to be erased' ELSE last_error END"
            " WHERE id = $1", r["id"], scrub(r["summary"]), clean(r["payload"]), undone)
    return {"play_events": len(events), "deliveries": len(rows)}
