"""Tickets (HubSpot tickets, Salesforce Cases, Zendesk tickets) drive the SLA clock.

Our ticket id is `<ticket_prefix>-<the CRM's id>` (ZD-48213, HS-3487201956, SF-5005g...). The
first time a ticket is heard of (its creation, or any change of a ticket whose clock never ran)
becomes `ticket.creation` with its priority (the mapping's `ticket_priorities`, else
`ticket_default_priority`), subject and the time it was opened; later changes become
`ticket.propertyChange hs_ticket_priority=P0..P3` and `hs_pipeline_stage=<stage>` where the stage
comes from `ticket_stages` and a move back from resolved/closed is `reopened`, a move from a hold
back to work `customer_replied`. A ticket finds its account through its company (Salesforce
`AccountId`, HubSpot associations) or its Zendesk organisation, whose `external_id` names a
company of another connection (`organization_external_id`); until then it waits.
"""

from __future__ import annotations

from datetime import datetime, timezone

from temporalio.client import WorkflowExecutionStatus

from playbooks.crm_connections import Connection
from playbooks.crm_mapping import TICKET_STAGES, WebhooksMapping
from starter.adapters import vendor_fields
from starter.adapters.common import Incoming
from starter.events import fetch, links, shadow
from starter.events.context import Context, Result
from starter.events.deals import account_of
from starter.events.routing import CrmEvent, WaitFor, _play_state
from starter.events.run import run_events
from workflows.sla_messages import sla_workflow_id

DONE = ("resolved", "closed")
HOLD = ("on_hold", "waiting_on_customer")
VENDOR = {"hubspot": "HubSpot", "salesforce": "Salesforce", "zendesk": "Zendesk"}


def stage_of(webhooks: WebhooksMapping, raw: str | None) -> str | None:
    """The internal stage of a CRM status: the mapping's, or the value itself when it already is one."""
    if raw is None:
        return None
    mapped = WebhooksMapping.lookup(webhooks.ticket_stages, raw)
    if mapped:
        return mapped
    return raw.lower() if raw.lower() in TICKET_STAGES else None


def transition(previous: str | None, now: str | None) -> str | None:
    """The stage event a move from `previous` to `now` is (None: nothing to tell the clock)."""
    if now is None or now == previous or now == "new" and previous not in DONE:
        return None
    if previous in DONE and now not in DONE:
        return "reopened"
    if now in ("acknowledged", "in_progress") and previous in HOLD:
        return "customer_replied"
    return now


def _opened(values: dict[str, str | None], field: str | None, fallback: datetime) -> datetime:
    raw = values.get(field) if field else None
    if raw:
        if raw.isdigit():
            return datetime.fromtimestamp(int(raw) / 1000, tz=timezone.utc)
        try:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    return fallback


async def _zendesk_account(ctx: Context, conn: Connection, inc: Incoming,
                           values: dict[str, str | None]) -> tuple[str | None, WaitFor | None]:
    f = vendor_fields("zendesk", "ticket")
    org, external = values.get(f["organization"]), values.get(f["organization_external_id"])
    if not org:
        return None, None
    account_id = await links.account_for(ctx.pool, conn.name, "organization", org)
    if account_id is None and external:
        other = conn.mapping.webhooks.organization_external_id
        if other:
            source = getattr(ctx.connections().by_name.get(other), "source", None)
            company = fetch.sf_id(external) if source == "salesforce" or other == "salesforce" else external
            account_id = await links.account_for(ctx.pool, other, "company", company or external)
            if account_id is None:
                name = values.get(f["organization_name"]) or org
                return None, WaitFor(other, "company", company or external,
                                     f"organisation {name}: company {company or external} of {other} is not in "
                                     "the book yet")
        if account_id is not None and await links.link(ctx.pool, conn.name, "organization", org, account_id):
            ctx.resolved(conn.name, "organization", [org])
    if account_id is None:
        return None, WaitFor(conn.name, "organization", org,
                             f"organisation {org} is not linked to an account yet (a trigger webhook with its "
                             "external_id, or an import, links it)")
    return account_id, None


async def ticket_account(ctx: Context, conn: Connection, inc: Incoming,
                         values: dict[str, str | None]) -> tuple[str | None, WaitFor | None]:
    """The ticket's account (its link kept current), or what to wait for; (None, None) when it has
    no company or organisation at all."""
    if conn.source == "zendesk":
        account_id, wait = await _zendesk_account(ctx, conn, inc, values)
        if account_id is not None and await links.link(ctx.pool, conn.name, "ticket", inc.object_id, account_id):
            ctx.resolved(conn.name, "ticket", [inc.object_id])
        return account_id, wait
    return await account_of(ctx, conn, "ticket", inc.object_id, values)


