"""Deals (HubSpot deals, Salesforce Opportunities) and HubSpot's association changes.

A closed-won deal does not say which company it is for: a Salesforce Opportunity names its
`AccountId`; a HubSpot deal is found through `deal.associationChange` / `company.associationChange`
(either direction; the primary association wins) or, when lookups are on, the CRM's associations.
Until then a deal event a trigger rule would act on waits for the deal's company. Stage, close
date and amount changes become `deal.propertyChange` internal events (`dealstage` through the
mapping's `deal_stages`, `closedate` as YYYY-MM-DD, `amount` as a number).
"""

from __future__ import annotations

from playbooks.crm_connections import Connection
from playbooks.crm_mapping import WebhooksMapping
from starter.adapters import vendor_fields
from starter.adapters.common import Incoming
from starter.book.values import BadValue, parse_date, parse_money
from starter.events import fetch, links, shadow
from starter.events.companies import contact
from starter.events.context import Context, Result
from starter.events.routing import CrmEvent, WaitFor
from starter.events.run import run_events
from starter.lookups import LookupFailed


def _stage(webhooks: WebhooksMapping, raw: str) -> str:
    return WebhooksMapping.lookup(webhooks.deal_stages, raw) or "".join(raw.lower().split())


def deal_changes(conn: Connection, changes: dict[str, shadow.Change]) -> tuple[list[tuple[str, str]], list[str]]:
    """(internal property, value) pairs for what changed, and what could not be read."""
    f = vendor_fields(conn.source, "deal")
    out, unreadable = [], []
    won = f.get("won")
    if won and won in changes and (changes[won].value or "").lower() == "true":
        out.append(("dealstage", "closedwon"))
    elif f["stage"] in changes and changes[f["stage"]].value:
        out.append(("dealstage", _stage(conn.mapping.webhooks, changes[f["stage"]].value)))
    for prop, name, read in ((f["close_date"], "closedate", parse_date), (f["amount"], "amount", parse_money)):
        if prop in changes and changes[prop].value:
            try:
                value = read(changes[prop].value)
            except BadValue as exc:
                unreadable.append(f"{prop}: {exc}")
                continue
            out.append((name, value.isoformat() if name == "closedate" else format(value[0], "f")))
    return out, unreadable


async def _company_of(ctx: Context, conn: Connection, object_type: str, crm_id: str,
                      values: dict[str, str | None]) -> list[str]:
    field = vendor_fields(conn.source, object_type).get("company")
    if field:
        company = fetch.sf_id(values.get(field)) if conn.source == "salesforce" else values.get(field)
        return [company] if company else []
    return shadow.associations(values)


async def account_of(ctx: Context, conn: Connection, object_type: str, crm_id: str,
                     values: dict[str, str | None]) -> tuple[str | None, WaitFor | None]:
    """The account a deal or ticket belongs to (and its link, kept current), or what to wait for."""
    linked = await links.account_for(ctx.pool, conn.name, object_type, crm_id)
    try:
        companies = await _company_of(ctx, conn, object_type, crm_id, values)
        if not companies and linked is None:
            companies = await fetch.companies_of(ctx, conn, object_type, crm_id)
        for company in companies:
            account_id = await fetch.ensure_company(ctx, conn, company)
            if account_id is not None:
                if await links.link(ctx.pool, conn.name, object_type, crm_id, account_id):
                    ctx.resolved(conn.name, object_type, [crm_id])
                return account_id, None
    except LookupFailed as exc:
        return linked, WaitFor(conn.name, object_type, crm_id,
                               f"{object_type} {crm_id}: its company could not be looked up: {exc}")
    if linked is not None:
        return linked, None
    if companies:
        return None, WaitFor(conn.name, "company", companies[0], f"company {companies[0]} is not in the book yet")
    return None, WaitFor(conn.name, object_type, crm_id,
                         f"{object_type} {crm_id}: which company it belongs to is not known yet")


async def deal(ctx: Context, inc: Incoming, conn: Connection) -> Result:
    """A deal created or changed (HubSpot deal, Salesforce Opportunity)."""
    applied = await shadow.apply(ctx.pool, inc)
    if applied.all_stale:
        return Result(applied.stale_outcome(inc))
    values = await shadow.read(ctx.pool, conn.name, "deal", inc.object_id)
    changes, unreadable = deal_changes(conn, applied.changes)
    notes = [f"not read: {u}" for u in unreadable]
    routable = [(n, v) for n, v in changes if ctx.triggers.route("deal.propertyChange", n, v)]
    account_id, wait = await account_of(ctx, conn, "deal", inc.object_id, values)
    if not routable:
        said = ", ".join(f"{n}={v}" for n, v in changes)
        return Result("; ".join([*notes, f"recorded {said}" if said else "recorded", "no trigger matches"]),
                      account_id=account_id)
    if account_id is None:
        raise wait
    events = [CrmEvent(eventId=f"{inc.key}#{name}"[:300], subscriptionType="deal.propertyChange",
                       occurredAt=int(inc.occurred_at.timestamp() * 1000), accountId=account_id,
                       objectId=inc.object_id, propertyName=name, propertyValue=value)
              for name, value in routable]
    return await run_events(ctx, events, account_id, notes)


async def associate(ctx: Context, inc: Incoming, conn: Connection) -> Result:
    """A deal, ticket or contact associated with a company, or no longer (HubSpot)."""
    company = str(inc.related["company"])
    state = "removed" if inc.related.get("removed") else ("primary" if inc.related.get("primary") else "secondary")
    applied = await shadow.apply(ctx.pool, inc, {shadow.ASSOCIATION + company: state})
    if applied.all_stale:
        return Result("stale: a newer change of this association was applied")
    if inc.object_type == "contact":
        return await contact(ctx, inc, conn, applied)
    values = await shadow.read(ctx.pool, conn.name, inc.object_type, inc.object_id)
    before = await links.account_for(ctx.pool, conn.name, inc.object_type, inc.object_id)
    if not shadow.associations(values):
        if before is not None:
            await links.forget(ctx.pool, conn.name, inc.object_type, inc.object_id)
        return Result(f"{inc.object_type} {inc.object_id} has no company now", account_id=before)
    account_id, wait = await account_of(ctx, conn, inc.object_type, inc.object_id, values)
    if account_id is None:
        raise wait
    if account_id == before:
        return Result(f"{inc.object_type} {inc.object_id} belongs to account {account_id} (unchanged)",
                      account_id=account_id)
    return Result(f"{inc.object_type} {inc.object_id} belongs to account {account_id}", account_id=account_id)
