"""How the Book writes many rows at once: COPY for new rows, one UPDATE ... FROM a COPY'd temp
table for many changed rows, and the sponsors of many accounts in one statement per chunk.

An import writes a few thousand rows per batch; one INSERT per row (even pipelined) costs
PostgreSQL and the client far more than one binary COPY. New rows are plain inserts: a row
that appeared meanwhile (another import, a webhook) fails the batch's transaction with a
unique violation instead of being overwritten, and the import can simply be run again.
"""

from __future__ import annotations

import asyncpg

FEW = 200  # below this, one pipelined UPDATE per row beats a temp table


async def insert_rows(conn: asyncpg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """COPY `rows` (tuples in `columns` order) into `table`."""
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))


async def update_rows(conn: asyncpg.Connection, table: str, key: str, columns: tuple[str, ...],
                      rows: list[tuple]) -> None:
    """Set `columns` (and updated_at) of the rows of `table` whose `key` is each tuple's first
    value; the rest of each tuple are the columns' values. Run inside a transaction."""
    if not rows:
        return
    if len(rows) < FEW:
        sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=2))
        await conn.executemany(f"UPDATE {table} SET {sets}, updated_at = now() WHERE {key} = $1", rows)
        return
    temp = f"import_{table}_changes"
    listed = ", ".join((key, *columns))
    await conn.execute(f"CREATE TEMP TABLE {temp} ON COMMIT DROP AS SELECT {listed} FROM {table} WITH NO DATA")
    await conn.copy_records_to_table(temp, records=rows, columns=[key, *columns])
    sets = ", ".join(f"{c} = u.{c}" for c in columns)
    await conn.execute(f"UPDATE {table} t SET {sets}, updated_at = now() FROM {temp} u WHERE t.{key} = u.{key}")
    await conn.execute(f"DROP TABLE {temp}")


def _like(text: str) -> str:
    """An ILIKE pattern that finds `text` anywhere (its own % _ and \\ taken literally)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def name_sponsors(pool: asyncpg.Pool, account_ids: list[str], roles: list[str], titles: list[str]) -> list[str]:
    """For each of the accounts that has no sponsor, the first contact (in the order they were
    added) with an address, not opted out, whose role is one of `roles`; else the first whose
    title contains one of `titles` (ignoring case). Returns the accounts given a sponsor."""
    rows = await pool.fetch(
        "UPDATE accounts a SET sponsor_name = s.name, sponsor_email = s.email, updated_at = now()"
        " FROM (SELECT DISTINCT ON (c.account_id) c.account_id, c.name, c.email FROM contacts c"
        "       WHERE c.account_id = ANY($1::text[]) AND c.email IS NOT NULL AND NOT c.email_opt_out"
        "         AND (lower(c.role) = ANY($2::text[]) OR c.title ILIKE ANY($3::text[]))"
        "       ORDER BY c.account_id, coalesce(lower(c.role) = ANY($2::text[]), false) DESC, c.id) s"
        " WHERE a.id = s.account_id AND a.sponsor_email IS NULL RETURNING a.id",
        account_ids, [r.lower() for r in roles], [_like(t) for t in titles])
    return sorted(r["id"] for r in rows)


async def accounts_with_contacts_since(pool: asyncpg.Pool, since, size: int):
    """The accounts without a sponsor that have a contact written at or after `since`, `size`
    ids at a time in id order (keyset: each chunk is one indexed range of accounts)."""
    after = ""
    while True:
        ids = [r["id"] for r in await pool.fetch(
            "SELECT a.id FROM accounts a WHERE a.id > $1 AND a.sponsor_email IS NULL ORDER BY a.id LIMIT $2",
            after, size)]
        if not ids:
            return
        after = ids[-1]
        chosen = [r["account_id"] for r in await pool.fetch(
            "SELECT DISTINCT account_id FROM contacts WHERE account_id = ANY($1::text[]) AND updated_at >= $2",
            ids, since)]
        if chosen:
            yield chosen


async def analyze(pool: asyncpg.Pool, tables: tuple[str, ...]) -> None:
    """Refresh the planner's statistics of tables an import just grew (autovacuum comes later:
    without them, lookups by account fall back to scanning the whole table)."""
    for table in tables:
        await pool.execute(f"ANALYZE {table}")
