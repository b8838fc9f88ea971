"""The generic CRM event (POST /webhooks/crm) acted on: its account must be in the book (else it
waits for it), a property change older than the last applied to the same play is stale, and
the trigger rule starts, updates or signals the play."""

from __future__ import annotations

from starter.adapters.common import Incoming
from starter.events import links, shadow
from starter.events.context import Context, Result
from starter.events.routing import CrmEvent, WaitFor, act, plan
from starter.steering import SteeringError


async def route(ctx: Context, inc: Incoming) -> Result:
    """Act on one generic event (Incoming.event is the CrmEvent as given)."""
    event = CrmEvent.model_validate(inc.event)
    if await links.survivor(ctx.pool, event.accountId) is None:
        raise WaitFor("generic", "account", event.accountId, f"account {event.accountId!r} is not in the book yet")
    p = plan(event, ctx.triggers)
    if p.trigger is None:
        return Result("ignored: no trigger matches", account_id=event.accountId)
    result = dict(account_id=event.accountId, workflow_id=p.workflow_id, trigger=p.trigger_name)
    if event.propertyName:
        applied = await shadow.apply(ctx.pool, inc, {event.propertyName: event.propertyValue},
                                     object_type="play", object_id=p.workflow_id)
        if applied.stale:
            return Result("stale: a newer change of the same property was applied", **result)
    try:
        outcome = await act(p, ctx.client, ctx.pool, ctx.settings)
    except SteeringError as exc:
        return Result(f"refused: {exc}", "refused", **result)
    except WaitFor as wait:
        return Result(f"waiting: {wait.reason}", "waiting", wait=wait, **result)
    if outcome == "started":
        ctx.resolved("*", "play", [p.workflow_id])
    return Result(outcome, **result)