def ticket_priority_map(settings, webhooks: WebhooksMapping) -> tuple[dict[str, str], str]:
    """(help-desk label -> priority, the default priority) for tickets of this connection: the
    active profile's `ticket_priorities` when it gives them (profile.yaml), else the mapping's own."""
    from playbooks.profiles import profile_of

    own = profile_of(settings).content.ticket_priorities
    if own is not None:
        return own.map, own.default
    return webhooks.ticket_priorities, webhooks.ticket_default_priority


async def ticket(ctx: Context, inc: Incoming, conn: Connection) -> Result:
    """A ticket created or changed (HubSpot ticket, Salesforce Case, Zendesk ticket)."""
    webhooks = conn.mapping.webhooks
    f = vendor_fields(conn.source, "ticket")
    applied = await shadow.apply(ctx.pool, inc)
    if applied.all_stale:
        return Result(applied.stale_outcome(inc))
    values = await shadow.read(ctx.pool, conn.name, "ticket", inc.object_id)
    if conn.source != "zendesk" and not values.get(f["subject"]) and await _play_state(
            ctx.client, sla_workflow_id(f"{webhooks.ticket_prefix}-{inc.object_id}")) is None:
        values = {**values, **(await _lookup(ctx, conn, inc) or {})}
    ticket_id = f"{webhooks.ticket_prefix}-{inc.object_id}"
    workflow_id = sla_workflow_id(ticket_id)
    raw_priority = values.get(f["priority"])
    labels, default_priority = ticket_priority_map(ctx.settings, webhooks)
    priority = WebhooksMapping.lookup(labels, raw_priority)
    notes = [] if priority or not raw_priority else [f"priority {raw_priority!r} is not in ticket_priorities: "
                                                      f"{default_priority} taken"]
    stage = stage_of(webhooks, values.get(f["stage"]))
    if stage is None and values.get(f["stage"]) and f["stage"] in applied.changes:
        notes.append(f"stage {values.get(f['stage'])!r} is not in ticket_stages: the clock is not told")
    state = await _play_state(ctx.client, workflow_id)
    base = dict(occurredAt=int(inc.occurred_at.timestamp() * 1000), objectId=inc.object_id, ticketId=ticket_id)
    wanted: list[dict] = []
    if state is None:
        if stage in DONE:
            return Result(f"ignored: the ticket is {stage} and its SLA clock never ran")
        opened = _opened(values, f.get("opened"), inc.occurred_at)
        subject = (values.get(f["subject"]) or f"{VENDOR[conn.source]} ticket {inc.object_id}").strip()[:500]
        wanted.append(dict(subscriptionType="ticket.creation", priority=priority or default_priority,
                           subject=subject, **{**base, "occurredAt": int(opened.timestamp() * 1000)}))
        if stage in ("acknowledged", "in_progress", *HOLD):
            wanted.append(dict(subscriptionType="ticket.propertyChange", propertyName="hs_pipeline_stage",
                               propertyValue=stage, **base))
    elif state != WorkflowExecutionStatus.RUNNING:
        return Result(f"ignored: {workflow_id} has ended ({state.name.lower()})")
    else:
        if f["priority"] in applied.changes and priority:
            wanted.append(dict(subscriptionType="ticket.propertyChange", propertyName="hs_ticket_priority",
                               propertyValue=priority, **base))
        if f["stage"] in applied.changes:
            moved = transition(stage_of(webhooks, applied.changes[f["stage"]].previous), stage)
            if moved:
                wanted.append(dict(subscriptionType="ticket.propertyChange", propertyName="hs_pipeline_stage",
                                   propertyValue=moved, **base))
    if not wanted:
        return Result("; ".join([*notes, "unchanged"]))
    account_id, wait = await ticket_account(ctx, conn, inc, values)
    if account_id is None:
        if wait is None:
            return Result(f"ignored: the ticket has no {'organisation' if conn.source == 'zendesk' else 'company'}")
        raise wait
    events = [CrmEvent(eventId=f"{inc.key}#{i}"[:300], accountId=account_id, **w) for i, w in enumerate(wanted)]
    return await run_events(ctx, events, account_id, notes)


async def _lookup(ctx: Context, conn: Connection, inc: Incoming) -> dict[str, str | None] | None:
    """A ticket heard of without its subject and priority: asked of the CRM when lookups are on."""
    from starter.lookups import LookupFailed

    try:
        found = await fetch.read_object(ctx, conn, "ticket", inc.object_id)
    except LookupFailed:
        return None  # the defaults are used; the ticket is not held up for its subject
    if found:
        await shadow.apply(ctx.pool, inc, {k: v for k, v in found.items() if k in vendor_fields(
            conn.source, "ticket").values()})
    return found
