"""Merges, deletions, restores and privacy deletions from the CRM.

- company merge: the surviving company's account keeps its plays; the merged account's account
  rows move to it (starter/book/merges.py), and of the merged account's running plays, one the
  survivor also runs (onboarding, renewal countdown, churn watch) is cancelled as a duplicate and
  the others carry on for the survivor (they read the account through `merged_into`).
- contact merge: the merged contacts' rows take the survivor's CRM key (or go, where the account
  already has the survivor). Deal and ticket merges: the survivor inherits the links; a merged
  ticket's SLA clock is resolved.
- deletion: a company's account and a contact are marked deleted in the CRM (plays leave a deleted
  contact out; nothing is removed); a ticket's clock is closed. A restore undoes the mark.
- privacy deletion: the person is erased (starter/book/privacy.py); running plays keep working.
Deletion and restore are ordered by their time like property changes (an older restore does not
undo a newer deletion).
"""

from __future__ import annotations

from temporalio.client import WorkflowExecutionStatus

from playbooks.crm_connections import Connection
from starter import steering
from starter.adapters.common import Incoming
from starter.book.merges import MergeRefused, merge_accounts
from starter.book.privacy import erase_contact
from starter.events import links, shadow
from starter.events.context import Context, Result
from starter.events.routing import CrmEvent, _play_state
from starter.events.run import run_events
from starter.steering import SteeringError
from workflows.churn_messages import churn_workflow_id
from workflows.onboarding_messages import onboarding_workflow_id
from workflows.renewal_messages import renewal_workflow_id
from workflows.sla_messages import sla_workflow_id

PER_ACCOUNT_PLAYS = (onboarding_workflow_id, renewal_workflow_id, churn_workflow_id)
RUNNING = WorkflowExecutionStatus.RUNNING


async def _carry_plays(ctx: Context, merged_id: str, into_id: str) -> list[str]:
    said = []
    for workflow_id_of in PER_ACCOUNT_PLAYS:
        theirs, ours = workflow_id_of(merged_id), workflow_id_of(into_id)
        if await _play_state(ctx.client, theirs) != RUNNING:
            continue
        if await _play_state(ctx.client, ours) == RUNNING:
            try:
                await steering.cancel_play(ctx.client, theirs)
                said.append(f"{theirs} cancelled ({into_id} runs {ours})")
            except SteeringError as exc:
                said.append(f"{theirs}: {exc}")
        else:
            said.append(f"{theirs} carries on for {into_id}")
    return said


async def merge(ctx: Context, inc: Incoming, conn: Connection) -> Result:
    """A company, contact, deal or ticket merge (primaryObjectId <- mergedObjectIds)."""
    merged = [str(m) for m in inc.related.get("merged") or [] if str(m) != inc.object_id]
    new = inc.related.get("new")
    survivors = [inc.object_id] + ([str(new)] if new and str(new) != inc.object_id else [])
    kind = inc.object_type
    if kind == "contact":
        return await _merge_contacts(ctx, inc, conn, merged)
    link_type = "company" if kind == "company" else kind
    into = None
    for crm_id in survivors:
        into = into or await links.account_for(ctx.pool, conn.name, link_type, crm_id)
    others = [a for m in merged if (a := await links.account_for(ctx.pool, conn.name, link_type, m))]
    if into is None:
        if not others:
            return Result(f"ignored: none of these {kind} records is in the book")
        into = others[0]
    for crm_id in survivors:
        if await links.link(ctx.pool, conn.name, link_type, crm_id, into):
            ctx.resolved(conn.name, link_type, [crm_id])
    if kind != "company":
        said = [f"{kind} {', '.join(survivors)} belongs to account {into}"]
        if kind == "ticket":
            said += await _close_merged_tickets(ctx, conn, inc, merged, into)
        return Result("; ".join(said), account_id=into)
    said = []
    for other in dict.fromkeys(a for a in others if a != into):
        try:
            moved = await merge_accounts(ctx.pool, other, into, conn.name, inc.key)
        except MergeRefused as exc:
            said.append(f"refused: {exc}")
            continue
        said.append(f"merged {other} into {into} ({moved.get('contacts', 0)} contacts, {moved.get('links', 0)} "
                    f"CRM links moved)")
        said += await _carry_plays(ctx, other, into)
    return Result("; ".join(said) or f"account {into} unchanged", account_id=into)


async def _merge_contacts(ctx: Context, inc: Incoming, conn: Connection, merged: list[str]) -> Result:
    survivor = f"{conn.name}:{inc.object_id}"
    async with ctx.pool.acquire() as c, c.transaction():
        gone = await c.execute(
            "DELETE FROM contacts m WHERE m.crm_key = ANY($1::text[]) AND EXISTS (SELECT 1 FROM contacts s"
            " WHERE s.account_id = m.account_id AND s.crm_key = $2)",
            [f"{conn.name}:{m}" for m in merged], survivor)
        moved = await c.execute("UPDATE contacts SET crm_key = $2, updated_at = now() WHERE crm_key = ANY($1::text[])",
                                [f"{conn.name}:{m}" for m in merged], survivor)
    accounts = await links.contact_accounts(ctx.pool, conn.name, inc.object_id)
    if accounts:
        ctx.resolved(conn.name, "contact", [inc.object_id])
    return Result(f"contacts {', '.join(merged)} merged into {inc.object_id} ({moved.split()[-1]} rows re-keyed, "
                  f"{gone.split()[-1]} duplicates removed)", account_id=accounts[0] if accounts else None)


