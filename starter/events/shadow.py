"""What the CRM told us about each of its objects, property by property (`crm_object_properties`).

`apply` takes an event's properties in one short transaction, the object's rows locked: a property
a newer event already set is stale and left alone (an older change never undoes a newer one); the
others are written with the value they replace. An event acted on again (it waited, or its
process died) finds its own rows and gets the same changes back. A whole-record message
(Salesforce, Zendesk) changes only the properties whose value differs.

Association rows are properties too: `assoc:company:<id>` = primary, secondary or removed.
The row `_seen` marks that the object has been heard of.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from starter.adapters.common import Incoming

SEEN = "_seen"
ASSOCIATION = "assoc:company:"


@dataclass
class Change:
    """A property's value before this event and the one it set (None: cleared, or never told)."""
    previous: str | None
    value: str | None


@dataclass
class Applied:
    """What `apply` did: the properties this event changed, those a newer event had already set."""
    changes: dict[str, Change] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    new_object: bool = False  # nothing was known of the object before this event

    @property
    def all_stale(self) -> bool:
        return bool(self.stale) and not self.changes

    def stale_outcome(self, inc: Incoming) -> str:
        if inc.whole:
            return f"stale: a newer message about this {inc.object_type} was applied"
        return f"stale: a newer change of {', '.join(self.stale)} was applied"


async def apply(pool: asyncpg.Pool, inc: Incoming, properties: dict[str, str | None] | None = None,
                object_type: str | None = None, object_id: str | None = None) -> Applied:
    """Apply `properties` (default: the event's) to the object's record of properties."""
    props = inc.properties if properties is None else properties
    object_type, object_id = object_type or inc.object_type, object_id or inc.object_id
    out = Applied()
    async with pool.acquire() as conn, conn.transaction():
        rows = {r["property"]: r for r in await conn.fetch(
            "SELECT property, value, previous_value, occurred_at, event_id FROM crm_object_properties"
            " WHERE connection = $1 AND object_type = $2 AND crm_id = $3 FOR UPDATE",
            inc.connection, object_type, object_id)}
        out.new_object = all(r["event_id"] == inc.key for r in rows.values())
        writes = []
        for name, value in {**props, SEEN: "1"}.items():
            row = rows.get(name)
            if row is not None and row["event_id"] == inc.key:
                if name != SEEN and row["previous_value"] != row["value"]:
                    out.changes[name] = Change(row["previous_value"], row["value"])
                continue
            if row is not None and row["occurred_at"] > inc.occurred_at:
                if name != SEEN:
                    out.stale.append(name)
                continue
            previous = row["value"] if row is not None else None
            if row is not None and previous == value:
                # The same value, told later: remember when, so an older change cannot undo it.
                writes.append((inc.connection, object_type, object_id, name, value, value, inc.occurred_at, inc.key))
                continue
            if name != SEEN and (row is not None or value is not None):
                out.changes[name] = Change(previous, value)
            writes.append((inc.connection, object_type, object_id, name, value, previous, inc.occurred_at, inc.key))
        if writes:
            await conn.executemany(
                """
                INSERT INTO crm_object_properties (connection, object_type, crm_id, property, value, previous_value,
                    occurred_at, event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                ON CONFLICT (connection, object_type, crm_id, property) DO UPDATE SET value = EXCLUDED.value,
                    previous_value = EXCLUDED.previous_value, occurred_at = EXCLUDED.occurred_at,
                    event_id = EXCLUDED.event_id, updated_at = now()
                """, writes)
    return out


async def read(pool: asyncpg.Pool, connection: str, object_type: str, crm_id: str) -> dict[str, str | None]:
    """The object's properties as last told (internal rows left out)."""
    rows = await pool.fetch(
        "SELECT property, value FROM crm_object_properties WHERE connection = $1 AND object_type = $2"
        " AND crm_id = $3 AND property <> $4", connection, object_type, crm_id, SEEN)
    return {r["property"]: r["value"] for r in rows}


def associations(values: dict[str, str | None]) -> list[str]:
    """Company ids an object is associated with (not removed), the primary one first."""
    found = [(v != "primary", k.removeprefix(ASSOCIATION)) for k, v in values.items()
             if k.startswith(ASSOCIATION) and v in ("primary", "secondary")]
    return [company for _, company in sorted(found)]


def without_associations(values: dict[str, str | None]) -> dict[str, str | None]:
    """The object's properties without its association rows."""
    return {k: v for k, v in values.items() if not k.startswith(ASSOCIATION)}
