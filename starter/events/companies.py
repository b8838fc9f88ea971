"""Companies and contacts from webhooks: written to the book through the connection's mapping
(playbooks/crm/*.yaml), and their changes routed as `company.propertyChange` /
`contact.propertyChange` internal events.

A company is added to the book once its name is known: HubSpot's `company.creation` carries no
properties, so what arrives first is kept (crm_object_properties) and written with the name,
whether that comes by a later change, an import or a lookup. A contact needs its company in the
book and a name or e-mail address; until then its events wait.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from playbooks.crm_connections import Connection
from playbooks.crm_mapping import Mapping
from starter.adapters.common import Incoming
from starter.book.records import account_record, by_properties, contact_record, read_value
from starter.book.store import Outcome
from starter.book.values import BadValue, split_multi
from starter.events import fetch, links, shadow
from starter.events.context import Context, Result
from starter.events.routing import CrmEvent, WaitFor
from starter.events.run import run_events
from starter.lookups import LookupFailed


def internal_property(mapping: Mapping, section: str, prop: str, raw: str | None) -> tuple[str, str | None]:
    """A CRM property as trigger rules name it: a mapped field by our field's name, its value
    read through the mapping (epoch-ms dates -> YYYY-MM-DD, money -> the amount, yes/no -> true/false);
    any other property by `webhooks.properties` (or its own name), its value as sent."""
    part = getattr(mapping, section)
    for name, rule in (part.fields.items() if part else []):
        if rule.property == prop and rule.type != "owner":
            value = read_value(rule, raw, mapping)
            if isinstance(value, tuple):
                value = value[0]
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, (date, Decimal)):
                value = value.isoformat() if isinstance(value, date) else format(value, "f")
            elif isinstance(value, list):
                value = ";".join(value)
            return name, None if value is None else str(value)
    renamed = (mapping.webhooks.properties if mapping.webhooks else {}).get(prop, prop)
    return renamed, raw


def property_events(inc: Incoming, mapping: Mapping, section: str, subscription: str, account_ids: list[str],
                    changes: dict[str, shadow.Change]) -> tuple[list[CrmEvent], list[str]]:
    """One internal event per changed property and account (cleared values start nothing);
    and the properties whose value could not be read."""
    events, unreadable = [], []
    for prop, change in changes.items():
        if prop.startswith(shadow.ASSOCIATION) or change.value is None:
            continue
        try:
            name, value = internal_property(mapping, section, prop, change.value)
        except BadValue as exc:
            unreadable.append(f"{prop}: {exc}")
            continue
        if value is None:
            continue
        for account_id in account_ids:
            events.append(CrmEvent(
                eventId=f"{inc.key}#{prop}"[:300], subscriptionType=subscription,
                occurredAt=int(inc.occurred_at.timestamp() * 1000), accountId=account_id, objectId=inc.object_id,
                propertyName=name[:100], propertyValue=value[:1000]))
    return events, unreadable


def _describe(o: Outcome, what: str) -> str:
    text = f"{what} {o.account_id or o.crm_id} {o.action}"
    if o.action == "updated" and o.changes:
        text += f" ({', '.join(o.changes)})"
    if o.action == "refused" and o.reason:
        text += f": {o.reason.column}: {o.reason.reason}"
    for w in o.warnings:
        text += f"; warning: {w.column}: {w.reason}"
    return text


async def write_company(ctx: Context, conn: Connection, crm_id: str, values: dict[str, str | None]) -> Outcome:
    """Create or update the account of a CRM company from these property values (raw, by CRM name)."""
    mapping = conn.mapping
    name_property = mapping.accounts.fields["name"].property
    if name_property in values and not (values[name_property] or "").strip():
        values = {k: v for k, v in values.items() if k != name_property}  # a name cleared in the CRM is kept
    record = account_record(mapping, by_properties({**values, mapping.accounts.id.property: crm_id}),
                            f"{conn.name} company {crm_id}")
    [outcome] = await ctx.book(mapping).accounts([record])
    if outcome.action == "created":
        ctx.resolved(conn.name, "company", [crm_id])
        ctx.resolved("generic", "account", [outcome.account_id])
    return outcome


async def company(ctx: Context, inc: Incoming, conn: Connection) -> Result:
    """A company (HubSpot) or Account (Salesforce) created or changed."""
    mapping = conn.mapping
    if mapping.accounts is None:
        return Result(f"ignored: {conn.name}'s mapping has no accounts section")
    applied = await shadow.apply(ctx.pool, inc)
    if applied.all_stale:
        return Result(applied.stale_outcome(inc))
    account_id = await links.account_for(ctx.pool, conn.name, "company", inc.object_id)
    notes = []
    if account_id is None:
        values = await shadow.read(ctx.pool, conn.name, "company", inc.object_id)
        name_property = mapping.accounts.fields["name"].property
        if not values.get(name_property):
            try:
                fetched = await fetch.read_object(ctx, conn, "company", inc.object_id)
            except LookupFailed as exc:
                raise WaitFor(conn.name, "company", inc.object_id,
                              f"company {inc.object_id} is not in the book and the CRM lookup failed: {exc}") from None
            values = {**values, **(fetched or {})}
        if not values.get(name_property):
            if inc.created and not applied.changes:
                return Result("recorded: the account is added to the book once the company's name is known")
            raise WaitFor(conn.name, "company", inc.object_id,
                          f"company {inc.object_id}: its name is not known yet (a change of {name_property}, "
                          "an import or a lookup gives it)")
        outcome = await write_company(ctx, conn, inc.object_id, values)
        notes.append(_describe(outcome, "account"))
        if outcome.action == "refused":
            return Result("; ".join(notes), "refused")
        account_id = outcome.account_id
    elif applied.changes:
        outcome = await write_company(ctx, conn, inc.object_id, {p: c.value for p, c in applied.changes.items()})
        notes.append(_describe(outcome, "account"))
    else:
        notes.append("unchanged")
    events, unreadable = property_events(inc, mapping, "accounts", "company.propertyChange", [account_id],
                                         applied.changes)
    return await run_events(ctx, events, account_id, notes + [f"not read: {u}" for u in unreadable])


# -- contacts -----------------------------------------------------------------------------------
def _company_ids(conn: Connection, values: dict[str, str | None]) -> list[str]:
    rule = conn.mapping.contacts.companies
    ids = split_multi(values.get(rule.property), rule.separator) if rule.property else []
    ids += shadow.associations(values)
    if conn.source == "salesforce":
        ids = [i for i in (fetch.sf_id(i) for i in ids) if i]
    return list(dict.fromkeys(ids))


def _has_identity(conn: Connection, values: dict[str, str | None]) -> bool:
    fields = conn.mapping.contacts.fields
    return any(values.get(fields[f].property) for f in ("name", "first_name", "last_name", "email") if f in fields)


async def write_contact(ctx: Context, conn: Connection, crm_id: str, values: dict[str, str | None],
                        company_ids: list[str]) -> list[Outcome]:
    """Create or update a CRM contact under these CRM companies (a row per account) from raw values."""
    mapping = conn.mapping
    rule = mapping.contacts.companies
    props = {**shadow.without_associations(values), mapping.contacts.id.property: crm_id,
             rule.property: rule.separator.join(company_ids)}
    record = contact_record(mapping, by_properties(props), f"{conn.name} contact {crm_id}")
    book = ctx.book(mapping)
    outcomes = await book.contacts([record])
    await book.choose_sponsors()
    return outcomes


async def _known(ctx: Context, conn: Connection, company_ids: list[str]) -> list[str]:
    return [c for c in company_ids if await fetch.ensure_company(ctx, conn, c)]


async def contact(ctx: Context, inc: Incoming, conn: Connection, applied: shadow.Applied | None = None) -> Result:
    """A contact created, changed, or associated with a company."""
    mapping = conn.mapping
    if mapping.contacts is None:
        return Result(f"ignored: {conn.name}'s mapping has no contacts section")
    applied = applied or await shadow.apply(ctx.pool, inc)
    if applied.all_stale:
        return Result(applied.stale_outcome(inc))
    values = await shadow.read(ctx.pool, conn.name, "contact", inc.object_id)
    companies = _company_ids(conn, values)
    accounts = await links.contact_accounts(ctx.pool, conn.name, inc.object_id)
    try:
        if not accounts and (not companies or not _has_identity(conn, values)):
            fetched = await fetch.read_object(ctx, conn, "contact", inc.object_id)
            values = {**values, **(fetched or {})}
            companies = list(dict.fromkeys(_company_ids(conn, values)
                                           + await fetch.companies_of(ctx, conn, "contact", inc.object_id)))
        known = await _known(ctx, conn, companies)
    except LookupFailed as exc:
        raise WaitFor(conn.name, "contact", inc.object_id,
                      f"contact {inc.object_id} is not in the book and the CRM lookup failed: {exc}") from None
    if not accounts:
        if not companies:
            raise WaitFor(conn.name, "contact", inc.object_id, f"contact {inc.object_id}: its company is not known yet")
        if not known:
            raise WaitFor(conn.name, "company", companies[0], f"company {companies[0]} is not in the book yet")
        if not _has_identity(conn, values):
            raise WaitFor(conn.name, "contact", inc.object_id,
                          f"contact {inc.object_id}: neither its name nor its e-mail address is known yet")
        outcomes = await write_contact(ctx, conn, inc.object_id, values, known)
        if any(o.action == "created" for o in outcomes):
            ctx.resolved(conn.name, "contact", [inc.object_id])
    else:
        changed = {p: c.value for p, c in applied.changes.items() if not p.startswith(shadow.ASSOCIATION)}
        targets = list(dict.fromkeys(await links.company_ids(ctx.pool, conn.name, accounts) + known))
        outcomes = await write_contact(ctx, conn, inc.object_id, changed, targets) if (changed or known) else []
    notes = [_describe(o, "contact of") for o in outcomes] or ["unchanged"]
    if any(o.action == "refused" for o in outcomes) and not any(o.action != "refused" for o in outcomes):
        return Result("; ".join(notes), "refused")
    accounts = await links.contact_accounts(ctx.pool, conn.name, inc.object_id)
    events, unreadable = property_events(inc, mapping, "contacts", "contact.propertyChange", accounts,
                                         applied.changes)
    return await run_events(ctx, events, accounts[0] if accounts else None,
                            notes + [f"not read: {u}" for u in unreadable])