async def _close_merged_tickets(ctx: Context, conn: Connection, inc: Incoming, merged: list[str], into: str):
    prefix = conn.mapping.webhooks.ticket_prefix
    events = [CrmEvent(eventId=f"{inc.key}#{m}"[:300], subscriptionType="ticket.propertyChange",
                       occurredAt=int(inc.occurred_at.timestamp() * 1000), accountId=into,
                       ticketId=f"{prefix}-{m}", propertyName="hs_pipeline_stage", propertyValue="closed")
              for m in merged if await _play_state(ctx.client, sla_workflow_id(f"{prefix}-{m}")) == RUNNING]
    if not events:
        return []
    return [(await run_events(ctx, events, into, [])).outcome]


async def delete(ctx: Context, inc: Incoming, conn: Connection, restore: bool = False) -> Result:
    """A company, contact, deal or ticket deleted in the CRM (or, with `restore`, restored)."""
    applied = await shadow.apply(ctx.pool, inc, {"_deleted": "false" if restore else "true"})
    if applied.all_stale:
        return Result("stale: a newer deletion or restore was applied")
    what = "restored" if restore else "deleted"
    if inc.object_type == "company":
        account_id = await links.account_for(ctx.pool, conn.name, "company", inc.object_id)
        if account_id is None:
            return Result(f"ignored: company {inc.object_id} is not in the book")
        await ctx.pool.execute(
            "UPDATE accounts SET crm_deleted_at = CASE WHEN $2 THEN NULL ELSE coalesce(crm_deleted_at, $3) END,"
            " updated_at = now() WHERE id = $1", account_id, restore, inc.occurred_at)
        return Result(f"account {account_id} marked {what} in the CRM (its plays go on)", account_id=account_id)
    if inc.object_type == "contact":
        result = await ctx.pool.execute(
            "UPDATE contacts SET crm_deleted_at = CASE WHEN $2 THEN NULL ELSE coalesce(crm_deleted_at, $3) END,"
            " updated_at = now() WHERE crm_key = $1 AND name <> '(erased)'",
            f"{conn.name}:{inc.object_id}", restore, inc.occurred_at)
        return Result(f"contact {inc.object_id} marked {what} ({result.split()[-1]} rows)")
    if inc.object_type == "ticket" and not restore:
        account_id = await links.account_for(ctx.pool, conn.name, "ticket", inc.object_id)
        workflow_id = sla_workflow_id(f"{conn.mapping.webhooks.ticket_prefix}-{inc.object_id}")
        if account_id is None or await _play_state(ctx.client, workflow_id) != RUNNING:
            return Result(f"recorded: ticket {inc.object_id} {what}")
        event = CrmEvent(eventId=inc.key, subscriptionType="ticket.propertyChange", accountId=account_id,
                         occurredAt=int(inc.occurred_at.timestamp() * 1000), ticketId=workflow_id.removeprefix("sla-"),
                         propertyName="hs_pipeline_stage", propertyValue="closed")
        return await run_events(ctx, [event], account_id, [f"ticket {inc.object_id} {what} in the CRM"])
    return Result(f"recorded: {inc.object_type} {inc.object_id} {what}")


async def restore(ctx: Context, inc: Incoming, conn: Connection) -> Result:
    """An object restored in the CRM: the deletion mark goes."""
    return await delete(ctx, inc, conn, restore=True)


async def privacy_delete(ctx: Context, inc: Incoming, conn: Connection) -> Result:
    """HubSpot's `contact.privacyDeletion`: erase the person (starter/book/privacy.py)."""
    told = await shadow.read(ctx.pool, conn.name, "contact", inc.object_id)
    fields = conn.mapping.contacts.fields if conn.mapping.contacts else {}

    def told_of(field: str) -> str | None:
        rule = fields.get(field)
        return told.get(rule.property) if rule and rule.property else None

    emails = {e.lower() for e in [told_of("email")] if e}
    names = {n for n in (told_of("name"), " ".join(x for x in (told_of("first_name"), told_of("last_name")) if x)) if n}
    accounts = await links.contact_accounts(ctx.pool, conn.name, inc.object_id)
    erased = await erase_contact(ctx.pool, conn.name, inc.object_id, inc.key, inc.occurred_at, emails, names)
    counted = ", ".join(f"{table} {n}" for table, n in erased.items() if n)
    return Result(f"erased contact {inc.object_id}: {counted or 'nothing held'}",
                  account_id=accounts[0] if accounts else None)
