"""What the pipeline asks a CRM when a webhook lacks it (starter/lookups.py does the HTTP), and
`ensure_company`: our account for a CRM company, created from a lookup when the book does not
have it yet. Every function answers None when lookups are off for the vendor or the CRM has no
such record; `LookupFailed` when the CRM could not be asked (the caller waits and retries)."""

from __future__ import annotations

from playbooks.crm_connections import Connection
from playbooks.crm_mapping import Mapping
from starter.adapters import hubspot, salesforce, vendor_fields
from starter.book.records import account_record, by_properties
from starter.book.values import BadValue, salesforce_id
from starter.events import links
from starter.events.context import Context


def _properties(mapping: Mapping, section: str) -> list[str]:
    part = getattr(mapping, section)
    if part is None:
        return []
    rules = [part.id, *part.fields.values()] + ([part.companies] if section == "contacts" else [])
    return [r.property for r in rules if r.property]


def sf_id(raw: str | None) -> str | None:
    """The 18-character Salesforce id, or None when `raw` is not one."""
    try:
        return salesforce_id(raw)
    except BadValue:
        return None


async def read_object(ctx: Context, conn: Connection, object_type: str, crm_id: str,
                      extra: list[str] = ()) -> dict[str, str | None] | None:
    """The CRM's record of a company, contact, deal or ticket (the mapping's properties and `extra`)."""
    if not ctx.lookups.enabled(conn.source):
        return None
    section = {"company": "accounts", "contact": "contacts"}.get(object_type)
    wanted = (_properties(conn.mapping, section) if section else []) + list(extra) + \
        list(vendor_fields(conn.source, object_type).values())
    if conn.source == "hubspot":
        return await ctx.lookups.hubspot_object(hubspot.API_OBJECTS[object_type], crm_id,
                                                [w for w in wanted if w != "Id"])
    return await ctx.lookups.salesforce_record(salesforce.SOBJECTS[object_type], crm_id, ["Id", *wanted])


async def companies_of(ctx: Context, conn: Connection, object_type: str, crm_id: str) -> list[str]:
    """The companies a deal, ticket or contact belongs to, as the CRM says now (primary first)."""
    if not ctx.lookups.enabled(conn.source):
        return []
    if conn.source == "hubspot":
        return [c for c, _ in await ctx.lookups.hubspot_associations(hubspot.API_OBJECTS[object_type], crm_id,
                                                                         "companies")]
    record = await read_object(ctx, conn, object_type, crm_id)
    company = sf_id((record or {}).get("AccountId"))
    return [company] if company else []


async def ensure_company(ctx: Context, conn: Connection, company_id: str) -> str | None:
    """Our account for the CRM company; when the book does not have it and lookups are on, the
    company is read from the CRM and added to the book. None when it stays unknown."""
    account_id = await links.account_for(ctx.pool, conn.name, "company", company_id)
    if account_id is not None or not ctx.lookups.enabled(conn.source) or conn.mapping.accounts is None:
        return account_id
    values = await read_object(ctx, conn, "company", company_id)
    if not values:
        return None
    mapping = conn.mapping
    record = account_record(mapping, by_properties({**values, mapping.accounts.id.property: company_id}),
                            f"{conn.name} company {company_id} (lookup)")
    [outcome] = await ctx.book(mapping).accounts([record])
    if outcome.action == "refused" or outcome.account_id is None:
        return None
    if outcome.action == "created":
        ctx.resolved(conn.name, "company", [company_id])
        ctx.resolved("generic", "account", [outcome.account_id])
    return outcome.account_id
