"""Accounts merged by the CRM: the merged account answers as the survivor from then on.

`merge_accounts` (one transaction): the merged account's `merged_into` names the survivor (so
`fetch_account`, and with it every play still running for the merged account, reads the survivor's
people and CSM); its CRM links (companies, deals, tickets, organisations) and its contacts move to
the survivor (a person the survivor already has, by CRM key or e-mail, is kept once); the merge
is recorded in `account_merges` with what moved. Nothing is deleted but duplicate contact rows.
Running again changes nothing.
"""

from __future__ import annotations

import asyncpg


class MergeRefused(ValueError):
    """A merge that cannot be: the survivor was itself merged into the merged account."""


async def merge_accounts(pool: asyncpg.Pool, merged_id: str, into_id: str, connection: str,
                         event_id: str) -> dict[str, int]:
    """Merge `merged_id` into `into_id`; returns the counts moved (links, contacts, duplicates)."""
    if merged_id == into_id:
        return {}
    async with pool.acquire() as conn, conn.transaction():
        cycle = await conn.fetchval(
            "WITH RECURSIVE chain AS (SELECT id, merged_into, 0 AS depth FROM accounts WHERE id = $1"
            " UNION ALL SELECT a.id, a.merged_into, c.depth + 1 FROM accounts a JOIN chain c ON a.id = c.merged_into"
            " WHERE c.depth < 10) SELECT bool_or(id = $2) FROM chain", into_id, merged_id)
        if cycle:
            raise MergeRefused(f"{into_id} was merged into {merged_id}: merging back would make a cycle")
        await conn.execute("UPDATE accounts SET merged_into = $2, updated_at = now() WHERE id = $1", merged_id, into_id)
        # Links that point at the merged account, and any account merged into it earlier.
        links = await conn.execute("UPDATE crm_links SET account_id = $2, updated_at = now() WHERE account_id = $1",
                                   merged_id, into_id)
        await conn.execute("UPDATE accounts SET merged_into = $2 WHERE merged_into = $1 AND id <> $2",
                           merged_id, into_id)
        duplicates = await conn.execute(
            """
            DELETE FROM contacts m WHERE m.account_id = $1 AND EXISTS (
                SELECT 1 FROM contacts s WHERE s.account_id = $2
                AND ((m.crm_key IS NOT NULL AND s.crm_key = m.crm_key)
                     OR (m.email IS NOT NULL AND lower(s.email) = lower(m.email))))
            """, merged_id, into_id)
        contacts = await conn.execute("UPDATE contacts SET account_id = $2, updated_at = now() WHERE account_id = $1",
                                      merged_id, into_id)
        moved = {"links": _count(links), "contacts": _count(contacts), "duplicate_contacts": _count(duplicates)}
        await conn.execute(
            "INSERT INTO account_merges (merged_id, into_id, connection, event_id, moved) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (merged_id, into_id) DO NOTHING", merged_id, into_id, connection, event_id, moved)
    return moved


async def merged_ids(pool: asyncpg.Pool | asyncpg.Connection, account_id: str) -> list[str]:
    """The accounts merged into this one (directly or through others)."""
    rows = await pool.fetch(
        "WITH RECURSIVE merged AS (SELECT id, 0 AS depth FROM accounts WHERE merged_into = $1"
        " UNION ALL SELECT a.id, m.depth + 1 FROM accounts a JOIN merged m ON a.merged_into = m.id WHERE m.depth < 10)"
        " SELECT id FROM merged ORDER BY id", account_id)
    return [r["id"] for r in rows]


def _count(status: str) -> int:
    return int(status.split()[-1])
