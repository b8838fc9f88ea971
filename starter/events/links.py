"""Which CRM object is which of our accounts (`crm_links`), as the webhooks read and write it.

object_type: company (a HubSpot company, a Salesforce Account), organization (Zendesk), deal,
ticket. A deal's or ticket's link names the account of its company, so a closed-won deal or a
ticket finds its account. Every lookup follows `accounts.merged_into` to the surviving account.
"""

from __future__ import annotations

import asyncpg

_SURVIVOR = """
    WITH RECURSIVE chain AS (SELECT a.id, a.merged_into, 0 AS depth FROM accounts a WHERE a.id = $1
      UNION ALL SELECT a.id, a.merged_into, c.depth + 1 FROM accounts a JOIN chain c ON a.id = c.merged_into
      WHERE c.depth < 10)
    SELECT id FROM chain ORDER BY depth DESC LIMIT 1
"""


async def survivor(pool: asyncpg.Pool, account_id: str) -> str | None:
    """The account itself, or the one it was merged into; None when there is no such account."""
    return await pool.fetchval(_SURVIVOR, account_id)


async def account_for(pool: asyncpg.Pool, connection: str, object_type: str, crm_id: str | None) -> str | None:
    """Our account for a CRM object, or None when the book does not know it."""
    if not crm_id:
        return None
    account_id = await pool.fetchval(
        "SELECT account_id FROM crm_links WHERE connection = $1 AND object_type = $2 AND crm_id = $3",
        connection, object_type, crm_id)
    return await survivor(pool, account_id) if account_id else None


async def link(pool: asyncpg.Pool, connection: str, object_type: str, crm_id: str, account_id: str) -> bool:
    """Point the CRM object at the account; True when that is new (or changed)."""
    changed = await pool.fetchval(
        """
        INSERT INTO crm_links (connection, object_type, crm_id, account_id) VALUES ($1, $2, $3, $4)
        ON CONFLICT (connection, object_type, crm_id) DO UPDATE SET account_id = EXCLUDED.account_id, updated_at = now()
        WHERE crm_links.account_id IS DISTINCT FROM EXCLUDED.account_id
        RETURNING true
        """, connection, object_type, crm_id, account_id)
    return bool(changed)


async def forget(pool: asyncpg.Pool, connection: str, object_type: str, crm_id: str) -> bool:
    """The CRM object no longer belongs to any account (its last association was removed)."""
    result = await pool.execute("DELETE FROM crm_links WHERE connection = $1 AND object_type = $2 AND crm_id = $3",
                                connection, object_type, crm_id)
    return not result.endswith(" 0")


async def contact_accounts(pool: asyncpg.Pool, connection: str, crm_id: str) -> list[str]:
    """The accounts a CRM contact is a person of (one row per account)."""
    rows = await pool.fetch("SELECT DISTINCT account_id FROM contacts WHERE crm_key = $1 ORDER BY account_id",
                            f"{connection}:{crm_id}")
    return [r["account_id"] for r in rows]


async def company_ids(pool: asyncpg.Pool, connection: str, account_ids: list[str]) -> list[str]:
    """The CRM company ids of these accounts (to address a contact's update to its companies)."""
    rows = await pool.fetch(
        "SELECT crm_id FROM crm_links WHERE connection = $1 AND object_type = 'company'"
        " AND account_id = ANY($2::text[]) ORDER BY crm_id", connection, account_ids)
    return [r["crm_id"] for r in rows]
